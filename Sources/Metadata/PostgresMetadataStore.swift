import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// The metadata store of a cluster: PostgreSQL, shared by every broker.
///
/// Same schema (`MetadataSchema`) and same statements (`MetadataSQL`) as `SQLiteMetadataStore`. SQLite runs
/// one writer at a time (`BEGIN IMMEDIATE`); here every transaction is SERIALIZABLE and is run
/// again from the start when PostgreSQL reports a serialization failure or deadlock, so the
/// same read-then-write statements keep SQLite's meaning with many brokers writing at once.
/// Epoch fencing is the compare-and-set `UPDATE … WHERE epoch = ?` with the rows affected
/// checked, as in SQLite.
public final class PostgresMetadataStore: MetadataStore {
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    public let url: PostgresURL

    /// Connects once to check that the server is reachable and takes the credentials (so that
    /// a wrong URL fails at startup with the server's reason, not on the first request), then
    /// starts the connection pool.
    public static func connect(url: String, logger: Logger) async throws -> PostgresMetadataStore {
        let u = try PostgresURL(parsing: url)
        var config = PostgresConnection.Configuration(host: u.host, port: u.port, username: u.user, password: u.password,
                                                      database: u.database, tls: .disable)
        config.options.connectTimeout = .seconds(10)
        do {
            let probe = try await PostgresConnection.connect(configuration: config, id: 0, logger: logger)
            try? await probe.close()
        } catch {
            throw MetadataError(.database, "cannot connect: \(Self.describe(error))")
        }
        return PostgresMetadataStore(url: u, logger: logger)
    }

    private init(url: PostgresURL, logger: Logger) {
        var config = PostgresClient.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                  database: url.database, tls: .disable)
        config.options.connectTimeout = .seconds(10)
        config.options.maximumConnections = 8
        // The pool's own log lines (connections opened and closed, leases before run() has
        // started) are noise at the broker's level; its failures reach us as errors.
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: config, backgroundLogger: background)
        self.client = client
        self.url = url
        self.logger = logger
        runner = Task { await client.run() }
    }

    deinit { runner.cancel() }

    /// Closes the pool; the store fails every call afterwards.
    public func shutdown() async {
        runner.cancel()
        await runner.value
    }

    // MARK: Running statements

    /// SQLSTATEs after which a transaction is run again: serialization_failure, deadlock_detected.
    private static let retryable: Set<String> = ["40001", "40P01"]

    /// Runs `body` in one SERIALIZABLE transaction, again from the start on a serialization
    /// failure (up to 30 times, with a short random pause growing per attempt).
    private func transaction<T: Sendable>(_ body: (PostgresSession) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await client.withConnection { conn in
                    let s = PostgresSession(conn, logger: logger)
                    try await s.query("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    do {
                        let value = try await body(s)
                        try await s.query("COMMIT")
                        return value
                    } catch {
                        _ = try? await s.query("ROLLBACK")
                        throw error
                    }
                }
            } catch let e as PSQLError {
                if let state = e.serverInfo?[.sqlState], Self.retryable.contains(state), attempt < 30 {
                    try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * min(attempt, 20)))))
                    continue
                }
                throw MetadataError(.database, Self.describe(e))
            }
        }
    }

    /// One statement outside an explicit transaction (reads of a single table).
    private func read(_ sql: String, _ params: [SQLValue] = []) async throws -> [[SQLValue]] {
        do {
            return try await client.withConnection { conn in try await PostgresSession(conn, logger: logger).query(sql, params) }
        } catch let e as PSQLError {
            throw MetadataError(.database, Self.describe(e))
        }
    }

    /// What went wrong, in one line: the server's message and SQLSTATE, or the connection
    /// error. (PSQLError's own description hides both.)
    static func describe(_ error: any Error) -> String {
        guard let e = error as? PSQLError else { return "\(error)" }
        if let info = e.serverInfo {
            let message = info[.message] ?? "error"
            let state = info[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            let detail = info[.detail].map { ": \($0)" } ?? ""
            return "\(message)\(detail)\(state)"
        }
        if e.code == .authMechanismRequiresPassword { return "the server asks for a password and the URL has none" }
        if let c = e.underlying as? NIOConnectionError {
            let reasons = c.connectionErrors.map { "\($0.error)" } + (c.dnsAError.map { ["\($0)"] } ?? [])
            return reasons.isEmpty ? "\(c)" : reasons.joined(separator: "; ")
        }
        if let u = e.underlying { return "\(e.code): \(u)" }
        return "\(e.code)"
    }

    // MARK: MetadataStore

    public func bootstrap(nodeId: Int32) async throws -> (clusterId: String, brokerEpoch: Int64) {
        try await migrate()
        return try await transaction { db in
            if try await db.query(MetadataSQL.clusterId).isEmpty {
                let id = (0..<2).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
                try await db.query(MetadataSQL.insertCluster, [.text(id)])
            }
            let clusterId = try await db.query(MetadataSQL.clusterId)[0][0].text!
            try await db.query(MetadataSQL.registerBroker, [.int(Int64(nodeId))])
            let epoch = try await db.query(MetadataSQL.brokerEpoch, [.int(Int64(nodeId))])[0][0].int!
            return (clusterId, epoch)
        }
    }

    /// Applies the shared migrations not yet recorded, under an advisory lock so that brokers
    /// starting together apply each one once.
    private func migrate() async throws {
        do {
            try await client.withConnection { conn in
                let db = PostgresSession(conn, logger: logger)
                try await db.query("BEGIN")
                do {
                    try await db.query("SELECT 1 FROM pg_advisory_xact_lock(7429017)")  // one lock key for tern's schema
                    try await db.query(SQLDialect.postgres.render(MetadataSchema.versionTable))
                    let current = try await db.query(MetadataSchema.currentVersion)[0][0].int ?? 0
                    for m in MetadataSchema.migrations where m.version > current {
                        for statement in m.statements { try await db.query(SQLDialect.postgres.render(statement)) }
                        try await db.query(MetadataSchema.recordVersion, [.int(m.version), .text(m.description)])
                        logger.info("metadata schema migrated to version \(m.version): \(m.description)")
                    }
                    try await db.query("COMMIT")
                } catch {
                    _ = try? await db.query("ROLLBACK")
                    throw error
                }
            }
        } catch let e as PSQLError {
            throw MetadataError(.database, "schema migration: \(Self.describe(e))")
        }
    }

    public func topics() async throws -> [TopicRecord] {
        try await transaction { db in try await Self.loadTopics(db, name: nil) }
    }

    private static func loadTopics(_ db: PostgresSession, name: String?) async throws -> [TopicRecord] {
        let rows = name == nil
            ? try await db.query(MetadataSQL.allTopics)
            : try await db.query(MetadataSQL.topicByName, [.text(name!)])
        var out: [TopicRecord] = []
        for r in rows {
            let n = r[0].text!
            var ids = [Int64](repeating: -1, count: Int(r[2].int!))
            for s in try await db.query(MetadataSQL.topicStreams, [.text(n)]) {
                let p = Int(s[0].int!)
                if p < ids.count { ids[p] = s[1].int! }
            }
            var configs: [String: String] = [:]
            for c in try await db.query(MetadataSQL.topicConfigs, [.text(n)]) {
                configs[c[0].text!] = c[1].text
            }
            out.append(TopicRecord(name: n, topicId: r[1].text!, streamIds: ids, configs: configs))
        }
        return out
    }

    public func createTopic(name: String, topicId: String, partitions: Int, configs: [String: String]) async throws -> TopicRecord {
        try await transaction { db in
            if try await !db.query(MetadataSQL.topicExists, [.text(name)]).isEmpty {
                throw MetadataError(.topicExists, name)
            }
            try await db.query(MetadataSQL.insertTopic,
                               [.text(name), .text(topicId), .int(Int64(partitions))])
            for (k, v) in configs {
                try await db.query(MetadataSQL.insertTopicConfig, [.text(name), .text(k), .text(v)])
            }
            let first = try await db.query(MetadataSQL.nextStreamId)[0][0].int!
            try await db.query(MetadataSQL.setNextStreamId, [.int(first + Int64(partitions))])
            for p in 0..<partitions {
                try await db.query(MetadataSQL.insertStream, [.int(first + Int64(p)), .text(name), .int(Int64(p))])
            }
            return try await Self.loadTopics(db, name: name)[0]
        }
    }

    public func deleteTopic(name: String) async throws -> TopicRecord? {
        try await transaction { db in
            guard let t = try await Self.loadTopics(db, name: name).first else { return nil }
            try await db.query(MetadataSQL.deleteTopic, [.text(name)])
            return t
        }
    }

    public func setTopicConfigs(name: String, configs: [String: String]) async throws {
        try await transaction { db in
            if try await db.query(MetadataSQL.topicExists, [.text(name)]).isEmpty {
                throw MetadataError(.notFound, "topic \(name)")
            }
            try await db.query(MetadataSQL.deleteTopicConfigs, [.text(name)])
            for (k, v) in configs {
                try await db.query(MetadataSQL.insertTopicConfig, [.text(name), .text(k), .text(v)])
            }
        }
    }

    public func addPartitions(name: String, count: Int) async throws -> TopicRecord {
        try await transaction { db in
            let rows = try await db.query(MetadataSQL.topicPartitions, [.text(name)])
            guard let current = rows.first?[0].int.map(Int.init) else { throw MetadataError(.notFound, "topic \(name)") }
            if count > current {
                let first = try await db.query(MetadataSQL.nextStreamId)[0][0].int!
                let added = count - current
                try await db.query(MetadataSQL.setNextStreamId, [.int(first + Int64(added))])
                for i in 0..<added {
                    try await db.query(MetadataSQL.insertStream, [.int(first + Int64(i)), .text(name), .int(Int64(current + i))])
                }
                try await db.query(MetadataSQL.setTopicPartitions, [.int(Int64(count)), .text(name)])
            }
            return try await Self.loadTopics(db, name: name)[0]
        }
    }

    public func advanceStartOffset(streamId: Int64, epoch: Int64, to offset: Int64) async throws -> Int64 {
        try await transaction { db in
            try await db.query(MetadataSQL.raiseStartOffset,
                               [.int(offset), .int(streamId), .int(epoch), .int(offset)])
            let changed = db.changes
            try await db.query(MetadataSQL.trimAbortedTxns, [.int(streamId), .int(streamId)])
            let rows = try await db.query(MetadataSQL.streamEpochAndStart, [.int(streamId)])
            guard let row = rows.first else { throw MetadataError(.notFound, "stream \(streamId)") }
            if changed == 0 && row[0].int! != epoch {
                throw MetadataError(.fenced, "stream \(streamId) is at epoch \(row[0].int!), trim has \(epoch)")
            }
            return row[1].int!
        }
    }

    public func openStream(streamId: Int64, owner: Int32) async throws -> StreamRecord {
        try await transaction { db in
            let rows = try await db.query(MetadataSQL.streamEpochAndEnd, [.int(streamId)])
            guard let row = rows.first else { throw MetadataError(.notFound, "stream \(streamId)") }
            let epoch = row[0].int! + 1
            try await db.query(MetadataSQL.takeStream,
                               [.int(epoch), .int(Int64(owner)), .int(streamId), .int(epoch - 1)])
            guard db.changes == 1 else { throw MetadataError(.fenced, "stream \(streamId) opened concurrently") }
            try await db.query(MetadataSQL.insertStreamEpoch,
                               [.int(streamId), .int(epoch), .int(row[1].int!)])
            return try await Self.loadStream(db, streamId)
        }
    }

    private static func loadStream(_ db: PostgresSession, _ id: Int64) async throws -> StreamRecord {
        let r = try await db.query(MetadataSQL.streamState, [.int(id)])[0]
        let history = try await db.query(MetadataSQL.streamEpochHistory, [.int(id)])
            .map { EpochStart(epoch: $0[0].int!, startOffset: $0[1].int!) }
        return StreamRecord(streamId: id, epoch: r[0].int!, startOffset: r[1].int!, endOffset: r[2].int!, epochHistory: history)
    }

    public func ranges(streamId: Int64) async throws -> [StreamRange] {
        try await read(MetadataSQL.streamRanges, [.int(streamId)]).map {
            StreamRange(streamId: streamId, epoch: $0[0].int!, startOffset: $0[1].int!, endOffset: $0[2].int!,
                        objectKey: $0[3].text!, position: Int($0[4].int!), size: Int($0[5].int!),
                        minTimestamp: $0[6].int!, maxTimestamp: $0[7].int!)
        }
    }

    public func producerStates(streamId: Int64) async throws -> [ProducerStateRecord] {
        try await read(MetadataSQL.producerStates, [.int(streamId)]).map { SQLiteMetadataStore.producerState(streamId, $0) }
    }

    public func abortedTxns(streamId: Int64) async throws -> [AbortedTxnRecord] {
        try await read(MetadataSQL.abortedTxns, [.int(streamId)]).map {
            AbortedTxnRecord(streamId: streamId, producerId: $0[0].int!, firstOffset: $0[1].int!, lastOffset: $0[2].int!)
        }
    }

    public func commit(_ commit: ObjectCommit) async throws {
        try await transaction { db in
            try await db.query(MetadataSQL.insertObject, [.text(commit.key), .int(Int64(commit.size))])
            let objectId = try await db.query(MetadataSQL.objectId, [.text(commit.key)])[0][0].int!
            var live = Set<Int64>()
            for r in commit.ranges {
                try await db.query(MetadataSQL.extendStream,
                                   [.int(r.endOffset), .int(r.streamId), .int(r.epoch), .int(r.startOffset)])
                if db.changes != 1 {
                    let rows = try await db.query(MetadataSQL.streamEpochAndEnd, [.int(r.streamId)])
                    guard let row = rows.first else { continue }  // the topic was deleted
                    if row[0].int! != r.epoch {
                        throw MetadataError(.fenced, "stream \(r.streamId) is at epoch \(row[0].int!), commit has \(r.epoch)")
                    }
                    throw MetadataError(.offsetMismatch, "stream \(r.streamId) ends at \(row[1].int!), range starts at \(r.startOffset)")
                }
                live.insert(r.streamId)
                try await db.query(MetadataSQL.insertRange, [.int(r.streamId), .int(r.startOffset), .int(r.endOffset), .int(r.epoch), .int(objectId),
                          .int(Int64(r.position)), .int(Int64(r.size)), .int(r.minTimestamp), .int(r.maxTimestamp)])
            }
            for p in commit.producerStates where live.contains(p.streamId) {
                try await db.query(MetadataSQL.upsertProducerState, MetadataSchema.producerStateRow(p))
            }
            for a in commit.abortedTxns where live.contains(a.streamId) {
                try await db.query(MetadataSQL.insertAbortedTxn, [.int(a.streamId), .int(a.producerId), .int(a.firstOffset), .int(a.lastOffset)])
            }
        }
    }

    public func committedObjectKeys(prefix: String) async throws -> Set<String> {
        Set(try await read(MetadataSQL.objectKeysWithPrefix, [.text(prefix), .text(prefix)]).map { $0[0].text! })
    }

    public func allocateProducerId() async throws -> Int64 {
        try await transaction { db in
            let id = try await db.query(MetadataSQL.nextProducerId)[0][0].int!
            try await db.query(MetadataSQL.setNextProducerId, [.int(id + 1)])
            return id
        }
    }

    public func transactions() async throws -> [TransactionRecord] {
        try await read(MetadataSQL.transactions).map(MetadataSchema.transaction)
    }

    public func putTransaction(_ t: TransactionRecord) async throws {
        try await transaction { db in try await db.query(MetadataSQL.upsertTransaction, MetadataSchema.transactionRow(t)) }
    }

    public func deleteTransaction(transactionalId: String) async throws {
        try await transaction { db in try await db.query(MetadataSQL.deleteTransaction, [.text(transactionalId)]) }
    }

    public func commitOffsets(group: String, _ offsets: [CommittedOffset]) async throws {
        try await transaction { db in
            for o in offsets {
                try await db.query(MetadataSQL.upsertGroupOffset, MetadataSchema.groupOffsetRow(group, o))
            }
        }
    }

    public func fetchOffsets(group: String) async throws -> [CommittedOffset] {
        try await read(MetadataSQL.groupOffsets, [.text(group)]).map(MetadataSchema.committedOffset)
    }

    public func groupsWithOffsets() async throws -> [String] {
        try await read(MetadataSQL.groupsWithOffsets).map { $0[0].text! }
    }

    public func deleteGroupOffsets(group: String) async throws -> Bool {
        try await transaction { db in
            try await db.query(MetadataSQL.deleteGroupOffsets, [.text(group)])
            return db.changes > 0
        }
    }

    public func deleteOffsets(group: String, _ partitions: [(topic: String, partition: Int32)]) async throws -> Bool {
        try await transaction { db in
            if try await db.query(MetadataSQL.groupHasOffsets, [.text(group)]).isEmpty { return false }
            for p in partitions {
                try await db.query(MetadataSQL.deleteGroupOffset,
                                   [.text(group), .text(p.topic), .int(Int64(p.partition))])
            }
            return true
        }
    }

    public func touchOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], at time: Int64) async throws {
        try await transaction { db in
            for p in partitions {
                try await db.query(MetadataSQL.touchGroupOffset, [.int(time), .text(group), .text(p.topic), .int(Int64(p.partition)), .int(time)])
            }
        }
    }

    public func expireOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], committedBefore time: Int64) async throws -> Int {
        try await transaction { db in
            var n = 0
            for p in partitions {
                try await db.query(MetadataSQL.expireGroupOffset, [.text(group), .text(p.topic), .int(Int64(p.partition)), .int(time)])
                n += db.changes
            }
            return n
        }
    }

    // MARK: garbage collection and compaction

    public func markGarbage(now: Int64) async throws -> Int {
        try await transaction { db in
            try await db.query(MetadataSQL.dropTrimmedRanges)
            try await db.query(MetadataSQL.markUnreferencedGarbage, [.int(now)])
            return db.changes
        }
    }

    public func garbageObjects(markedBefore: Int64, limit: Int) async throws -> [String] {
        try await read(MetadataSQL.garbageObjects, [.int(markedBefore), .int(Int64(limit))]).map { $0[0].text! }
    }

    public func dropGarbage(keys: [String]) async throws {
        try await transaction { db in
            for k in keys { try await db.query(MetadataSQL.dropGarbageObject, [.text(k)]) }
        }
    }

    public func liveObjects(prefix: String, limit: Int) async throws -> [StoredObject] {
        try await transaction { db in
            var out: [StoredObject] = []
            for o in try await db.query(MetadataSQL.liveObjects, [.text(prefix), .text(prefix), .int(Int64(limit))]) {
                let key = o[1].text!
                let ranges = try await db.query(MetadataSQL.objectRanges, [o[0]]).map { MetadataSchema.objectRange(key, $0) }
                out.append(StoredObject(key: key, size: Int(o[2].int!), ranges: ranges))
            }
            return out
        }
    }

    public func commitCompaction(_ compaction: CompactionCommit, now: Int64) async throws {
        try await transaction { db in
            for key in compaction.superseded {
                // Compare-and-set: the input must still be live, or another compaction or
                // garbage collection got there first.
                try await db.query(MetadataSQL.supersedeObject, [.int(now), .text(key)])
                guard db.changes == 1 else { throw MetadataError(.conflict, "compaction input \(key) is no longer live") }
                try await db.query(MetadataSQL.dropObjectRanges, [.text(key)])
            }
            for o in compaction.objects {
                try await db.query(MetadataSQL.insertObject, [.text(o.key), .int(Int64(o.size))])
                let objectId = try await db.query(MetadataSQL.objectId, [.text(o.key)])[0][0].int!
                for r in o.ranges {
                    // A stream deleted since the run was planned: its data is simply not kept.
                    if try await db.query(MetadataSQL.streamExists, [.int(r.streamId)]).isEmpty { continue }
                    try await db.query(MetadataSQL.insertRange, MetadataSchema.rangeRow(r, objectId: objectId))
                }
            }
        }
    }
}

/// One connection lent by the pool, speaking the stores' shared SQL: `?` parameters,
/// rows as `SQLValue`s, and the rows affected by the last statement.
final class PostgresSession {
    private let connection: PostgresConnection
    private let logger: Logger
    /// Rows changed by the last statement (its command tag's count).
    private(set) var changes = 0

    init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    @discardableResult
    func query(_ sql: String, _ params: [SQLValue] = []) async throws -> [[SQLValue]] {
        var binds = PostgresBindings(capacity: params.count)
        for p in params {
            switch p {
            case .int(let v): binds.append(v)
            case .text(let v): binds.append(v)
            case .null: binds.appendNull()
            }
        }
        let query = PostgresQuery(unsafeSQL: SQLDialect.postgres.parameters(sql), binds: binds)
        let future: EventLoopFuture<PostgresQueryResult> = connection.query(query, logger: logger)
        let result = try await future.get()
        changes = result.metadata.rows ?? 0
        return try result.rows.map { row in try row.map(Self.value) }
    }

    private static func value(_ cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return .int(try cell.decode(Int64.self))
        case .bool: return .int(try cell.decode(Bool.self) ? 1 : 0)
        default: return .text(try cell.decode(String.self))
        }
    }
}
