import Foundation

/// The metadata store's durable state as rows, table by table: what the broker writes to
/// `<cluster>/meta/snapshots/` and `tern admin rebuild-metadata` loads into an empty store.
///
/// Every table that holds what a cluster cannot learn again is in it. Left out: the
/// controller lease and the brokers' reported loads, which the brokers write afresh.
public struct MetadataSnapshot: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public var format: Int
    /// The schema version (`MetadataSchema`) the rows were read from.
    public var schemaVersion: Int64
    /// Wall-clock time of the database when it was taken (ms).
    public var takenMs: Int64
    public var tables: [Table]

    public struct Table: Codable, Sendable, Equatable {
        public var name: String
        public var columns: [String]
        public var rows: [[SQLValue]]

        public init(name: String, columns: [String], rows: [[SQLValue]]) {
            self.name = name
            self.columns = columns
            self.rows = rows
        }

        /// The index of a column; a programming error if the table has none of that name.
        public func column(_ name: String) -> Int {
            guard let i = columns.firstIndex(of: name) else { preconditionFailure("table \(self.name) has no column \(name)") }
            return i
        }
    }

    public init(schemaVersion: Int64, takenMs: Int64, tables: [Table]) {
        self.format = Self.currentFormat
        self.schemaVersion = schemaVersion
        self.takenMs = takenMs
        self.tables = tables
    }

    public subscript(name: String) -> Table {
        get {
            guard let t = tables.first(where: { $0.name == name }) else { preconditionFailure("snapshot has no table \(name)") }
            return t
        }
        set {
            guard let i = tables.firstIndex(where: { $0.name == name }) else { preconditionFailure("snapshot has no table \(name)") }
            tables[i] = newValue
        }
    }

    public var clusterId: String? { self["cluster"].rows.first.flatMap { $0[self["cluster"].column("cluster_id")].text } }

    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return try e.encode(self)
    }

    public static func decode(_ data: Data) throws -> MetadataSnapshot {
        let s: MetadataSnapshot
        do {
            s = try JSONDecoder().decode(MetadataSnapshot.self, from: data)
        } catch {
            throw MetadataError(.database, "not a metadata snapshot: \(error)")
        }
        guard s.format == currentFormat else { throw MetadataError(.database, "metadata snapshot format \(s.format); this tern reads \(currentFormat)") }
        // Checked here, so that what reads the rows (the rebuild) can rely on them.
        for t in snapshotTables {
            guard let table = s.tables.first(where: { $0.name == t.name }) else {
                throw MetadataError(.database, "metadata snapshot lacks table \(t.name)")
            }
            for c in t.columns where !table.columns.contains(c) {
                throw MetadataError(.database, "metadata snapshot: table \(t.name) lacks column \(c)")
            }
            let ints = (integerColumns[t.name] ?? []).map { table.columns.firstIndex(of: $0)! }
            let texts = (textColumns[t.name] ?? []).map { table.columns.firstIndex(of: $0)! }
            for (n, row) in table.rows.enumerated() {
                guard row.count == table.columns.count, ints.allSatisfy({ row[$0].int != nil }),
                      texts.allSatisfy({ row[$0].text != nil }) else {
                    throw MetadataError(.database, "metadata snapshot: row \(n + 1) of table \(t.name) does not fit its columns")
                }
            }
        }
        return s
    }

    /// Columns that must hold an integer in every row.
    static let integerColumns: [String: [String]] = [
        "cluster": ["next_producer_id", "version"],
        "brokers": ["node_id", "broker_epoch"],
        "streams": ["stream_id", "epoch", "start_offset", "end_offset"],
        "stream_epochs": ["stream_id", "epoch", "start_offset"],
        "objects": ["object_id", "size"],
        "stream_ranges": ["stream_id", "start_offset", "end_offset", "epoch", "object_id", "position", "size",
                          "min_timestamp", "max_timestamp"],
    ]

    /// Columns that must hold text in every row.
    static let textColumns: [String: [String]] = ["cluster": ["cluster_id"], "objects": ["key"]]

    /// The tables in a snapshot, parents before children (the order rows are inserted in),
    /// with their columns as of the current schema.
    static let snapshotTables: [(name: String, columns: [String])] = [
        ("cluster", ["id", "cluster_id", "next_producer_id", "next_stream_id", "version"]),
        ("brokers", ["node_id", "broker_epoch", "host", "port", "rack", "lease_expires_ms", "recovered_epoch", "internal_port", "draining"]),
        ("topics", ["name", "topic_id", "partitions"]),
        ("topic_configs", ["topic", "key", "value"]),
        ("streams", ["stream_id", "topic", "partition", "epoch", "owner", "start_offset", "end_offset", "assigned"]),
        ("stream_epochs", ["stream_id", "epoch", "start_offset"]),
        ("objects", ["object_id", "key", "size", "garbage_since"]),
        ("stream_ranges", ["stream_id", "start_offset", "end_offset", "epoch", "object_id", "position", "size", "min_timestamp", "max_timestamp"]),
        ("producer_states", ["stream_id", "producer_id", "producer_epoch", "batches", "txn_first_offset", "coordinator_epoch"]),
        ("aborted_txns", ["stream_id", "producer_id", "first_offset", "last_offset"]),
        ("group_offsets", ["group_id", "topic", "partition", "committed_offset", "leader_epoch", "metadata", "commit_time_ms"]),
        ("transactions", ["transactional_id", "producer_id", "producer_epoch", "last_producer_id", "last_producer_epoch", "timeout_ms",
                          "state", "partitions", "pending_offsets", "start_ms", "update_ms"]),
    ]
}

extension SQLValue: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let v = try? c.decode(Int64.self) {
            self = .int(v)
        } else {
            self = .text(try c.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let v): try c.encode(v)
        case .text(let v): try c.encode(v)
        case .null: try c.encodeNil()
        }
    }
}

extension SQLMetadataStore {
    /// Every durable table, read in one transaction so that the rows agree with each other.
    public func snapshot() async throws -> MetadataSnapshot {
        try await migrate()
        let dialect = engine.dialect
        return try await engine.transaction { db in
            let version = try await db.query(MetadataSchema.currentVersion)[0][0].int ?? 0
            let now = try await db.query(MetadataSQL.nowMs(dialect))[0][0].int!
            var tables: [MetadataSnapshot.Table] = []
            for t in MetadataSnapshot.snapshotTables {
                let rows = try await db.query("SELECT \(t.columns.joined(separator: ", ")) FROM \(t.name) ORDER BY \(t.columns[0])")
                tables.append(.init(name: t.name, columns: t.columns, rows: rows))
            }
            return MetadataSnapshot(schemaVersion: version, takenMs: now, tables: tables)
        }
    }

    /// Loads `snapshot` into this store, in one transaction. The store must be new: no
    /// topic, no object and no cluster id yet (brokers never started on it).
    public func restore(_ snapshot: MetadataSnapshot) async throws {
        try await migrate()
        let dialect = engine.dialect
        try await engine.transaction { db in
            let used = try await db.query("SELECT (SELECT COUNT(*) FROM cluster) + (SELECT COUNT(*) FROM topics) + (SELECT COUNT(*) FROM objects)")[0][0].int ?? 0
            guard used == 0 else {
                throw MetadataError(.conflict, "the metadata store is not empty (it has a cluster id, topics or objects); rebuild into a new database")
            }
            try await db.query("DELETE FROM brokers")
            for t in MetadataSnapshot.snapshotTables {
                let table = snapshot[t.name]
                let marks = Array(repeating: "?", count: table.columns.count).joined(separator: ", ")
                let insert = "INSERT INTO \(t.name) (\(table.columns.joined(separator: ", "))) VALUES (\(marks))"
                for row in table.rows { try await db.query(insert, row) }
            }
            // Object ids were given explicitly: PostgreSQL's identity must move past them.
            if dialect == .postgres {
                try await db.query("SELECT setval(pg_get_serial_sequence('objects', 'object_id'), (SELECT COALESCE(MAX(object_id), 0) + 1 FROM objects), false)")
            }
        }
    }
}
