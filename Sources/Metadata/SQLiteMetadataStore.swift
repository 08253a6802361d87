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

    static let schema = """
    CREATE TABLE IF NOT EXISTS cluster (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cluster_id TEXT NOT NULL,
        next_producer_id INTEGER NOT NULL DEFAULT 0,
        next_stream_id INTEGER NOT NULL DEFAULT 1);
    CREATE TABLE IF NOT EXISTS brokers (
        node_id INTEGER PRIMARY KEY,
        broker_epoch INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS topics (
        name TEXT PRIMARY KEY,
        topic_id TEXT NOT NULL UNIQUE,
        partitions INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS topic_configs (
        topic TEXT NOT NULL REFERENCES topics(name) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT,
        PRIMARY KEY (topic, key));
    CREATE TABLE IF NOT EXISTS streams (
        stream_id INTEGER PRIMARY KEY,
        topic TEXT NOT NULL REFERENCES topics(name) ON DELETE CASCADE,
        partition INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        owner INTEGER,
        start_offset INTEGER NOT NULL,
        end_offset INTEGER NOT NULL,
        UNIQUE (topic, partition));
    CREATE TABLE IF NOT EXISTS stream_epochs (
        stream_id INTEGER NOT NULL REFERENCES streams(stream_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        start_offset INTEGER NOT NULL,
        PRIMARY KEY (stream_id, epoch));
    CREATE TABLE IF NOT EXISTS objects (
        object_id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        garbage_since INTEGER);
    CREATE TABLE IF NOT EXISTS stream_ranges (
        stream_id INTEGER NOT NULL REFERENCES streams(stream_id) ON DELETE CASCADE,
        start_offset INTEGER NOT NULL,
        end_offset INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        object_id INTEGER NOT NULL REFERENCES objects(object_id),
        position INTEGER NOT NULL,
        size INTEGER NOT NULL,
        min_timestamp INTEGER NOT NULL,
        max_timestamp INTEGER NOT NULL,
        PRIMARY KEY (stream_id, start_offset));
    CREATE INDEX IF NOT EXISTS stream_ranges_object ON stream_ranges (object_id);
    CREATE TABLE IF NOT EXISTS producer_states (
        stream_id INTEGER NOT NULL REFERENCES streams(stream_id) ON DELETE CASCADE,
        producer_id INTEGER NOT NULL,
        producer_epoch INTEGER NOT NULL,
        batches TEXT NOT NULL,
        txn_first_offset INTEGER NOT NULL DEFAULT -1,
        coordinator_epoch INTEGER NOT NULL DEFAULT -1,
        PRIMARY KEY (stream_id, producer_id));
    CREATE TABLE IF NOT EXISTS aborted_txns (
        stream_id INTEGER NOT NULL REFERENCES streams(stream_id) ON DELETE CASCADE,
        producer_id INTEGER NOT NULL,
        first_offset INTEGER NOT NULL,
        last_offset INTEGER NOT NULL,
        PRIMARY KEY (stream_id, last_offset));
    CREATE TABLE IF NOT EXISTS transactions (
        transactional_id TEXT PRIMARY KEY,
        producer_id INTEGER NOT NULL,
        producer_epoch INTEGER NOT NULL,
        last_producer_id INTEGER NOT NULL,
        last_producer_epoch INTEGER NOT NULL,
        timeout_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        partitions TEXT NOT NULL,
        pending_offsets TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        update_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS group_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        committed_offset INTEGER NOT NULL,
        leader_epoch INTEGER NOT NULL,
        metadata TEXT,
        commit_time_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (group_id, topic, partition));
    """

    public func bootstrap(nodeId: Int32) async throws -> (clusterId: String, brokerEpoch: Int64) {
        try await run { db in
            // Stores made before garbage collection lack objects.garbage_since: add it
            // before the schema's index statements run.
            if try !db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objects'").isEmpty,
               try !db.query("PRAGMA table_info(objects)").contains(where: { $0[1].text == "garbage_since" }) {
                try db.execute("ALTER TABLE objects ADD COLUMN garbage_since INTEGER")
            }
            try db.execute(Self.schema)
            // Stores made before transactions lack the producer_states columns for them.
            let columns = Set(try db.query("PRAGMA table_info(producer_states)").compactMap { $0[1].text })
            for c in ["txn_first_offset", "coordinator_epoch"] where !columns.contains(c) {
                try db.execute("ALTER TABLE producer_states ADD COLUMN \(c) INTEGER NOT NULL DEFAULT -1")
            }
            return try db.transaction {
                if try db.query("SELECT cluster_id FROM cluster").isEmpty {
                    let id = (0..<2).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
                    try db.query("INSERT INTO cluster (id, cluster_id) VALUES (1, ?)", [.text(id)])
                }
                let clusterId = try db.query("SELECT cluster_id FROM cluster")[0][0].text!
                try db.query("""
                    INSERT INTO brokers (node_id, broker_epoch) VALUES (?, 1)
                    ON CONFLICT (node_id) DO UPDATE SET broker_epoch = brokers.broker_epoch + 1
                    """, [.int(Int64(nodeId))])
                let epoch = try db.query("SELECT broker_epoch FROM brokers WHERE node_id = ?", [.int(Int64(nodeId))])[0][0].int!
                return (clusterId, epoch)
            }
        }
    }

    public func topics() async throws -> [TopicRecord] {
        try await run { db in try Self.loadTopics(db, name: nil) }
    }

    private static func loadTopics(_ db: SQLiteConnection, name: String?) throws -> [TopicRecord] {
        let rows = name == nil
            ? try db.query("SELECT name, topic_id, partitions FROM topics ORDER BY name")
            : try db.query("SELECT name, topic_id, partitions FROM topics WHERE name = ?", [.text(name!)])
        var out: [TopicRecord] = []
        for r in rows {
            let n = r[0].text!
            var ids = [Int64](repeating: -1, count: Int(r[2].int!))
            for s in try db.query("SELECT partition, stream_id FROM streams WHERE topic = ?", [.text(n)]) {
                let p = Int(s[0].int!)
                if p < ids.count { ids[p] = s[1].int! }
            }
            var configs: [String: String] = [:]
            for c in try db.query("SELECT key, value FROM topic_configs WHERE topic = ?", [.text(n)]) {
                configs[c[0].text!] = c[1].text
            }
            out.append(TopicRecord(name: n, topicId: r[1].text!, streamIds: ids, configs: configs))
        }
        return out
    }

    public func createTopic(name: String, topicId: String, partitions: Int, configs: [String: String]) async throws -> TopicRecord {
        try await run { db in
            try db.transaction {
                if try !db.query("SELECT 1 FROM topics WHERE name = ?", [.text(name)]).isEmpty {
                    throw MetadataError(.topicExists, name)
                }
                try db.query("INSERT INTO topics (name, topic_id, partitions) VALUES (?, ?, ?)",
                             [.text(name), .text(topicId), .int(Int64(partitions))])
                for (k, v) in configs {
                    try db.query("INSERT INTO topic_configs (topic, key, value) VALUES (?, ?, ?)", [.text(name), .text(k), .text(v)])
                }
                let first = try db.query("SELECT next_stream_id FROM cluster")[0][0].int!
                try db.query("UPDATE cluster SET next_stream_id = ?", [.int(first + Int64(partitions))])
                for p in 0..<partitions {
                    try db.query("""
                        INSERT INTO streams (stream_id, topic, partition, epoch, start_offset, end_offset)
                        VALUES (?, ?, ?, 0, 0, 0)
                        """, [.int(first + Int64(p)), .text(name), .int(Int64(p))])
                }
                return try Self.loadTopics(db, name: name)[0]
            }
        }
    }

    public func deleteTopic(name: String) async throws -> TopicRecord? {
        try await run { db in
            try db.transaction {
                guard let t = try Self.loadTopics(db, name: name).first else { return nil }
                try db.query("DELETE FROM topics WHERE name = ?", [.text(name)])
                return t
            }
        }
    }

    public func setTopicConfigs(name: String, configs: [String: String]) async throws {
        try await run { db in
            try db.transaction {
                if try db.query("SELECT 1 FROM topics WHERE name = ?", [.text(name)]).isEmpty {
                    throw MetadataError(.notFound, "topic \(name)")
                }
                try db.query("DELETE FROM topic_configs WHERE topic = ?", [.text(name)])
                for (k, v) in configs {
                    try db.query("INSERT INTO topic_configs (topic, key, value) VALUES (?, ?, ?)", [.text(name), .text(k), .text(v)])
                }
            }
        }
    }

    public func addPartitions(name: String, count: Int) async throws -> TopicRecord {
        try await run { db in
            try db.transaction {
                let rows = try db.query("SELECT partitions FROM topics WHERE name = ?", [.text(name)])
                guard let current = rows.first?[0].int.map(Int.init) else { throw MetadataError(.notFound, "topic \(name)") }
                if count > current {
                    let first = try db.query("SELECT next_stream_id FROM cluster")[0][0].int!
                    let added = count - current
                    try db.query("UPDATE cluster SET next_stream_id = ?", [.int(first + Int64(added))])
                    for i in 0..<added {
                        try db.query("""
                            INSERT INTO streams (stream_id, topic, partition, epoch, start_offset, end_offset)
                            VALUES (?, ?, ?, 0, 0, 0)
                            """, [.int(first + Int64(i)), .text(name), .int(Int64(current + i))])
                    }
                    try db.query("UPDATE topics SET partitions = ? WHERE name = ?", [.int(Int64(count)), .text(name)])
                }
                return try Self.loadTopics(db, name: name)[0]
            }
        }
    }

    public func advanceStartOffset(streamId: Int64, epoch: Int64, to offset: Int64) async throws -> Int64 {
        try await run { db in
            try db.transaction {
                try db.query("UPDATE streams SET start_offset = ? WHERE stream_id = ? AND epoch = ? AND start_offset < ?",
                             [.int(offset), .int(streamId), .int(epoch), .int(offset)])
                let changed = db.changes
                let rows = try db.query("SELECT epoch, start_offset FROM streams WHERE stream_id = ?", [.int(streamId)])
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
                let rows = try db.query("SELECT epoch, end_offset FROM streams WHERE stream_id = ?", [.int(streamId)])
                guard let row = rows.first else { throw MetadataError(.notFound, "stream \(streamId)") }
                let epoch = row[0].int! + 1
                try db.query("UPDATE streams SET epoch = ?, owner = ? WHERE stream_id = ? AND epoch = ?",
                             [.int(epoch), .int(Int64(owner)), .int(streamId), .int(epoch - 1)])
                guard db.changes == 1 else { throw MetadataError(.fenced, "stream \(streamId) opened concurrently") }
                try db.query("INSERT INTO stream_epochs (stream_id, epoch, start_offset) VALUES (?, ?, ?)",
                             [.int(streamId), .int(epoch), .int(row[1].int!)])
                return try Self.loadStream(db, streamId)
            }
        }
    }

    private static func loadStream(_ db: SQLiteConnection, _ id: Int64) throws -> StreamRecord {
        let r = try db.query("SELECT epoch, start_offset, end_offset FROM streams WHERE stream_id = ?", [.int(id)])[0]
        let history = try db.query("SELECT epoch, start_offset FROM stream_epochs WHERE stream_id = ? ORDER BY epoch", [.int(id)])
            .map { EpochStart(epoch: $0[0].int!, startOffset: $0[1].int!) }
        return StreamRecord(streamId: id, epoch: r[0].int!, startOffset: r[1].int!, endOffset: r[2].int!, epochHistory: history)
    }

    public func ranges(streamId: Int64) async throws -> [StreamRange] {
        try await run { db in
            try db.query("""
                SELECT r.epoch, r.start_offset, r.end_offset, o.key, r.position, r.size, r.min_timestamp, r.max_timestamp
                FROM stream_ranges r JOIN objects o ON o.object_id = r.object_id
                WHERE r.stream_id = ? ORDER BY r.start_offset
                """, [.int(streamId)]).map {
                StreamRange(streamId: streamId, epoch: $0[0].int!, startOffset: $0[1].int!, endOffset: $0[2].int!,
                            objectKey: $0[3].text!, position: Int($0[4].int!), size: Int($0[5].int!),
                            minTimestamp: $0[6].int!, maxTimestamp: $0[7].int!)
            }
        }
    }

    public func producerStates(streamId: Int64) async throws -> [ProducerStateRecord] {
        try await run { db in
            try db.query("""
                SELECT producer_id, producer_epoch, batches, txn_first_offset, coordinator_epoch FROM producer_states WHERE stream_id = ?
                """, [.int(streamId)]).map {
                ProducerStateRecord(streamId: streamId, producerId: $0[0].int!, producerEpoch: Int16($0[1].int!),
                                    batches: Self.decodeBatches($0[2].text!), txnFirstOffset: $0[3].int!,
                                    coordinatorEpoch: Int32(truncatingIfNeeded: $0[4].int!))
            }
        }
    }

    public func abortedTxns(streamId: Int64) async throws -> [AbortedTxnRecord] {
        try await run { db in
            try db.query("SELECT producer_id, first_offset, last_offset FROM aborted_txns WHERE stream_id = ? ORDER BY first_offset",
                         [.int(streamId)]).map {
                AbortedTxnRecord(streamId: streamId, producerId: $0[0].int!, firstOffset: $0[1].int!, lastOffset: $0[2].int!)
            }
        }
    }

    /// Batches as "firstSeq:lastSeq:baseOffset:lastOffset:maxTimestamp" joined by ";"
    /// (rows written before maxTimestamp was kept have four fields).
    static func encodeBatches(_ b: [ProducerStateRecord.Batch]) -> String {
        b.map { "\($0.firstSequence):\($0.lastSequence):\($0.baseOffset):\($0.lastOffset):\($0.maxTimestamp)" }.joined(separator: ";")
    }

    static func decodeBatches(_ s: String) -> [ProducerStateRecord.Batch] {
        s.split(separator: ";").compactMap { part in
            let f = part.split(separator: ":").compactMap { Int64($0) }
            guard f.count == 4 || f.count == 5 else { return nil }
            return .init(firstSequence: Int32(truncatingIfNeeded: f[0]), lastSequence: Int32(truncatingIfNeeded: f[1]),
                         baseOffset: f[2], lastOffset: f[3], maxTimestamp: f.count == 5 ? f[4] : -1)
        }
    }

    public func commit(_ commit: ObjectCommit) async throws {
        try await run { db in
            try db.transaction {
                try db.query("INSERT INTO objects (key, size) VALUES (?, ?)", [.text(commit.key), .int(Int64(commit.size))])
                let objectId = try db.query("SELECT object_id FROM objects WHERE key = ?", [.text(commit.key)])[0][0].int!
                var live = Set<Int64>()
                for r in commit.ranges {
                    try db.query("UPDATE streams SET end_offset = ? WHERE stream_id = ? AND epoch = ? AND end_offset = ?",
                                 [.int(r.endOffset), .int(r.streamId), .int(r.epoch), .int(r.startOffset)])
                    if db.changes != 1 {
                        let rows = try db.query("SELECT epoch, end_offset FROM streams WHERE stream_id = ?", [.int(r.streamId)])
                        guard let row = rows.first else { continue }  // the topic was deleted
                        if row[0].int! != r.epoch {
                            throw MetadataError(.fenced, "stream \(r.streamId) is at epoch \(row[0].int!), commit has \(r.epoch)")
                        }
                        throw MetadataError(.offsetMismatch, "stream \(r.streamId) ends at \(row[1].int!), range starts at \(r.startOffset)")
                    }
                    live.insert(r.streamId)
                    try db.query("""
                        INSERT INTO stream_ranges (stream_id, start_offset, end_offset, epoch, object_id, position, size, min_timestamp, max_timestamp)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, [.int(r.streamId), .int(r.startOffset), .int(r.endOffset), .int(r.epoch), .int(objectId),
                              .int(Int64(r.position)), .int(Int64(r.size)), .int(r.minTimestamp), .int(r.maxTimestamp)])
                }
                for p in commit.producerStates where live.contains(p.streamId) {
                    try db.query("""
                        INSERT INTO producer_states (stream_id, producer_id, producer_epoch, batches, txn_first_offset, coordinator_epoch)
                        VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT (stream_id, producer_id) DO UPDATE SET producer_epoch = excluded.producer_epoch, batches = excluded.batches,
                            txn_first_offset = excluded.txn_first_offset, coordinator_epoch = excluded.coordinator_epoch
                        """, [.int(p.streamId), .int(p.producerId), .int(Int64(p.producerEpoch)), .text(Self.encodeBatches(p.batches)),
                              .int(p.txnFirstOffset), .int(Int64(p.coordinatorEpoch))])
                }
                for a in commit.abortedTxns where live.contains(a.streamId) {
                    try db.query("""
                        INSERT INTO aborted_txns (stream_id, producer_id, first_offset, last_offset) VALUES (?, ?, ?, ?)
                        ON CONFLICT (stream_id, last_offset) DO NOTHING
                        """, [.int(a.streamId), .int(a.producerId), .int(a.firstOffset), .int(a.lastOffset)])
                }
            }
        }
    }

    public func committedObjectKeys(prefix: String) async throws -> Set<String> {
        try await run { db in
            Set(try db.query("SELECT key FROM objects WHERE substr(key, 1, ?) = ?", [.int(Int64(prefix.utf8.count)), .text(prefix)]).map { $0[0].text! })
        }
    }

    public func allocateProducerId() async throws -> Int64 {
        try await run { db in
            try db.transaction {
                let id = try db.query("SELECT next_producer_id FROM cluster")[0][0].int!
                try db.query("UPDATE cluster SET next_producer_id = ?", [.int(id + 1)])
                return id
            }
        }
    }

    public func transactions() async throws -> [TransactionRecord] {
        try await run { db in
            try db.query("""
                SELECT transactional_id, producer_id, producer_epoch, last_producer_id, last_producer_epoch, timeout_ms, state,
                       partitions, pending_offsets, start_ms, update_ms
                FROM transactions ORDER BY transactional_id
                """).map {
                TransactionRecord(transactionalId: $0[0].text!, producerId: $0[1].int!, producerEpoch: Int16(truncatingIfNeeded: $0[2].int!),
                                  lastProducerId: $0[3].int!, lastProducerEpoch: Int16(truncatingIfNeeded: $0[4].int!),
                                  timeoutMs: Int32(truncatingIfNeeded: $0[5].int!), state: $0[6].text!, partitions: $0[7].text!,
                                  pendingOffsets: $0[8].text!, startMs: $0[9].int!, updateMs: $0[10].int!)
            }
        }
    }

    public func putTransaction(_ t: TransactionRecord) async throws {
        try await run { db in
            _ = try db.query("""
                INSERT INTO transactions (transactional_id, producer_id, producer_epoch, last_producer_id, last_producer_epoch, timeout_ms,
                                          state, partitions, pending_offsets, start_ms, update_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (transactional_id) DO UPDATE SET producer_id = excluded.producer_id, producer_epoch = excluded.producer_epoch,
                    last_producer_id = excluded.last_producer_id, last_producer_epoch = excluded.last_producer_epoch,
                    timeout_ms = excluded.timeout_ms, state = excluded.state, partitions = excluded.partitions,
                    pending_offsets = excluded.pending_offsets, start_ms = excluded.start_ms, update_ms = excluded.update_ms
                """, [.text(t.transactionalId), .int(t.producerId), .int(Int64(t.producerEpoch)), .int(t.lastProducerId),
                      .int(Int64(t.lastProducerEpoch)), .int(Int64(t.timeoutMs)), .text(t.state), .text(t.partitions),
                      .text(t.pendingOffsets), .int(t.startMs), .int(t.updateMs)])
        }
    }

    public func deleteTransaction(transactionalId: String) async throws {
        try await run { db in
            _ = try db.query("DELETE FROM transactions WHERE transactional_id = ?", [.text(transactionalId)])
        }
    }

    public func commitOffsets(group: String, _ offsets: [CommittedOffset]) async throws {
        try await run { db in
            try db.transaction {
                for o in offsets {
                    try db.query("""
                        INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        ON CONFLICT (group_id, topic, partition) DO UPDATE SET committed_offset = excluded.committed_offset,
                            leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms
                        """, [.text(group), .text(o.topic), .int(Int64(o.partition)), .int(o.offset), .int(Int64(o.leaderEpoch)),
                              o.metadata.map { .text($0) } ?? .null, .int(o.commitTimestampMs)])
                }
            }
        }
    }

    public func fetchOffsets(group: String) async throws -> [CommittedOffset] {
        try await run { db in
            try db.query("SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms FROM group_offsets WHERE group_id = ?",
                         [.text(group)]).map {
                CommittedOffset(topic: $0[0].text!, partition: Int32($0[1].int!), offset: $0[2].int!,
                                leaderEpoch: Int32($0[3].int!), metadata: $0[4].text, commitTimestampMs: $0[5].int!)
            }
        }
    }

    public func groupsWithOffsets() async throws -> [String] {
        try await run { db in
            try db.query("SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id").map { $0[0].text! }
        }
    }

    public func deleteGroupOffsets(group: String) async throws -> Bool {
        try await run { db in
            try db.transaction {
                try db.query("DELETE FROM group_offsets WHERE group_id = ?", [.text(group)])
                return db.changes > 0
            }
        }
    }

    public func deleteOffsets(group: String, _ partitions: [(topic: String, partition: Int32)]) async throws -> Bool {
        try await run { db in
            try db.transaction {
                if try db.query("SELECT 1 FROM group_offsets WHERE group_id = ? LIMIT 1", [.text(group)]).isEmpty { return false }
                for p in partitions {
                    try db.query("DELETE FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?",
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
                    try db.query("""
                        UPDATE group_offsets SET commit_time_ms = ?
                        WHERE group_id = ? AND topic = ? AND partition = ? AND commit_time_ms < ?
                        """, [.int(time), .text(group), .text(p.topic), .int(Int64(p.partition)), .int(time)])
                }
            }
        }
    }

    public func expireOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], committedBefore time: Int64) async throws -> Int {
        try await run { db in
            try db.transaction {
                var n = 0
                for p in partitions {
                    try db.query("""
                        DELETE FROM group_offsets
                        WHERE group_id = ? AND topic = ? AND partition = ? AND commit_time_ms > 0 AND commit_time_ms < ?
                        """, [.text(group), .text(p.topic), .int(Int64(p.partition)), .int(time)])
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
                try db.query("""
                    DELETE FROM stream_ranges
                    WHERE end_offset <= (SELECT s.start_offset FROM streams s WHERE s.stream_id = stream_ranges.stream_id)
                    """)
                try db.query("""
                    UPDATE objects SET garbage_since = ?
                    WHERE garbage_since IS NULL
                      AND NOT EXISTS (SELECT 1 FROM stream_ranges r WHERE r.object_id = objects.object_id)
                    """, [.int(now)])
                return db.changes
            }
        }
    }

    public func garbageObjects(markedBefore: Int64, limit: Int) async throws -> [String] {
        try await run { db in
            try db.query("""
                SELECT key FROM objects WHERE garbage_since IS NOT NULL AND garbage_since <= ?
                ORDER BY garbage_since, object_id LIMIT ?
                """, [.int(markedBefore), .int(Int64(limit))]).map { $0[0].text! }
        }
    }

    public func dropGarbage(keys: [String]) async throws {
        try await run { db in
            try db.transaction {
                for k in keys {
                    try db.query("DELETE FROM objects WHERE key = ? AND garbage_since IS NOT NULL", [.text(k)])
                }
            }
        }
    }

    public func liveObjects(prefix: String, limit: Int) async throws -> [StoredObject] {
        try await run { db in
            let objects = try db.query("""
                SELECT object_id, key, size FROM objects
                WHERE garbage_since IS NULL AND substr(key, 1, ?) = ?
                ORDER BY object_id LIMIT ?
                """, [.int(Int64(prefix.utf8.count)), .text(prefix), .int(Int64(limit))])
            return try objects.map { o in
                let key = o[1].text!
                let ranges = try db.query("""
                    SELECT stream_id, epoch, start_offset, end_offset, position, size, min_timestamp, max_timestamp
                    FROM stream_ranges WHERE object_id = ? ORDER BY stream_id, start_offset
                    """, [o[0]]).map {
                    StreamRange(streamId: $0[0].int!, epoch: $0[1].int!, startOffset: $0[2].int!, endOffset: $0[3].int!,
                                objectKey: key, position: Int($0[4].int!), size: Int($0[5].int!),
                                minTimestamp: $0[6].int!, maxTimestamp: $0[7].int!)
                }
                return StoredObject(key: key, size: Int(o[2].int!), ranges: ranges)
            }
        }
    }

    public func commitCompaction(_ compaction: CompactionCommit, now: Int64) async throws {
        try await run { db in
            try db.transaction {
                for key in compaction.superseded {
                    // Compare-and-set: the input must still be live, or another compaction or
                    // garbage collection got there first.
                    try db.query("UPDATE objects SET garbage_since = ? WHERE key = ? AND garbage_since IS NULL", [.int(now), .text(key)])
                    guard db.changes == 1 else { throw MetadataError(.conflict, "compaction input \(key) is no longer live") }
                    try db.query("DELETE FROM stream_ranges WHERE object_id = (SELECT object_id FROM objects WHERE key = ?)", [.text(key)])
                }
                for o in compaction.objects {
                    try db.query("INSERT INTO objects (key, size) VALUES (?, ?)", [.text(o.key), .int(Int64(o.size))])
                    let objectId = try db.query("SELECT object_id FROM objects WHERE key = ?", [.text(o.key)])[0][0].int!
                    for r in o.ranges {
                        // A stream deleted since the run was planned: its data is simply not kept.
                        if try db.query("SELECT 1 FROM streams WHERE stream_id = ?", [.int(r.streamId)]).isEmpty { continue }
                        try db.query("""
                            INSERT INTO stream_ranges (stream_id, start_offset, end_offset, epoch, object_id, position, size, min_timestamp, max_timestamp)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """, [.int(r.streamId), .int(r.startOffset), .int(r.endOffset), .int(r.epoch), .int(objectId),
                                  .int(Int64(r.position)), .int(Int64(r.size)), .int(r.minTimestamp), .int(r.maxTimestamp)])
                    }
                }
            }
        }
    }
}
