/// A topic and the streams behind its partitions.
public struct TopicRecord: Sendable, Equatable {
    public var name: String
    /// 32 hex digits.
    public var topicId: String
    /// Stream id of each partition, by partition index.
    public var streamIds: [Int64]
    public var configs: [String: String]

    public init(name: String, topicId: String, streamIds: [Int64], configs: [String: String]) {
        self.name = name
        self.topicId = topicId
        self.streamIds = streamIds
        self.configs = configs
    }

    public var partitionCount: Int { streamIds.count }
}

/// A stream as the metadata store knows it.
public struct StreamRecord: Sendable, Equatable {
    public var streamId: Int64
    public var epoch: Int64
    public var startOffset: Int64
    public var endOffset: Int64
    /// (epoch, first offset written in that epoch), ascending.
    public var epochHistory: [EpochStart]

    public init(streamId: Int64, epoch: Int64, startOffset: Int64, endOffset: Int64, epochHistory: [EpochStart]) {
        self.streamId = streamId
        self.epoch = epoch
        self.startOffset = startOffset
        self.endOffset = endOffset
        self.epochHistory = epochHistory
    }
}

public struct EpochStart: Sendable, Equatable {
    public var epoch: Int64
    public var startOffset: Int64
    public init(epoch: Int64, startOffset: Int64) {
        self.epoch = epoch
        self.startOffset = startOffset
    }
}

/// Where one range of a stream lives: a data block of an object.
public struct StreamRange: Sendable, Equatable {
    public var streamId: Int64
    public var epoch: Int64
    public var startOffset: Int64
    /// Exclusive.
    public var endOffset: Int64
    public var objectKey: String
    public var position: Int
    public var size: Int
    public var minTimestamp: Int64
    public var maxTimestamp: Int64
    /// The whole object's size, where known (0: not known); not part of the range's
    /// identity: readers use it to GET a stream set object whole.
    public var objectSize: Int

    public init(streamId: Int64, epoch: Int64, startOffset: Int64, endOffset: Int64, objectKey: String,
                position: Int, size: Int, minTimestamp: Int64, maxTimestamp: Int64, objectSize: Int = 0) {
        self.streamId = streamId
        self.epoch = epoch
        self.startOffset = startOffset
        self.endOffset = endOffset
        self.objectKey = objectKey
        self.position = position
        self.size = size
        self.minTimestamp = minTimestamp
        self.maxTimestamp = maxTimestamp
        self.objectSize = objectSize
    }

    public static func == (a: StreamRange, b: StreamRange) -> Bool {
        a.streamId == b.streamId && a.epoch == b.epoch && a.startOffset == b.startOffset && a.endOffset == b.endOffset
            && a.objectKey == b.objectKey && a.position == b.position && a.size == b.size
            && a.minTimestamp == b.minTimestamp && a.maxTimestamp == b.maxTimestamp
    }
}

/// Idempotence state of one producer on one stream: its epoch and last batches.
public struct ProducerStateRecord: Sendable, Equatable {
    public struct Batch: Sendable, Equatable {
        public var firstSequence: Int32
        public var lastSequence: Int32
        public var baseOffset: Int64
        public var lastOffset: Int64
        /// The batch's MaxTimestamp (-1 if unknown: state written before it was kept);
        /// DescribeProducers reports the last one as the producer's `lastTimestamp`.
        public var maxTimestamp: Int64
        public init(firstSequence: Int32, lastSequence: Int32, baseOffset: Int64, lastOffset: Int64, maxTimestamp: Int64 = -1) {
            self.firstSequence = firstSequence
            self.lastSequence = lastSequence
            self.baseOffset = baseOffset
            self.lastOffset = lastOffset
            self.maxTimestamp = maxTimestamp
        }
    }

    public var streamId: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    /// Oldest first, at most five.
    public var batches: [Batch]
    /// First offset of the producer's open transaction on this stream, -1 when none: the
    /// last stable offset cannot pass it.
    public var txnFirstOffset: Int64
    /// Coordinator epoch of the last transaction marker written for this producer (-1: none).
    public var coordinatorEpoch: Int32

    public init(streamId: Int64, producerId: Int64, producerEpoch: Int16, batches: [Batch],
                txnFirstOffset: Int64 = -1, coordinatorEpoch: Int32 = -1) {
        self.streamId = streamId
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.batches = batches
        self.txnFirstOffset = txnFirstOffset
        self.coordinatorEpoch = coordinatorEpoch
    }
}

/// An aborted transaction on one stream (Kafka's AbortedTxn): read_committed fetches skip
/// the producer's batches from `firstOffset` up to the ABORT marker at `lastOffset`.
public struct AbortedTxnRecord: Sendable, Equatable {
    public var streamId: Int64
    public var producerId: Int64
    public var firstOffset: Int64
    /// Offset of the ABORT marker.
    public var lastOffset: Int64

    public init(streamId: Int64, producerId: Int64, firstOffset: Int64, lastOffset: Int64) {
        self.streamId = streamId
        self.producerId = producerId
        self.firstOffset = firstOffset
        self.lastOffset = lastOffset
    }
}

/// The transaction coordinator's durable state of one transactional id, stored whole on
/// every transition (Kafka's TransactionLogValue). `partitions` and `pendingOffsets` are
/// plain text so that every store keeps them in one column.
public struct TransactionRecord: Sendable, Equatable {
    public var transactionalId: String
    public var producerId: Int64
    public var producerEpoch: Int16
    /// The producer id and epoch before the last bump (-1: none), so a retried
    /// InitProducerId is recognised.
    public var lastProducerId: Int64
    public var lastProducerEpoch: Int16
    public var timeoutMs: Int32
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, ...
    public var state: String
    /// "topic:partition" joined by newlines.
    public var partitions: String
    /// Offsets committed in the transaction, "group\ttopic\tpartition\toffset\tleaderEpoch\tmetadata"
    /// per line; applied to the group's offsets on commit.
    public var pendingOffsets: String
    /// Wall-clock ms the transaction started (-1 when none is open).
    public var startMs: Int64
    public var updateMs: Int64

    public init(transactionalId: String, producerId: Int64, producerEpoch: Int16, lastProducerId: Int64, lastProducerEpoch: Int16,
                timeoutMs: Int32, state: String, partitions: String, pendingOffsets: String, startMs: Int64, updateMs: Int64) {
        self.transactionalId = transactionalId
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.lastProducerId = lastProducerId
        self.lastProducerEpoch = lastProducerEpoch
        self.timeoutMs = timeoutMs
        self.state = state
        self.partitions = partitions
        self.pendingOffsets = pendingOffsets
        self.startMs = startMs
        self.updateMs = updateMs
    }
}

/// An uploaded object and everything it makes durable, committed in one transaction.
public struct ObjectCommit: Sendable, Equatable {
    public var key: String
    public var size: Int
    public var ranges: [StreamRange]
    public var producerStates: [ProducerStateRecord]
    /// Transactions whose ABORT marker this object holds.
    public var abortedTxns: [AbortedTxnRecord]

    public init(key: String, size: Int, ranges: [StreamRange], producerStates: [ProducerStateRecord], abortedTxns: [AbortedTxnRecord] = []) {
        self.key = key
        self.size = size
        self.ranges = ranges
        self.producerStates = producerStates
        self.abortedTxns = abortedTxns
    }
}

/// A committed consumer-group offset.
public struct CommittedOffset: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var leaderEpoch: Int32
    public var metadata: String?
    /// When it was committed (wall-clock milliseconds), or moved on by offset expiration
    /// (`touchOffsets`); 0 for one stored before this was kept. Offsets expire from it.
    public var commitTimestampMs: Int64

    public init(topic: String, partition: Int32, offset: Int64, leaderEpoch: Int32, metadata: String?, commitTimestampMs: Int64 = 0) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.leaderEpoch = leaderEpoch
        self.metadata = metadata
        self.commitTimestampMs = commitTimestampMs
    }
}

/// Which objects hold which offsets, and the rest of the cluster's small state.
///
/// SQLite for one broker, PostgreSQL for a cluster: the same schema and the same
/// compare-and-set SQL (`UPDATE … WHERE epoch = $e`, rows affected checked).
public protocol MetadataStore: ClusterStore {
    /// Creates the schema if needed; registers the broker with a new broker epoch and a
    /// lease of `leaseMs` (renewed by `renewLease` from then on).
    func bootstrap(nodeId: Int32, leaseMs: Int64) async throws -> (clusterId: String, brokerEpoch: Int64)
    func topics() async throws -> [TopicRecord]
    /// Creates a topic and one stream per partition; `.topicExists` if the name is taken.
    func createTopic(name: String, topicId: String, partitions: Int, configs: [String: String]) async throws -> TopicRecord
    /// Deletes a topic and its streams; returns it, or nil if it did not exist.
    func deleteTopic(name: String) async throws -> TopicRecord?
    /// Replaces every config override of a topic with `configs` (AlterConfigs replaces the
    /// whole set; IncrementalAlterConfigs passes the merged set). `.notFound` if no such topic.
    func setTopicConfigs(name: String, configs: [String: String]) async throws
    /// Grows a topic to `count` partitions, one new stream (epoch 0, empty) per new partition,
    /// and returns it; a count not above the current one changes nothing. `.notFound` if no
    /// such topic.
    func addPartitions(name: String, count: Int) async throws -> TopicRecord
    /// Raises a stream's start offset to `offset` (DeleteRecords); never lowers it. Fenced by
    /// the owner's epoch. Returns the start offset now stored.
    func advanceStartOffset(streamId: Int64, epoch: Int64, to offset: Int64) async throws -> Int64
    /// Takes ownership of a stream: raises its epoch and records where the epoch starts.
    func openStream(streamId: Int64, owner: Int32) async throws -> StreamRecord
    func ranges(streamId: Int64) async throws -> [StreamRange]
    func producerStates(streamId: Int64) async throws -> [ProducerStateRecord]
    /// The aborted-transaction index of a stream, by first offset.
    func abortedTxns(streamId: Int64) async throws -> [AbortedTxnRecord]
    /// Commits an object: its ranges extend their streams (epoch-fenced); producer state
    /// and aborted transactions are written in the same transaction. Ranges of deleted streams are dropped.
    func commit(_ commit: ObjectCommit) async throws
    /// Every durable table as rows, read in one transaction (`MetadataSnapshot`).
    func snapshot() async throws -> MetadataSnapshot
    /// Loads a snapshot into a new store (`tern admin rebuild-metadata`).
    func restore(_ snapshot: MetadataSnapshot) async throws
    /// Keys of committed objects under a prefix.
    func committedObjectKeys(prefix: String) async throws -> Set<String>
    func allocateProducerId() async throws -> Int64
    /// Every transactional id the transaction coordinator knows.
    func transactions() async throws -> [TransactionRecord]
    /// Inserts or replaces the state of one transactional id.
    func putTransaction(_ t: TransactionRecord) async throws
    /// Forgets a transactional id (expired); no error if unknown.
    func deleteTransaction(transactionalId: String) async throws
    func commitOffsets(group: String, _ offsets: [CommittedOffset]) async throws
    func fetchOffsets(group: String) async throws -> [CommittedOffset]
    /// Ids of the groups that hold at least one committed offset, sorted.
    func groupsWithOffsets() async throws -> [String]
    /// Deletes every committed offset of a group; false if it had none.
    func deleteGroupOffsets(group: String) async throws -> Bool
    /// Deletes some committed offsets of a group, in one transaction; false (and nothing
    /// deleted) if the group has no committed offset at all.
    func deleteOffsets(group: String, _ partitions: [(topic: String, partition: Int32)]) async throws -> Bool
    /// Moves the commit time of some offsets of a group forward to `time` (never back), so
    /// they expire later (offset expiration keeps the offsets it must not expire yet current).
    func touchOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], at time: Int64) async throws
    /// Deletes those of `partitions` committed before `time` (an offset committed since is
    /// kept); returns how many it deleted.
    func expireOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], committedBefore time: Int64) async throws -> Int

    // MARK: garbage collection and compaction (ARCHITECTURE.md "Compaction and retention")

    /// Marks objects that nothing can read any more as garbage at `now` (ms): first drops the
    /// ranges wholly below their stream's start offset, then marks every live object that no
    /// range references (its data was trimmed, its topic deleted, or compaction superseded
    /// it). Returns how many objects were newly marked.
    func markGarbage(now: Int64) async throws -> Int
    /// Keys of objects marked garbage at or before `markedBefore`, oldest mark first.
    func garbageObjects(markedBefore: Int64, limit: Int) async throws -> [String]
    /// Drops the rows of garbage objects once they are deleted from the object store. Keys
    /// that are not (or no longer) garbage are left alone.
    func dropGarbage(keys: [String]) async throws
    /// Live (not garbage) objects whose key starts with `prefix`, oldest commit first, at most
    /// `limit`, each with the ranges that reference it.
    func liveObjects(prefix: String, limit: Int) async throws -> [StoredObject]
    /// Swaps compaction's inputs for its outputs in one transaction: the superseded objects
    /// must all still be live (compare-and-set on their state, else `.conflict` and nothing
    /// changes); their ranges are replaced by the new objects' ranges (ranges of streams
    /// deleted meanwhile are dropped); the superseded objects are marked garbage at `now`.
    func commitCompaction(_ compaction: CompactionCommit, now: Int64) async throws
}

/// A committed object with the ranges that reference it.
public struct StoredObject: Sendable, Equatable {
    public var key: String
    public var size: Int
    public var ranges: [StreamRange]

    public init(key: String, size: Int, ranges: [StreamRange]) {
        self.key = key
        self.size = size
        self.ranges = ranges
    }

    /// Bytes still referenced (an object's size counts its index and dead ranges too).
    public var liveBytes: Int { ranges.reduce(0) { $0 + $1.size } }
}

/// What one compaction run makes of its inputs.
public struct CompactionCommit: Sendable, Equatable {
    /// Keys of the objects whose live ranges the new objects hold.
    public var superseded: [String]
    /// The new objects (key, size, ranges).
    public var objects: [StoredObject]

    public init(superseded: [String], objects: [StoredObject]) {
        self.superseded = superseded
        self.objects = objects
    }
}

extension MetadataStore {
    /// `bootstrap` with the default session timeout of a broker as the first lease.
    public func bootstrap(nodeId: Int32) async throws -> (clusterId: String, brokerEpoch: Int64) {
        try await bootstrap(nodeId: nodeId, leaseMs: 9000)
    }
}
