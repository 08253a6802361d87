import Logging

/// One connection of a metadata store for the length of a transaction or a read, speaking
/// the stores' shared SQL (`MetadataSQL`): `?` parameters, rows as `SQLValue`s.
protocol SQLSession {
    /// Runs one statement; returns its rows.
    @discardableResult
    func query(_ sql: String, _ params: [SQLValue]) async throws -> [[SQLValue]]
    /// Rows changed by the last statement (SQLite's `changes`, PostgreSQL's command tag).
    var changes: Int { get }
}

extension SQLSession {
    @discardableResult
    func query(_ sql: String) async throws -> [[SQLValue]] { try await query(sql, []) }
}

/// What differs between the databases behind `SQLMetadataStore`: connections, how a
/// transaction begins, commits and is retried, how errors read, and the dialect.
protocol SQLEngine: Sendable {
    var dialect: SQLDialect { get }
    /// Runs `body` in one transaction: committed if it returns, rolled back if it throws,
    /// possibly run again from the start (so it must not act outside the session).
    func transaction<T: Sendable>(_ body: (any SQLSession) async throws -> T) async throws -> T
    /// Runs `body` outside an explicit transaction (reads of a single table).
    func read<T: Sendable>(_ body: (any SQLSession) async throws -> T) async throws -> T
    /// Runs `body`, the schema migration, in a transaction that brokers starting together
    /// on one database take one at a time.
    func migrate(_ body: (any SQLSession) async throws -> Void) async throws
}

/// The metadata store, written once for both databases (`SQLiteMetadataStore`,
/// `PostgresMetadataStore`): the same schema (`MetadataSchema`), the same statements
/// (`MetadataSQL`) and the same transactions. Epoch fencing is the compare-and-set
/// `UPDATE … WHERE epoch = ?` with the rows affected checked.
///
/// Not final only for its two subclasses, which add how to open the database; every
/// stored property is a `let` of a Sendable type.
public class SQLMetadataStore: MetadataStore, @unchecked Sendable {
    let engine: any SQLEngine
    let logger: Logger

    init(engine: any SQLEngine, logger: Logger) {
        self.engine = engine
        self.logger = logger
    }

    /// Bumps the cluster's change version; on PostgreSQL also notifies the brokers listening
    /// (delivered when the transaction commits), so they read the change at once.
    private func bump(_ db: any SQLSession) async throws {
        try await db.query(MetadataSQL.bumpVersion)
        if engine.dialect == .postgres { try await db.query(MetadataSQL.notifyChange) }
    }

    /// Returns at once: one SQLite file serves one broker, which knows its own changes.
    /// (PostgreSQL overrides it with LISTEN.)
    public func watchChanges(_ onChange: @escaping @Sendable () -> Void) async {}

    /// One statement outside an explicit transaction.
    private func read(_ sql: String, _ params: [SQLValue] = []) async throws -> [[SQLValue]] {
        try await engine.read { db in try await db.query(sql, params) }
    }

    /// Applies the shared migrations (`MetadataSchema`) not yet recorded in the database.
    func migrate() async throws {
        let dialect = engine.dialect
        try await engine.migrate { db in
            try await db.query(dialect.render(MetadataSchema.versionTable))
            let current = try await db.query(MetadataSchema.currentVersion)[0][0].int ?? 0
            for m in MetadataSchema.migrations where m.version > current {
                for statement in m.statements { try await db.query(dialect.render(statement)) }
                try await db.query(MetadataSchema.recordVersion, [.int(m.version), .text(m.description)])
                logger.info("metadata schema migrated to version \(m.version): \(m.description)")
            }
        }
    }

    public func bootstrap(nodeId: Int32, leaseMs: Int64) async throws -> (clusterId: String, brokerEpoch: Int64) {
        try await migrate()
        let dialect = engine.dialect
        return try await engine.transaction { db in
            if try await db.query(MetadataSQL.clusterId).isEmpty {
                let id = (0..<2).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
                try await db.query(MetadataSQL.insertCluster, [.text(id)])
            }
            let clusterId = try await db.query(MetadataSQL.clusterId)[0][0].text!
            try await db.query(MetadataSQL.registerBroker, [.int(Int64(nodeId))])
            // A lease from the start: the controller must not fail this run over before its first renewal.
            let now = try await db.query(MetadataSQL.nowMs(dialect))[0][0].int!
            try await db.query(MetadataSQL.startLease, [.int(now + leaseMs), .int(Int64(nodeId))])
            let epoch = try await db.query(MetadataSQL.brokerEpoch, [.int(Int64(nodeId))])[0][0].int!
            return (clusterId, epoch)
        }
    }

    public func topics() async throws -> [TopicRecord] {
        try await engine.transaction { db in try await Self.loadTopics(db, name: nil) }
    }

    private static func loadTopics(_ db: any SQLSession, name: String?) async throws -> [TopicRecord] {
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
        try await engine.transaction { db in
            if try await !db.query(MetadataSQL.topicExists, [.text(name)]).isEmpty {
                throw MetadataError(.topicExists, name)
            }
            try await db.query(MetadataSQL.insertTopic, [.text(name), .text(topicId), .int(Int64(partitions))])
            for (k, v) in configs {
                try await db.query(MetadataSQL.insertTopicConfig, [.text(name), .text(k), .text(v)])
            }
            let first = try await db.query(MetadataSQL.nextStreamId)[0][0].int!
            try await db.query(MetadataSQL.setNextStreamId, [.int(first + Int64(partitions))])
            for p in 0..<partitions {
                try await db.query(MetadataSQL.insertStream, [.int(first + Int64(p)), .text(name), .int(Int64(p))])
            }
            try await bump(db)
            return try await Self.loadTopics(db, name: name)[0]
        }
    }

    public func deleteTopic(name: String) async throws -> TopicRecord? {
        try await engine.transaction { db in
            guard let t = try await Self.loadTopics(db, name: name).first else { return nil }
            try await db.query(MetadataSQL.deleteTopic, [.text(name)])
            try await bump(db)
            return t
        }
    }

    public func setTopicConfigs(name: String, configs: [String: String]) async throws {
        try await engine.transaction { db in
            if try await db.query(MetadataSQL.topicExists, [.text(name)]).isEmpty {
                throw MetadataError(.notFound, "topic \(name)")
            }
            try await db.query(MetadataSQL.deleteTopicConfigs, [.text(name)])
            for (k, v) in configs {
                try await db.query(MetadataSQL.insertTopicConfig, [.text(name), .text(k), .text(v)])
            }
            try await bump(db)
        }
    }

    public func addPartitions(name: String, count: Int) async throws -> TopicRecord {
        try await engine.transaction { db in
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
            try await bump(db)
            return try await Self.loadTopics(db, name: name)[0]
        }
    }

    public func advanceStartOffset(streamId: Int64, epoch: Int64, to offset: Int64) async throws -> Int64 {
        try await engine.transaction { db in
            try await db.query(MetadataSQL.raiseStartOffset, [.int(offset), .int(streamId), .int(epoch), .int(offset)])
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
        try await engine.transaction { db in
            let rows = try await db.query(MetadataSQL.streamEpochAndEnd, [.int(streamId)])
            guard let row = rows.first else { throw MetadataError(.notFound, "stream \(streamId)") }
            let epoch = row[0].int! + 1
            try await db.query(MetadataSQL.takeStream, [.int(epoch), .int(Int64(owner)), .int(streamId), .int(epoch - 1)])
            guard db.changes == 1 else { throw MetadataError(.fenced, "stream \(streamId) opened concurrently") }
            try await db.query(MetadataSQL.insertStreamEpoch, [.int(streamId), .int(epoch), .int(row[1].int!)])
            try await bump(db)
            let r = try await db.query(MetadataSQL.streamState, [.int(streamId)])[0]
            let history = try await db.query(MetadataSQL.streamEpochHistory, [.int(streamId)])
                .map { EpochStart(epoch: $0[0].int!, startOffset: $0[1].int!) }
            return StreamRecord(streamId: streamId, epoch: r[0].int!, startOffset: r[1].int!, endOffset: r[2].int!, epochHistory: history)
        }
    }

    public func ranges(streamId: Int64) async throws -> [StreamRange] {
        try await read(MetadataSQL.streamRanges, [.int(streamId)]).map { MetadataSchema.streamRange(streamId, $0) }
    }

    public func producerStates(streamId: Int64) async throws -> [ProducerStateRecord] {
        try await read(MetadataSQL.producerStates, [.int(streamId)]).map { MetadataSchema.producerState(streamId, $0) }
    }

    public func abortedTxns(streamId: Int64) async throws -> [AbortedTxnRecord] {
        try await read(MetadataSQL.abortedTxns, [.int(streamId)]).map {
            AbortedTxnRecord(streamId: streamId, producerId: $0[0].int!, firstOffset: $0[1].int!, lastOffset: $0[2].int!)
        }
    }

    public func commit(_ commit: ObjectCommit) async throws {
        try await engine.transaction { db in
            // Already committed (a retry whose answer was lost, or a recovery racing the writer): done.
            if try await !db.query(MetadataSQL.objectId, [.text(commit.key)]).isEmpty { return }
            try await db.query(MetadataSQL.insertObject, [.text(commit.key), .int(Int64(commit.size))])
            let objectId = try await db.query(MetadataSQL.objectId, [.text(commit.key)])[0][0].int!
            var live = Set<Int64>()
            for r in commit.ranges {
                try await db.query(MetadataSQL.extendStream, [.int(r.endOffset), .int(r.streamId), .int(r.epoch), .int(r.startOffset)])
                if db.changes != 1 {
                    let rows = try await db.query(MetadataSQL.streamEpochAndEnd, [.int(r.streamId)])
                    guard let row = rows.first else { continue }  // the topic was deleted
                    if row[0].int! != r.epoch {
                        throw MetadataError(.fenced, "stream \(r.streamId) is at epoch \(row[0].int!), commit has \(r.epoch)")
                    }
                    throw MetadataError(.offsetMismatch, "stream \(r.streamId) ends at \(row[1].int!), range starts at \(r.startOffset)")
                }
                live.insert(r.streamId)
                try await db.query(MetadataSQL.insertRange, MetadataSchema.rangeRow(r, objectId: objectId))
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
        try await engine.transaction { db in
            let id = try await db.query(MetadataSQL.nextProducerId)[0][0].int!
            try await db.query(MetadataSQL.setNextProducerId, [.int(id + 1)])
            return id
        }
    }

    public func transactions() async throws -> [TransactionRecord] {
        try await read(MetadataSQL.transactions).map(MetadataSchema.transaction)
    }

    public func putTransaction(_ t: TransactionRecord) async throws {
        try await engine.transaction { db in _ = try await db.query(MetadataSQL.upsertTransaction, MetadataSchema.transactionRow(t)) }
    }

    public func deleteTransaction(transactionalId: String) async throws {
        try await engine.transaction { db in _ = try await db.query(MetadataSQL.deleteTransaction, [.text(transactionalId)]) }
    }

    public func commitOffsets(group: String, _ offsets: [CommittedOffset]) async throws {
        try await engine.transaction { db in
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
        try await engine.transaction { db in
            try await db.query(MetadataSQL.deleteGroupOffsets, [.text(group)])
            return db.changes > 0
        }
    }

    public func deleteOffsets(group: String, _ partitions: [(topic: String, partition: Int32)]) async throws -> Bool {
        try await engine.transaction { db in
            if try await db.query(MetadataSQL.groupHasOffsets, [.text(group)]).isEmpty { return false }
            for p in partitions {
                try await db.query(MetadataSQL.deleteGroupOffset, [.text(group), .text(p.topic), .int(Int64(p.partition))])
            }
            return true
        }
    }

    public func touchOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], at time: Int64) async throws {
        try await engine.transaction { db in
            for p in partitions {
                try await db.query(MetadataSQL.touchGroupOffset, [.int(time), .text(group), .text(p.topic), .int(Int64(p.partition)), .int(time)])
            }
        }
    }

    public func expireOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], committedBefore time: Int64) async throws -> Int {
        try await engine.transaction { db in
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
        try await engine.transaction { db in
            try await db.query(MetadataSQL.dropTrimmedRanges)
            try await db.query(MetadataSQL.markUnreferencedGarbage, [.int(now)])
            return db.changes
        }
    }

    public func garbageObjects(markedBefore: Int64, limit: Int) async throws -> [String] {
        try await read(MetadataSQL.garbageObjects, [.int(markedBefore), .int(Int64(limit))]).map { $0[0].text! }
    }

    public func dropGarbage(keys: [String]) async throws {
        try await engine.transaction { db in
            for k in keys { try await db.query(MetadataSQL.dropGarbageObject, [.text(k)]) }
        }
    }

    public func liveObjects(prefix: String, limit: Int) async throws -> [StoredObject] {
        try await engine.transaction { db in
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
        try await engine.transaction { db in
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

    // MARK: cluster

    public func renewLease(nodeId: Int32, epoch: Int64, host: String, port: Int, internalPort: Int, rack: String?, leaseMs: Int64) async throws -> Bool {
        let dialect = engine.dialect
        return try await engine.transaction { db in
            let now = try await db.query(MetadataSQL.nowMs(dialect))[0][0].int!
            try await db.query(MetadataSQL.renewLease, [.text(host), .int(Int64(port)), .int(Int64(internalPort)), rack.map { .text($0) } ?? .null,
                                                        .int(now + leaseMs), .int(Int64(nodeId)), .int(epoch)])
            return db.changes == 1
        }
    }

    public func clusterStatus() async throws -> ClusterStatus {
        let dialect = engine.dialect
        return try await engine.transaction { db in
            ClusterStatus(nowMs: try await db.query(MetadataSQL.nowMs(dialect))[0][0].int!,
                          version: try await db.query(MetadataSQL.clusterVersion).first?[0].int ?? 0,
                          brokers: try await db.query(MetadataSQL.allBrokers).map(MetadataSchema.broker),
                          controller: try await db.query(MetadataSQL.controllerLease).first.map(MetadataSchema.controller))
        }
    }

    public func streamPlacements() async throws -> [StreamPlacement] {
        try await read(MetadataSQL.streamPlacements).map(MetadataSchema.placement)
    }

    public func acquireController(nodeId: Int32, epoch: Int64, leaseMs: Int64) async throws -> Bool {
        let dialect = engine.dialect
        return try await engine.transaction { db in
            let now = try await db.query(MetadataSQL.nowMs(dialect))[0][0].int!
            if let held = try await db.query(MetadataSQL.controllerLease).first.map(MetadataSchema.controller),
               held.nodeId != nodeId, held.expiresMs > now {
                return false
            }
            try await db.query(MetadataSQL.takeController, [.int(Int64(nodeId)), .int(epoch), .int(now + leaseMs)])
            return true
        }
    }

    public func setDraining(nodeId: Int32, _ draining: Bool) async throws -> Bool {
        try await engine.transaction { db in
            try await db.query(MetadataSQL.setDraining, [.int(draining ? 1 : 0), .int(Int64(nodeId))])
            guard db.changes == 1 else { return false }
            try await bump(db)
            return true
        }
    }

    public func assignStreams(_ assignments: [(streamId: Int64, node: Int32)]) async throws {
        let rows = assignments.map { [SQLValue.int(Int64($0.node)), .int($0.streamId)] }
        try await engine.transaction { db in
            for r in rows { try await db.query(MetadataSQL.assignStream, r) }
            try await bump(db)
        }
    }

    public func releaseStream(streamId: Int64, epoch: Int64) async throws -> Bool {
        try await engine.transaction { db in
            try await db.query(MetadataSQL.releaseStream, [.int(streamId), .int(epoch)])
            guard db.changes == 1 else { return false }
            try await bump(db)
            return true
        }
    }

    public func reportLoads(nodeId: Int32, _ loads: [StreamLoad]) async throws {
        let dialect = engine.dialect
        let text = MetadataSchema.encodeLoads(loads)
        try await engine.transaction { db in
            let now = try await db.query(MetadataSQL.nowMs(dialect))[0][0].int!
            try await db.query(MetadataSQL.upsertLoads, [.int(Int64(nodeId)), .text(text), .int(now)])
        }
    }

    public func streamLoads() async throws -> [StreamLoad] {
        try await read(MetadataSQL.allLoads).flatMap { MetadataSchema.decodeLoads(node: Int32(truncatingIfNeeded: $0[0].int!), $0[1].text ?? "") }
    }

    public func failOver(nodeId: Int32, epoch: Int64, reassign: [(streamId: Int64, node: Int32)]) async throws -> Bool {
        let rows = reassign.map { [SQLValue.int(Int64($0.node)), .int($0.streamId)] }
        return try await engine.transaction { db in
            try await db.query(MetadataSQL.markRecovered, [.int(epoch), .int(Int64(nodeId)), .int(epoch)])
            guard db.changes == 1 else { return false }
            try await db.query(MetadataSQL.releaseOwnedBy, [.int(Int64(nodeId))])
            for r in rows { try await db.query(MetadataSQL.assignStream, r) }
            try await bump(db)
            return true
        }
    }
}

