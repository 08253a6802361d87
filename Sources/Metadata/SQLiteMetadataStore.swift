import NIOCore
import NIOPosix

/// The embedded metadata store: one SQLite file, one writer connection confined to one
/// thread (never an event loop).
public final class SQLiteMetadataStore: MetadataStore {
    private let pool: NIOThreadPool
    // Only touched on `pool`'s single thread.
    private let connection: SQLiteConnection

    public init(path: String) throws {
        connection = try SQLiteConnection(path: path)
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }

    deinit { try? pool.syncShutdownGracefully() }

    private func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        let c = connection
        return try await pool.runIfActive { try body(c) }
    }

    /// Applies the shared migrations (`MetadataSchema`) not yet recorded in the file.
    private static func migrate(_ db: SQLiteConnection) throws {
        try db.transaction {
            try db.execute(SQLDialect.sqlite.render(MetadataSchema.versionTable))
            let current = try db.query(MetadataSchema.currentVersion)[0][0].int ?? 0
            for m in MetadataSchema.migrations where m.version > current {
                for statement in m.statements { try db.execute(SQLDialect.sqlite.render(statement)) }
                try db.query(MetadataSchema.recordVersion, [.int(m.version), .text(m.description)])
            }
        }
    }

    public func bootstrap(nodeId: Int32) async throws -> (clusterId: String, brokerEpoch: Int64) {
        try await run { db in
            try Self.migrate(db)
            return try db.transaction {
                if try db.query(MetadataSQL.clusterId).isEmpty {
                    let id = (0..<2).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
                    try db.query(MetadataSQL.insertCluster, [.text(id)])
                }
                let clusterId = try db.query(MetadataSQL.clusterId)[0][0].text!
                try db.query(MetadataSQL.registerBroker, [.int(Int64(nodeId))])
                let epoch = try db.query(MetadataSQL.brokerEpoch, [.int(Int64(nodeId))])[0][0].int!
                return (clusterId, epoch)
            }
        }
    }

    public func topics() async throws -> [TopicRecord] {
        try await run { db in try Self.loadTopics(db, name: nil) }
    }

    private static func loadTopics(_ db: SQLiteConnection, name: String?) throws -> [TopicRecord] {
        let rows = name == nil
            ? try db.query(MetadataSQL.allTopics)
            : try db.query(MetadataSQL.topicByName, [.text(name!)])
        var out: [TopicRecord] = []
        for r in rows {
            let n = r[0].text!
            var ids = [Int64](repeating: -1, count: Int(r[2].int!))
            for s in try db.query(MetadataSQL.topicStreams, [.text(n)]) {
                let p = Int(s[0].int!)
                if p < ids.count { ids[p] = s[1].int! }
            }
            var configs: [String: String] = [:]
            for c in try db.query(MetadataSQL.topicConfigs, [.text(n)]) {
                configs[c[0].text!] = c[1].text
            }
            out.append(TopicRecord(name: n, topicId: r[1].text!, streamIds: ids, configs: configs))
        }
        return out
    }

    public func createTopic(name: String, topicId: String, partitions: Int, configs: [String: String]) async throws -> TopicRecord {
        try await run { db in
            try db.transaction {
                if try !db.query(MetadataSQL.topicExists, [.text(name)]).isEmpty {
                    throw MetadataError(.topicExists, name)
                }
                try db.query(MetadataSQL.insertTopic,
                             [.text(name), .text(topicId), .int(Int64(partitions))])
                for (k, v) in configs {
                    try db.query(MetadataSQL.insertTopicConfig, [.text(name), .text(k), .text(v)])
                }
                let first = try db.query(MetadataSQL.nextStreamId)[0][0].int!
                try db.query(MetadataSQL.setNextStreamId, [.int(first + Int64(partitions))])
                for p in 0..<partitions {
                    try db.query(MetadataSQL.insertStream, [.int(first + Int64(p)), .text(name), .int(Int64(p))])
                }
                return try Self.loadTopics(db, name: name)[0]
            }
        }
    }

    public func deleteTopic(name: String) async throws -> TopicRecord? {
        try await run { db in
            try db.transaction {
                guard let t = try Self.loadTopics(db, name: name).first else { return nil }
                try db.query(MetadataSQL.deleteTopic, [.text(name)])
                return t
            }
        }
    }

    public func setTopicConfigs(name: String, configs: [String: String]) async throws {
        try await run { db in
            try db.transaction {
                if try db.query(MetadataSQL.topicExists, [.text(name)]).isEmpty {
                    throw MetadataError(.notFound, "topic \(name)")
                }
                try db.query(MetadataSQL.deleteTopicConfigs, [.text(name)])
                for (k, v) in configs {
                    try db.query(MetadataSQL.insertTopicConfig, [.text(name), .text(k), .text(v)])
                }
            }
        }
    }

    public func addPartitions(name: String, count: Int) async throws -> TopicRecord {
        try await run { db in
            try db.transaction {
                let rows = try db.query(MetadataSQL.topicPartitions, [.text(name)])
                guard let current = rows.first?[0].int.map(Int.init) else { throw MetadataError(.notFound, "topic \(name)") }
                if count > current {
                    let first = try db.query(MetadataSQL.nextStreamId)[0][0].int!
                    let added = count - current
                    try db.query(MetadataSQL.setNextStreamId, [.int(first + Int64(added))])
                    for i in 0..<added {
                        try db.query(MetadataSQL.insertStream, [.int(first + Int64(i)), .text(name), .int(Int64(current + i))])
                    }
                    try db.query(MetadataSQL.setTopicPartitions, [.int(Int64(count)), .text(name)])
                }
                return try Self.loadTopics(db, name: name)[0]
            }
        }
    }

    public func advanceStartOffset(streamId: Int64, epoch: Int64, to offset: Int64) async throws -> Int64 {
        try await run { db in
            try db.transaction {
                try db.query(MetadataSQL.raiseStartOffset,
                             [.int(offset), .int(streamId), .int(epoch), .int(offset)])
                let changed = db.changes
                try db.query(MetadataSQL.trimAbortedTxns, [.int(streamId), .int(streamId)])
                let rows = try db.query(MetadataSQL.streamEpochAndStart, [.int(streamId)])
                guard let row = rows.first else { throw MetadataError(.notFound, "stream \(streamId)") }
                if changed == 0 && row[0].int! != epoch {
                    throw MetadataError(.fenced, "stream \(streamId) is at epoch \(row[0].int!), trim has \(epoch)")
                }
                return row[1].int!
            }
        }
    }

    public func openStream(streamId: Int64, owner: Int32) async throws -> StreamRecord {
        try await run { db in
            try db.transaction {
                let rows = try db.query(MetadataSQL.streamEpochAndEnd, [.int(streamId)])
                guard let row = rows.first else { throw MetadataError(.notFound, "stream \(streamId)") }
                let epoch = row[0].int! + 1
                try db.query(MetadataSQL.takeStream,
                             [.int(epoch), .int(Int64(owner)), .int(streamId), .int(epoch - 1)])
                guard db.changes == 1 else { throw MetadataError(.fenced, "stream \(streamId) opened concurrently") }
                try db.query(MetadataSQL.insertStreamEpoch,
                             [.int(streamId), .int(epoch), .int(row[1].int!)])
                return try Self.loadStream(db, streamId)
            }
        }
    }

    private static func loadStream(_ db: SQLiteConnection, _ id: Int64) throws -> StreamRecord {
        let r = try db.query(MetadataSQL.streamState, [.int(id)])[0]
        let history = try db.query(MetadataSQL.streamEpochHistory, [.int(id)])
            .map { EpochStart(epoch: $0[0].int!, startOffset: $0[1].int!) }
        return StreamRecord(streamId: id, epoch: r[0].int!, startOffset: r[1].int!, endOffset: r[2].int!, epochHistory: history)
    }

    public func ranges(streamId: Int64) async throws -> [StreamRange] {
        try await run { db in
            try db.query(MetadataSQL.streamRanges, [.int(streamId)]).map {
                StreamRange(streamId: streamId, epoch: $0[0].int!, startOffset: $0[1].int!, endOffset: $0[2].int!,
                            objectKey: $0[3].text!, position: Int($0[4].int!), size: Int($0[5].int!),
                            minTimestamp: $0[6].int!, maxTimestamp: $0[7].int!)
            }
        }
    }

    public func producerStates(streamId: Int64) async throws -> [ProducerStateRecord] {
        try await run { db in
            try db.query(MetadataSQL.producerStates, [.int(streamId)]).map {
                Self.producerState(streamId, $0)
            }
        }
    }

    static func producerState(_ streamId: Int64, _ row: [SQLValue]) -> ProducerStateRecord {
        ProducerStateRecord(streamId: streamId, producerId: row[0].int!, producerEpoch: Int16(row[1].int!),
                            batches: MetadataSchema.decodeBatches(row[2].text!), txnFirstOffset: row[3].int!,
                            coordinatorEpoch: Int32(truncatingIfNeeded: row[4].int!))
    }

    public func abortedTxns(streamId: Int64) async throws -> [AbortedTxnRecord] {
        try await run { db in
            try db.query(MetadataSQL.abortedTxns, [.int(streamId)]).map {
                AbortedTxnRecord(streamId: streamId, producerId: $0[0].int!, firstOffset: $0[1].int!, lastOffset: $0[2].int!)
            }
        }
    }

    public func commit(_ commit: ObjectCommit) async throws {
        try await run { db in
            try db.transaction {
                try db.query(MetadataSQL.insertObject, [.text(commit.key), .int(Int64(commit.size))])
                let objectId = try db.query(MetadataSQL.objectId, [.text(commit.key)])[0][0].int!
                var live = Set<Int64>()
                for r in commit.ranges {
                    try db.query(MetadataSQL.extendStream,
                                 [.int(r.endOffset), .int(r.streamId), .int(r.epoch), .int(r.startOffset)])
                    if db.changes != 1 {
                        let rows = try db.query(MetadataSQL.streamEpochAndEnd, [.int(r.streamId)])
                        guard let row = rows.first else { continue }  // the topic was deleted
                        if row[0].int! != r.epoch {
                            throw MetadataError(.fenced, "stream \(r.streamId) is at epoch \(row[0].int!), commit has \(r.epoch)")
                        }
                        throw MetadataError(.offsetMismatch, "stream \(r.streamId) ends at \(row[1].int!), range starts at \(r.startOffset)")
                    }
                    live.insert(r.streamId)
                    try db.query(MetadataSQL.insertRange, [.int(r.streamId), .int(r.startOffset), .int(r.endOffset), .int(r.epoch), .int(objectId),
                              .int(Int64(r.position)), .int(Int64(r.size)), .int(r.minTimestamp), .int(r.maxTimestamp)])
                }
                for p in commit.producerStates where live.contains(p.streamId) {
                    try db.query(MetadataSQL.upsertProducerState, MetadataSchema.producerStateRow(p))
                }
                for a in commit.abortedTxns where live.contains(a.streamId) {
                    try db.query(MetadataSQL.insertAbortedTxn, [.int(a.streamId), .int(a.producerId), .int(a.firstOffset), .int(a.lastOffset)])
                }
            }
        }
    }

    public func committedObjectKeys(prefix: String) async throws -> Set<String> {
        try await run { db in
            Set(try db.query(MetadataSQL.objectKeysWithPrefix, [.text(prefix), .text(prefix)]).map { $0[0].text! })
        }
    }

    public func allocateProducerId() async throws -> Int64 {
        try await run { db in
            try db.transaction {
                let id = try db.query(MetadataSQL.nextProducerId)[0][0].int!
                try db.query(MetadataSQL.setNextProducerId, [.int(id + 1)])
                return id
            }
        }
    }

    public func transactions() async throws -> [TransactionRecord] {
        try await run { db in try db.query(MetadataSQL.transactions).map(MetadataSchema.transaction) }
    }

    public func putTransaction(_ t: TransactionRecord) async throws {
        try await run { db in _ = try db.query(MetadataSQL.upsertTransaction, MetadataSchema.transactionRow(t)) }
    }

    public func deleteTransaction(transactionalId: String) async throws {
        try await run { db in _ = try db.query(MetadataSQL.deleteTransaction, [.text(transactionalId)]) }
    }

    public func commitOffsets(group: String, _ offsets: [CommittedOffset]) async throws {
        try await run { db in
            try db.transaction {
                for o in offsets {
                    try db.query(MetadataSQL.upsertGroupOffset, MetadataSchema.groupOffsetRow(group, o))
                }
            }
        }
    }

    public func fetchOffsets(group: String) async throws -> [CommittedOffset] {
        try await run { db in
            try db.query(MetadataSQL.groupOffsets, [.text(group)]).map(MetadataSchema.committedOffset)
        }
    }

    public func groupsWithOffsets() async throws -> [String] {
        try await run { db in
            try db.query(MetadataSQL.groupsWithOffsets).map { $0[0].text! }
        }
    }

    public func deleteGroupOffsets(group: String) async throws -> Bool {
        try await run { db in
            try db.transaction {
                try db.query(MetadataSQL.deleteGroupOffsets, [.text(group)])
                return db.changes > 0
            }
        }
    }

    public func deleteOffsets(group: String, _ partitions: [(topic: String, partition: Int32)]) async throws -> Bool {
        try await run { db in
            try db.transaction {
                if try db.query(MetadataSQL.groupHasOffsets, [.text(group)]).isEmpty { return false }
                for p in partitions {
                    try db.query(MetadataSQL.deleteGroupOffset,
                                 [.text(group), .text(p.topic), .int(Int64(p.partition))])
                }
                return true
            }
        }
    }

    public func touchOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], at time: Int64) async throws {
        try await run { db in
            try db.transaction {
                for p in partitions {
                    try db.query(MetadataSQL.touchGroupOffset, [.int(time), .text(group), .text(p.topic), .int(Int64(p.partition)), .int(time)])
                }
            }
        }
    }

    public func expireOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], committedBefore time: Int64) async throws -> Int {
        try await run { db in
            try db.transaction {
                var n = 0
                for p in partitions {
                    try db.query(MetadataSQL.expireGroupOffset, [.text(group), .text(p.topic), .int(Int64(p.partition)), .int(time)])
                    n += db.changes
                }
                return n
            }
        }
    }

    // MARK: garbage collection and compaction

    public func markGarbage(now: Int64) async throws -> Int {
        try await run { db in
            try db.transaction {
                try db.query(MetadataSQL.dropTrimmedRanges)
                try db.query(MetadataSQL.markUnreferencedGarbage, [.int(now)])
                return db.changes
            }
        }
    }

    public func garbageObjects(markedBefore: Int64, limit: Int) async throws -> [String] {
        try await run { db in
            try db.query(MetadataSQL.garbageObjects, [.int(markedBefore), .int(Int64(limit))]).map { $0[0].text! }
        }
    }

    public func dropGarbage(keys: [String]) async throws {
        try await run { db in
            try db.transaction {
                for k in keys { try db.query(MetadataSQL.dropGarbageObject, [.text(k)]) }
            }
        }
    }

    public func liveObjects(prefix: String, limit: Int) async throws -> [StoredObject] {
        try await run { db in
            try db.transaction {
                try db.query(MetadataSQL.liveObjects, [.text(prefix), .text(prefix), .int(Int64(limit))]).map { o in
                    let key = o[1].text!
                    let ranges = try db.query(MetadataSQL.objectRanges, [o[0]]).map { MetadataSchema.objectRange(key, $0) }
                    return StoredObject(key: key, size: Int(o[2].int!), ranges: ranges)
                }
            }
        }
    }

    public func commitCompaction(_ compaction: CompactionCommit, now: Int64) async throws {
        try await run { db in
            try db.transaction {
                for key in compaction.superseded {
                    // Compare-and-set: the input must still be live, or another compaction or
                    // garbage collection got there first.
                    try db.query(MetadataSQL.supersedeObject, [.int(now), .text(key)])
                    guard db.changes == 1 else { throw MetadataError(.conflict, "compaction input \(key) is no longer live") }
                    try db.query(MetadataSQL.dropObjectRanges, [.text(key)])
                }
                for o in compaction.objects {
                    try db.query(MetadataSQL.insertObject, [.text(o.key), .int(Int64(o.size))])
                    let objectId = try db.query(MetadataSQL.objectId, [.text(o.key)])[0][0].int!
                    for r in o.ranges {
                        // A stream deleted since the run was planned: its data is simply not kept.
                        if try db.query(MetadataSQL.streamExists, [.int(r.streamId)]).isEmpty { continue }
                        try db.query(MetadataSQL.insertRange, MetadataSchema.rangeRow(r, objectId: objectId))
                    }
                }
            }
        }
    }
}
