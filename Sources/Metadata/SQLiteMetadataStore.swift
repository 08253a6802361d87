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
            try db.query("SELECT producer_id, producer_epoch, batches FROM producer_states WHERE stream_id = ?", [.int(streamId)]).map {
                ProducerStateRecord(streamId: streamId, producerId: $0[0].int!, producerEpoch: Int16($0[1].int!),
                                    batches: MetadataSchema.decodeBatches($0[2].text!))
            }
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
                        INSERT INTO producer_states (stream_id, producer_id, producer_epoch, batches) VALUES (?, ?, ?, ?)
                        ON CONFLICT (stream_id, producer_id) DO UPDATE SET producer_epoch = excluded.producer_epoch, batches = excluded.batches
                        """, [.int(p.streamId), .int(p.producerId), .int(Int64(p.producerEpoch)), .text(MetadataSchema.encodeBatches(p.batches))])
                }
            }
        }
    }

    public func committedObjectKeys(prefix: String) async throws -> Set<String> {
        try await run { db in
            Set(try db.query("SELECT key FROM objects WHERE substr(key, 1, length(?)) = ?", [.text(prefix), .text(prefix)]).map { $0[0].text! })
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

    public func commitOffsets(group: String, _ offsets: [CommittedOffset]) async throws {
        try await run { db in
            try db.transaction {
                for o in offsets {
                    try db.query("""
                        INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata)
                        VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT (group_id, topic, partition) DO UPDATE SET committed_offset = excluded.committed_offset,
                            leader_epoch = excluded.leader_epoch, metadata = excluded.metadata
                        """, [.text(group), .text(o.topic), .int(Int64(o.partition)), .int(o.offset), .int(Int64(o.leaderEpoch)),
                              o.metadata.map { .text($0) } ?? .null])
                }
            }
        }
    }

    public func fetchOffsets(group: String) async throws -> [CommittedOffset] {
        try await run { db in
            try db.query("SELECT topic, partition, committed_offset, leader_epoch, metadata FROM group_offsets WHERE group_id = ?",
                         [.text(group)]).map {
                CommittedOffset(topic: $0[0].text!, partition: Int32($0[1].int!), offset: $0[2].int!,
                                leaderEpoch: Int32($0[3].int!), metadata: $0[4].text)
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
}
