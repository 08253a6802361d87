/// Every statement of the metadata stores, written once and run by both: `?` parameters
/// (PostgreSQL's `$n` are numbered by `SQLDialect.parameters`), no dialect-specific SQL.
/// The schema they run on is `MetadataSchema`.
enum MetadataSQL {
    static let clusterId = "SELECT cluster_id FROM cluster"
    static let insertCluster = "INSERT INTO cluster (id, cluster_id) VALUES (1, ?)"
    /// A broker start: a new broker epoch for the node.
    static let registerBroker = """
        INSERT INTO brokers (node_id, broker_epoch) VALUES (?, 1)
            ON CONFLICT (node_id) DO UPDATE SET broker_epoch = brokers.broker_epoch + 1
        """
    static let brokerEpoch = "SELECT broker_epoch FROM brokers WHERE node_id = ?"

    // Cluster: leases (database clock), the controller, placement, the change version.

    /// The database's clock in milliseconds: every lease is timed by it, never by a broker's.
    static func nowMs(_ d: SQLDialect) -> String {
        switch d {
        case .sqlite: "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        case .postgres: "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        }
    }
    static let clusterVersion = "SELECT version FROM cluster"
    /// Every change to topics or placement bumps it: brokers reload only when it moved.
    static let bumpVersion = "UPDATE cluster SET version = version + 1"
    static let upsertLoads = """
        INSERT INTO broker_loads (node_id, loads, updated_ms) VALUES (?, ?, ?)
            ON CONFLICT (node_id) DO UPDATE SET loads = excluded.loads, updated_ms = excluded.updated_ms
        """
    static let allLoads = "SELECT node_id, loads FROM broker_loads"
    /// PostgreSQL: wakes every broker listening on the cluster's channel.
    static let notifyChange = "SELECT pg_notify('tern_cluster', '')"
    static let clusterChannel = "tern_cluster"
    static let startLease = "UPDATE brokers SET lease_expires_ms = ? WHERE node_id = ?"
    /// Only this run of the node, and only while it has not been failed over.
    static let renewLease = """
        UPDATE brokers SET host = ?, port = ?, internal_port = ?, rack = ?, lease_expires_ms = ?
            WHERE node_id = ? AND broker_epoch = ? AND recovered_epoch < broker_epoch
        """
    static let allBrokers = "SELECT node_id, broker_epoch, host, port, rack, lease_expires_ms, recovered_epoch, internal_port, draining FROM brokers ORDER BY node_id"
    static let setDraining = "UPDATE brokers SET draining = ? WHERE node_id = ?"
    static let controllerLease = "SELECT node_id, broker_epoch, expires_ms FROM controller"
    static let takeController = """
        INSERT INTO controller (id, node_id, broker_epoch, expires_ms) VALUES (1, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET node_id = excluded.node_id, broker_epoch = excluded.broker_epoch, expires_ms = excluded.expires_ms
        """
    static let streamPlacements = "SELECT stream_id, topic, partition, epoch, owner, assigned FROM streams ORDER BY stream_id"
    static let assignStream = "UPDATE streams SET assigned = ? WHERE stream_id = ?"
    /// The owner gives a stream up: compare-and-set on its epoch (rows affected checked).
    static let releaseStream = "UPDATE streams SET owner = NULL WHERE stream_id = ? AND epoch = ?"
    static let releaseOwnedBy = "UPDATE streams SET owner = NULL WHERE owner = ?"
    static let markRecovered = "UPDATE brokers SET recovered_epoch = ? WHERE node_id = ? AND broker_epoch = ?"
    static let allTopics = "SELECT name, topic_id, partitions FROM topics ORDER BY name"
    static let topicByName = "SELECT name, topic_id, partitions FROM topics WHERE name = ?"
    static let topicStreams = "SELECT partition, stream_id FROM streams WHERE topic = ?"
    static let topicConfigs = "SELECT key, value FROM topic_configs WHERE topic = ?"
    static let topicExists = "SELECT 1 FROM topics WHERE name = ?"
    static let insertTopic = "INSERT INTO topics (name, topic_id, partitions) VALUES (?, ?, ?)"
    static let insertTopicConfig = "INSERT INTO topic_configs (topic, key, value) VALUES (?, ?, ?)"
    static let nextStreamId = "SELECT next_stream_id FROM cluster"
    static let setNextStreamId = "UPDATE cluster SET next_stream_id = ?"
    static let insertStream = """
        INSERT INTO streams (stream_id, topic, partition, epoch, start_offset, end_offset)
            VALUES (?, ?, ?, 0, 0, 0)
        """
    static let deleteTopic = "DELETE FROM topics WHERE name = ?"
    static let deleteTopicConfigs = "DELETE FROM topic_configs WHERE topic = ?"
    static let topicPartitions = "SELECT partitions FROM topics WHERE name = ?"
    static let setTopicPartitions = "UPDATE topics SET partitions = ? WHERE name = ?"
    /// DeleteRecords: only raises, and only for the owner's epoch (rows affected checked).
    static let raiseStartOffset = "UPDATE streams SET start_offset = ? WHERE stream_id = ? AND epoch = ? AND start_offset < ?"
    /// With every start-offset raise (DeleteRecords, retention): aborted transactions that end
    /// below the stream's start offset are of no use to any read (Kafka drops a segment's
    /// aborted-transaction index with the segment).
    static let trimAbortedTxns = """
        DELETE FROM aborted_txns WHERE stream_id = ? AND last_offset < (SELECT start_offset FROM streams WHERE stream_id = ?)
        """
    static let streamEpochAndStart = "SELECT epoch, start_offset FROM streams WHERE stream_id = ?"
    static let streamEpochAndEnd = "SELECT epoch, end_offset FROM streams WHERE stream_id = ?"
    /// Ownership: compare-and-set on the epoch (rows affected checked).
    static let takeStream = "UPDATE streams SET epoch = ?, owner = ? WHERE stream_id = ? AND epoch = ?"
    static let insertStreamEpoch = "INSERT INTO stream_epochs (stream_id, epoch, start_offset) VALUES (?, ?, ?)"
    static let streamState = "SELECT epoch, start_offset, end_offset FROM streams WHERE stream_id = ?"
    static let streamEpochHistory = "SELECT epoch, start_offset FROM stream_epochs WHERE stream_id = ? ORDER BY epoch"
    static let streamRanges = """
        SELECT r.epoch, r.start_offset, r.end_offset, o.key, r.position, r.size, r.min_timestamp, r.max_timestamp, o.size
            FROM stream_ranges r JOIN objects o ON o.object_id = r.object_id
            WHERE r.stream_id = ? ORDER BY r.start_offset
        """
    static let producerStates = """
        SELECT producer_id, producer_epoch, batches, txn_first_offset, coordinator_epoch FROM producer_states WHERE stream_id = ?
        """
    static let abortedTxns = "SELECT producer_id, first_offset, last_offset FROM aborted_txns WHERE stream_id = ? ORDER BY first_offset"
    static let insertObject = "INSERT INTO objects (key, size) VALUES (?, ?)"
    static let objectId = "SELECT object_id FROM objects WHERE key = ?"
    /// A commit: compare-and-set on epoch and end offset (rows affected checked).
    static let extendStream = "UPDATE streams SET end_offset = ? WHERE stream_id = ? AND epoch = ? AND end_offset = ?"
    static let insertRange = """
        INSERT INTO stream_ranges (stream_id, start_offset, end_offset, epoch, object_id, position, size, min_timestamp, max_timestamp)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    static let upsertProducerState = """
        INSERT INTO producer_states (stream_id, producer_id, producer_epoch, batches, txn_first_offset, coordinator_epoch)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (stream_id, producer_id) DO UPDATE SET producer_epoch = excluded.producer_epoch, batches = excluded.batches,
            txn_first_offset = excluded.txn_first_offset, coordinator_epoch = excluded.coordinator_epoch
        """
    static let insertAbortedTxn = """
        INSERT INTO aborted_txns (stream_id, producer_id, first_offset, last_offset) VALUES (?, ?, ?, ?)
            ON CONFLICT (stream_id, last_offset) DO NOTHING
        """
    static let transactions = """
        SELECT transactional_id, producer_id, producer_epoch, last_producer_id, last_producer_epoch, timeout_ms, state,
               partitions, pending_offsets, start_ms, update_ms
            FROM transactions ORDER BY transactional_id
        """
    static let upsertTransaction = """
        INSERT INTO transactions (transactional_id, producer_id, producer_epoch, last_producer_id, last_producer_epoch, timeout_ms,
                                  state, partitions, pending_offsets, start_ms, update_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (transactional_id) DO UPDATE SET producer_id = excluded.producer_id, producer_epoch = excluded.producer_epoch,
            last_producer_id = excluded.last_producer_id, last_producer_epoch = excluded.last_producer_epoch,
            timeout_ms = excluded.timeout_ms, state = excluded.state, partitions = excluded.partitions,
            pending_offsets = excluded.pending_offsets, start_ms = excluded.start_ms, update_ms = excluded.update_ms
        """
    static let deleteTransaction = "DELETE FROM transactions WHERE transactional_id = ?"
    /// Characters on both sides: SQLite's and PostgreSQL's substr and length count characters.
    static let objectKeysWithPrefix = "SELECT key FROM objects WHERE substr(key, 1, length(?)) = ?"
    static let nextProducerId = "SELECT next_producer_id FROM cluster"
    static let setNextProducerId = "UPDATE cluster SET next_producer_id = ?"
    static let upsertGroupOffset = """
        INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (group_id, topic, partition) DO UPDATE SET committed_offset = excluded.committed_offset,
            leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms
        """
    static let groupOffsets = """
        SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms FROM group_offsets WHERE group_id = ?
        """
    /// Offset expiration: moves a commit time forward, never back.
    static let touchGroupOffset = """
        UPDATE group_offsets SET commit_time_ms = ?
            WHERE group_id = ? AND topic = ? AND partition = ? AND commit_time_ms < ?
        """
    /// Offset expiration: only if not committed again since (rows affected counted).
    static let expireGroupOffset = """
        DELETE FROM group_offsets
            WHERE group_id = ? AND topic = ? AND partition = ? AND commit_time_ms > 0 AND commit_time_ms < ?
        """
    static let groupsWithOffsets = "SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id"
    static let deleteGroupOffsets = "DELETE FROM group_offsets WHERE group_id = ?"
    static let groupHasOffsets = "SELECT 1 FROM group_offsets WHERE group_id = ? LIMIT 1"
    static let deleteGroupOffset = "DELETE FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?"

    // Garbage collection and compaction.
    static let dropTrimmedRanges = """
        DELETE FROM stream_ranges
            WHERE end_offset <= (SELECT s.start_offset FROM streams s WHERE s.stream_id = stream_ranges.stream_id)
        """
    static let markUnreferencedGarbage = """
        UPDATE objects SET garbage_since = ?
            WHERE garbage_since IS NULL
            AND NOT EXISTS (SELECT 1 FROM stream_ranges r WHERE r.object_id = objects.object_id)
        """
    static let garbageObjects = """
        SELECT key FROM objects WHERE garbage_since IS NOT NULL AND garbage_since <= ?
            ORDER BY garbage_since, object_id LIMIT ?
        """
    static let dropGarbageObject = "DELETE FROM objects WHERE key = ? AND garbage_since IS NOT NULL"
    /// Characters on both sides, as `objectKeysWithPrefix`.
    static let liveObjects = """
        SELECT object_id, key, size FROM objects
            WHERE garbage_since IS NULL AND substr(key, 1, length(?)) = ?
            ORDER BY object_id LIMIT ?
        """
    static let objectRanges = """
        SELECT stream_id, epoch, start_offset, end_offset, position, size, min_timestamp, max_timestamp
            FROM stream_ranges WHERE object_id = ? ORDER BY stream_id, start_offset
        """
    /// Compaction's compare-and-set: the input must still be live (rows affected checked).
    static let supersedeObject = "UPDATE objects SET garbage_since = ? WHERE key = ? AND garbage_since IS NULL"
    static let dropObjectRanges = "DELETE FROM stream_ranges WHERE object_id = (SELECT object_id FROM objects WHERE key = ?)"
    static let streamExists = "SELECT 1 FROM streams WHERE stream_id = ?"
}
