import DequeModule
import KafkaProtocol
import Logging
import Metadata
import NIOConcurrencyHelpers
import NIOCore
import ObjectStore

/// Storage settings, by their Kafka-style property names.
public struct StorageConfig: Sendable {
    /// `wal.upload.bytes`: flush when the WAL buffer holds this much.
    public var uploadBytes = 8 << 20
    /// `wal.upload.interval.ms`: flush at the latest this long after the first unflushed append.
    public var uploadIntervalMs = 250
    /// `wal.upload.idle.ms`: with no upload under way, flush a buffer of at least
    /// `uploadBytes / 8` once no append came for this long (0: never). Producers whose
    /// requests in flight all wait in that buffer send nothing more, so waiting longer only
    /// delays their acks.
    public var uploadIdleMs = 10
    /// `wal.buffer.max.bytes`: unflushed plus uploading bytes above which produce waits.
    public var maxUnflushedBytes = 64 << 20
    /// `wal.upload.concurrency`: WAL objects uploading at once (acked in WAL order).
    public var maxConcurrentUploads = 4
    /// `log.cache.bytes`: recent batches kept in memory for tail reads.
    public var logCacheBytes = 256 << 20
    /// `block.cache.bytes`: object blocks kept for catch-up reads.
    public var blockCacheBytes = 256 << 20
    /// `block.cache.block.bytes`: the unit of the block cache and of its ranged GETs, and the
    /// smallest readahead.
    public var blockCacheBlockBytes = 512 << 10
    /// `block.cache.readahead.max.bytes`: the largest readahead of a sequential reader.
    public var readaheadMaxBytes = 32 << 20
    /// `block.cache.prefetch.objects`: objects a catch-up reader's GETs run ahead by.
    public var prefetchObjects = 2
    /// `object.store.max.bytes.per.sec`, `catchup.read.max.bytes.per.sec`,
    /// `compaction.min.bytes.per.sec`: the throughput classes' limits.
    public var throughput = ThroughputLimits()

    public init() {}
}

/// Why a broker's WAL could not be recovered.
public struct RecoveryError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Why an append was not made durable.
public enum AppendError: Error, Equatable, Sendable {
    case unknownStream
    case rejected(ErrorCode)
    /// Another broker took over: NOT_LEADER_OR_FOLLOWER.
    case fenced
    /// The request's timeout passed first; the batch may still be written.
    case timedOut
    case shuttingDown
}

public struct AppendResult: Sendable, Equatable {
    public var baseOffset: Int64
    public var logStartOffset: Int64
}

/// A fetch's view of a stream.
public struct ReadResult: Sendable {
    /// The records, end to end, as the buffers that hold them: the LogCache's batches, or
    /// slices of the object blocks they were read from (where a batch may run from one
    /// block into the next). A Fetch answers with these parts as they are.
    public private(set) var parts: [ByteBuffer]
    /// Whether `parts` are whole batches, one each.
    private var partsAreBatches: Bool
    /// The offset after the last batch, or nil when there is none.
    public private(set) var nextOffset: Int64?
    public var highWatermark: Int64
    public var logStartOffset: Int64
    /// The last stable offset: below it no transaction is open.
    public var lastStableOffset: Int64 = -1
    /// For read_committed reads: the aborted transactions overlapping the batches returned.
    public var abortedTxns: [AbortedTxnRecord] = []
    public let bytes: Int

    /// Whole batches, each in a buffer of its own.
    public init(batches: [ByteBuffer], highWatermark: Int64, logStartOffset: Int64, lastStableOffset: Int64 = -1) {
        self.init(parts: batches, partsAreBatches: true, nextOffset: batches.last.flatMap { RecordBatchHeader(peeking: $0) }.map { $0.lastOffset + 1 },
                  highWatermark: highWatermark, logStartOffset: logStartOffset, lastStableOffset: lastStableOffset)
    }

    /// Whole batches laid end to end over `parts`, the last of them ending before `nextOffset`.
    init(parts: [ByteBuffer], partsAreBatches: Bool, nextOffset: Int64?, highWatermark: Int64, logStartOffset: Int64, lastStableOffset: Int64) {
        self.parts = parts
        self.partsAreBatches = partsAreBatches
        self.nextOffset = nextOffset
        self.bytes = parts.readableBytes
        self.highWatermark = highWatermark
        self.logStartOffset = logStartOffset
        self.lastStableOffset = lastStableOffset
    }

    /// The batches, each in one buffer: a batch that runs from one part into the next is
    /// copied together (only tests ask).
    public var batches: [ByteBuffer] {
        partsAreBatches ? parts : RecordBatch.split(parts.joined()).map(\.bytes)
    }

    /// The batches' headers, without copying the batches together.
    public var headers: [RecordBatchHeader] {
        partsAreBatches ? parts.compactMap { RecordBatchHeader(peeking: $0) } : RecordBatch.split(parts: parts).map(\.header)
    }

    /// The records in one buffer: the only part as it is, else a copy.
    public var records: ByteBuffer { parts.joined() }
}

/// Why a DeleteRecords trim was refused.
public enum TrimError: Error, Equatable, Sendable {
    case unknownStream
    /// Negative, or above the high watermark.
    case offsetOutOfRange
    /// Another broker took over the stream.
    case fenced
    case storage(String)
}

public enum ReadError: Error, Equatable, Sendable {
    case unknownStream
    case offsetOutOfRange
    case fencedLeaderEpoch
    case unknownLeaderEpoch
    case storage(String)
}

/// Offsets of an open stream.
public struct StreamOffsets: Sendable, Equatable {
    public var epoch: Int64
    public var logStartOffset: Int64
    public var highWatermark: Int64
    /// The first offset of the oldest open transaction, or the high watermark when none is
    /// open: read_committed consumers read up to here.
    public var lastStableOffset: Int64
}

/// The broker's storage engine: streams, the shared WAL buffer, the uploader, the LogCache
/// and the read path (ARCHITECTURE.md "Write path", "Read path").
///
/// All partitions share one WAL buffer; a flush writes one object holding every partition's
/// new batches, and an append is acked only when its object is written and the broker is not
/// fenced. The object is then committed to the metadata store in WAL order; produce does not
/// wait for that commit.
public final class StreamEngine: Sendable {
    struct CachedBatch {
        var baseOffset: Int64
        var lastOffset: Int64
        var maxTimestamp: Int64
        var bytes: ByteBuffer
    }

    struct Stream {
        var epoch: Int64
        var nextOffset: Int64
        var highWatermark: Int64
        var logStartOffset: Int64
        var cache: Deque<CachedBatch> = []
        var ranges: [StreamRange]
        var producers: ProducerStateTable
        /// Producer state as of the last completed upload: what a commit records.
        var durableProducers: ProducerStateTable
        var epochHistory: [EpochStart]
        /// The aborted-transaction index, ascending by marker offset.
        var aborted: [AbortedTxnRecord] = []
        /// Being given up for a move: appends are refused while what is buffered is committed.
        var releasing = false
        /// Bytes appended since the stream opened here (the balancer's load figures).
        var bytesIn: Int64 = 0
        /// The end of the stream's data in uploaded objects. With the S3 WAL it is the high
        /// watermark; with the file WAL the high watermark runs ahead of it. The LogCache
        /// keeps every batch above it.
        var uploadedEnd: Int64 = 0

        /// Kafka's last stable offset. A transaction counts as open until its marker is
        /// durable (when it also joins `aborted`), so read_committed never passes data of a
        /// transaction whose outcome it cannot yet tell.
        var lastStableOffset: Int64 {
            min(highWatermark, producers.firstOpenTxnOffset ?? .max, durableProducers.firstOpenTxnOffset ?? .max)
        }
    }

    /// The pending answer to one append.
    public struct AppendTicket: Sendable {
        let waiter: OneShot<Result<AppendResult, AppendError>>
        let timer: Scheduled<Void>?

        /// Waits for the answer (once per ticket).
        public func result() async -> Result<AppendResult, AppendError> {
            let r = await waiter.wait()
            // Drop the timeout now rather than keep it scheduled for the whole request timeout.
            timer?.cancel()
            return r
        }

        /// Calls `f` with the answer (once per ticket, instead of `result()`), on the thread
        /// that gives it: the WAL thread, an upload's completion, or the timeout's event loop.
        public func onResult(_ f: @escaping @Sendable (Result<AppendResult, AppendError>) -> Void) {
            let timer = self.timer
            waiter.whenDone { r in
                timer?.cancel()
                f(r)
            }
        }
    }

    struct PendingAppend {
        var waiter: OneShot<Result<AppendResult, AppendError>>
        var result: AppendResult
    }

    struct Buffer {
        var batches: [ObjectFormat.Batch] = []
        var waiters: [PendingAppend] = []
        var bytes = 0
    }

    struct Upload {
        var seq: UInt64
        var buffer: Buffer
        /// When it became a WAL object (the flush), for `walUploadDurations`.
        var started = ContinuousClock.now
        var done = false
        var key = ""
        var entries: [ObjectFormat.Entry] = []
        var size = 0
    }

    struct State {
        var streams: [Int64: Stream] = [:]
        var buffer = Buffer()
        var uploads: Deque<Upload> = []
        /// From each WAL object's flush to its acks (in WAL order).
        var uploadDurations = DurationHistogram()
        /// File WAL: each group commit's write and fdatasync.
        var syncDurations = DurationHistogram()
        var nextSeq: UInt64 = 0
        var unflushedBytes = 0
        var timerArmed = false
        var flushWanted = false
        /// Produce is backed up (`backedUpChange`), as last told to the limiter, and how many
        /// times that changed.
        var backedUp = false
        var backedUpVersion: UInt64 = 0
        /// The idle-flush timer is armed (`StorageConfig.uploadIdleMs`).
        var idleTimerArmed = false
        /// When the last batch was appended to `buffer` (object WAL; the idle flush).
        var lastAppend = NIODeadline.uptimeNanoseconds(0)
        var backpressure: [CheckedContinuation<Void, Never>] = []
        var cacheOrder: Deque<(streamId: Int64, lastOffset: Int64, size: Int)> = []
        var cacheBytes = 0
        var fenced = false
        var closing = false
        var drained: [OneShot<Bool>] = []
        /// Whether the shutdown flush finished in time, once known.
        var shutdownOutcome: Bool?
        /// File WAL: the group being appended and fdatasync'd. One at a time: the appends
        /// that arrive meanwhile make up the next group (group commit).
        var syncing: Buffer?
        /// File WAL: the WAL thread runs its group-commit loop.
        var syncLoopRunning = false
        /// File WAL: durable batches gathered for the next WAL object (segment `nextSeq`).
        var synced = Buffer()
        /// File WAL: cut `synced` into an upload once the group being synced is done.
        var cutWanted = false
        /// Where appended batches are copied to.
        var slabs = BatchSlabs()
        /// File WAL: a write or fdatasync failed. What the page cache holds is then unknown,
        /// so nothing more is acked (KAFKA_STORAGE_ERROR) until the broker restarts.
        var walFailed = false

        var isDrained: Bool {
            uploads.isEmpty && buffer.batches.isEmpty && buffer.waiters.isEmpty && syncing == nil && synced.batches.isEmpty
        }

        /// After bytes left the WAL buffer: the appends held back that may go on now, and the
        /// shutdown waiting for everything to be written, once it is.
        mutating func takeWaitersFreed(maxUnflushedBytes: Int) -> ([CheckedContinuation<Void, Never>], [OneShot<Bool>]) {
            var freed: ([CheckedContinuation<Void, Never>], [OneShot<Bool>]) = ([], [])
            if unflushedBytes < maxUnflushedBytes { swap(&freed.0, &backpressure) }
            if isDrained { swap(&freed.1, &drained) }
            return freed
        }
    }

    public let config: StorageConfig
    public let nodeId: Int32
    public let clusterId: String
    public let brokerEpoch: Int64
    public let objectStore: any ObjectStore
    let metadata: any MetadataStore
    let logger: Logger
    let loop: any EventLoop
    /// TEST-ONLY planted bugs (TestMutations.swift); empty in every real engine.
    let mutations: TestMutations
    public let notifier = AppendNotifier()
    public let blockCache: BlockCache
    let state = NIOLockedValueBox(State())
    /// Bytes read from each stream, for the balancer (`traffic()`).
    let bytesRead = NIOLockedValueBox<[Int64: Int64]>([:])
    /// Sequence numbers of compaction outputs within this broker epoch (Compaction.swift).
    let compactionSeq = NIOLockedValueBox<UInt64>(0)
    /// Block indexes of objects whose runs span several blocks (about 64 bytes an entry).
    let indexCache = ObjectIndexCache(maxEntries: 1 << 18)
    /// The keys of this node's SSOs not yet gathered, and since when they have not changed
    /// (compaction's gather waits for them to stay put; see `CompactionPlan.gather`).
    let gatherWatch = NIOLockedValueBox<(keys: Set<String>, since: Int64)>(([], 0))
    /// When compaction first saw each of this node's small SSOs (they wait for others to be
    /// merged with, up to `CompactionConfig.maxMergeDelayMs`).
    let ssoFirstSeen = NIOLockedValueBox<[String: Int64]>([:])
    /// The commit queue: objects to commit in WAL order, and barriers that resume once every
    /// commit queued before them is done.
    enum CommitItem: Sendable {
        /// An object to commit, with the file-WAL segment it was uploaded from.
        case object(ObjectCommit, segment: UInt64?)
        case barrier(OneShot<Void>)
    }
    private let commits: AsyncStream<CommitItem>.Continuation
    private let commitStream: AsyncStream<CommitItem>
    /// The file WAL, when produce is acked on fdatasync rather than on an object PUT.
    let fileWAL: FileWAL?

    public init(config: StorageConfig, objectStore: any ObjectStore, metadata: any MetadataStore, nodeId: Int32,
                clusterId: String, brokerEpoch: Int64, loop: any EventLoop, logger: Logger,
                fileWAL: FileWAL? = nil, testMutations: TestMutations = []) {
        self.config = config
        self.fileWAL = fileWAL
        self.mutations = testMutations
        self.objectStore = objectStore
        self.metadata = metadata
        self.nodeId = nodeId
        self.clusterId = clusterId
        self.brokerEpoch = brokerEpoch
        self.loop = loop
        self.logger = logger
        self.blockCache = BlockCache(capacity: config.blockCacheBytes, blockSize: config.blockCacheBlockBytes,
                                     maxReadahead: config.readaheadMaxBytes)
        (commitStream, commits) = AsyncStream.makeStream(of: CommitItem.self)
    }

    // MARK: keys

    var walPrefix: String { walPrefix(of: nodeId) }
    var fenceKey: String { fenceKey(of: nodeId, epoch: brokerEpoch) }
    var fencePrefix: String { "\(clusterId)/meta/fence/\(nodeId)/" }
    func walPrefix(of node: Int32) -> String { "\(clusterId)/wal/\(node)/" }
    func fenceKey(of node: Int32, epoch: Int64) -> String { "\(clusterId)/meta/fence/\(node)/\(epoch)" }

    func walKey(seq: UInt64) -> String { walKey(node: nodeId, epoch: brokerEpoch, seq: seq) }

    func walKey(node: Int32, epoch: Int64, seq: UInt64) -> String {
        let s = String(seq)
        return "\(walPrefix(of: node))\(Self.pad(epoch))/\(String(repeating: "0", count: max(0, 20 - s.count)))\(s)"
    }

    static func pad(_ v: Int64) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, 10 - s.count)) + s
    }

    // MARK: recovery and ownership

    /// Commits WAL objects this node's earlier runs wrote but did not commit before they
    /// stopped: they may hold acked records. Runs before any stream opens, in WAL order.
    ///
    /// First it fences every earlier broker epoch of this node (ARCHITECTURE.md "Fencing
    /// before ack"): it PUTs their fence keys, and only then lists the WAL. An earlier
    /// incarnation still running (a zombie) reads its fence key after each WAL PUT, so every
    /// object it acked landed before that fence PUT and is in the listing. A WAL object that
    /// landed later was never acked; its ranges carry a stream epoch that a successor has
    /// since replaced, so the metadata store refuses it as fenced, and it is deleted.
    ///
    /// With the file WAL it then records the WAL's directory in the bucket (`walMarkerKey`), so
    /// that whoever takes this broker's WAL over knows to replay its segments; without it, a
    /// marker left by an earlier run is deleted once that run's segments are replayed.
    public func recover() async throws -> Int {
        let (recovered, marked) = try await recoverWALAndMarker(of: nodeId, epochsBelow: brokerEpoch)
        if let root = fileWAL?.root {
            if marked != root { try await objectStore.put(walMarkerKey(of: nodeId), ByteBuffer(string: root), ifNoneMatch: false) }
        } else if marked != nil {
            try await objectStore.delete([walMarkerKey(of: nodeId)])
        }
        return recovered
    }

    /// Where a broker on the file WAL names its WAL directory: under its WAL prefix, so that
    /// the listing recovery makes anyway finds it (no request more for the S3 WAL).
    func walMarkerKey(of node: Int32) -> String { "\(walPrefix(of: node))file-wal" }

    /// The file-WAL directories that may hold `node`'s acked records: this broker's own (when
    /// `node` is this one), and `marked`, the one its marker names. A marked directory this
    /// broker cannot read (not shared storage) fails the recovery: replaying without it would
    /// lose acks.
    func fileWALRoots(of node: Int32, marked root: String?) throws -> [String] {
        var roots: [String] = []
        if node == nodeId, let root = fileWAL?.root { roots.append(root) }
        guard let root else { return roots }
        guard !roots.contains(root) else { return roots }
        guard FileWAL.readable(root: root, node: node) else {
            throw RecoveryError(message: "broker \(node) acks produce from a file WAL in \(root)/\(node), which this broker cannot read; "
                                + "its partitions cannot move before that directory is shared here (or broker \(node) restarts)")
        }
        return roots + [root]
    }

    /// Fences and recovers the WAL of `node`'s runs with an epoch below `epochsBelow`, as
    /// `recover` does for this node's own earlier runs. A controller runs it for a dead broker
    /// (`epochsBelow` = its epoch + 1) before that broker's streams open elsewhere.
    public func recoverWAL(of node: Int32, epochsBelow: Int64) async throws -> Int {
        try await recoverWALAndMarker(of: node, epochsBelow: epochsBelow).recovered
    }

    /// Returns also the directory named by the node's file-WAL marker, if it has one.
    private func recoverWALAndMarker(of node: Int32, epochsBelow: Int64) async throws -> (recovered: Int, marked: String?) {
        let prefix = walPrefix(of: node)
        let fenced = node == nodeId ? try await fencePredecessors() : [epochsBelow - 1]
        if node != nodeId { try await putFence(node: node, epoch: epochsBelow - 1) }
        let listing = try await objectStore.list(prefix: prefix)
        var marked: String?
        if listing.contains(where: { $0.key == walMarkerKey(of: node) }) {
            marked = String(buffer: try await objectStore.get(walMarkerKey(of: node), range: nil))
        }
        // The file WAL is fenced the same way, and its segments are read only afterwards.
        var segments: [String: FileWAL.Segment] = [:]
        for root in try fileWALRoots(of: node, marked: marked) {
            let written = FileWAL.segments(root: root, node: node, epochsBelow: epochsBelow).map(\.epoch)
            try FileWAL.fence(root: root, node: node, epochs: Array(Set(fenced + written)))
            for seg in FileWAL.segments(root: root, node: node, epochsBelow: epochsBelow) {
                segments[walKey(node: node, epoch: seg.epoch, seq: seg.seq)] = seg
            }
        }
        let committed = try await metadata.committedObjectKeys(prefix: prefix)
        var uploaded: [String: Int] = [:]
        for info in listing {
            guard let e = Self.walEpoch(key: info.key, prefix: prefix), e < epochsBelow else { continue }
            uploaded[info.key] = info.size
        }
        var recovered = 0
        // In WAL order over both sources: a later object commits only after the ones before it.
        for key in Set(uploaded.keys).union(segments.keys).sorted() {
            let segment = segments[key]
            if !committed.contains(key) {
                var object: ByteBuffer
                if uploaded[key] != nil {
                    // Uploaded before the crash: the object, not its segment, is what is committed.
                    object = try await objectStore.get(key, range: nil)
                } else {
                    let batches = try FileWAL.read(segment!)
                    object = ObjectFormat.build(batches).bytes
                    do {
                        if !batches.isEmpty { try await objectStore.put(key, object, ifNoneMatch: true) }
                    } catch let e as ObjectStoreError where e.code == .alreadyExists {
                        object = try await objectStore.get(key, range: nil)  // another recovery raced us
                    }
                }
                if object.readableBytes > ObjectFormat.footerSize, try await recoverObject(key: key, object: object) {
                    recovered += 1
                }
            }
            // Its records are committed (or were never acked): the segment is done with.
            if let segment { FileWAL.delete(segment) }
        }
        return (recovered, marked)
    }

    /// Commits one uncommitted WAL object found at recovery. False when it is skipped:
    /// unreadable, written after its broker was fenced (then deleted), or not continuing its
    /// streams.
    private func recoverObject(key: String, object: ByteBuffer) async throws -> Bool {
        let parsed: ObjectFormat.Parsed
        do {
            parsed = try ObjectFormat.parse(object)
        } catch {
            logger.error("skipping unreadable WAL object", metadata: ["key": "\(key)", "error": "\(error)"])
            return false
        }
        var headers: [(Int64, RecordBatchHeader, ByteBuffer)] = []
        for e in parsed.entries {
            for (h, b) in RecordBatch.split(object.getSlice(at: object.readerIndex + e.position, length: e.size)!) {
                headers.append((e.streamId, h, b))
            }
        }
        var tables: [Int64: ProducerStateTable] = [:]
        var aborted: [AbortedTxnRecord] = []
        for (s, h, b) in headers where h.hasProducerId {
            if tables[s] == nil {
                tables[s] = ProducerStateTable(streamId: s, records: try await metadata.producerStates(streamId: s))
            }
            if let done = tables[s]!.record(h, marker: h.isControl ? ControlMarker(controlBatch: b) : nil), done.aborted {
                aborted.append(AbortedTxnRecord(streamId: s, producerId: done.producerId, firstOffset: done.firstOffset, lastOffset: done.lastOffset))
            }
        }
        let states = Self.touchedStates(headers.map { ($0.0, $0.1) }, tables)
        do {
            try await metadata.commit(ObjectCommit(key: key, size: object.readableBytes,
                                                   ranges: ObjectFormat.ranges(of: parsed.entries, key: key, objectSize: object.readableBytes),
                                                   producerStates: states, abortedTxns: aborted))
        } catch let e as MetadataError where e.code == .fenced {
            // Written after its broker was fenced (its streams opened elsewhere only once
            // everything acked before was committed): never acked.
            try await objectStore.delete([key])
            logger.warning("deleted a WAL object written after its broker was fenced (never acked)",
                           metadata: ["key": "\(key)", "error": "\(e)"])
            return false
        } catch let e as MetadataError where e.code == .offsetMismatch {
            logger.error("recovered WAL object does not continue its streams; skipping it", metadata: ["key": "\(key)", "error": "\(e)"])
            return false
        }
        logger.info("recovered uncommitted WAL object", metadata: ["key": "\(key)", "ranges": "\(parsed.entries.count)"])
        return true
    }

    /// The broker epoch in a WAL key `<prefix><epoch>/<seq>`.
    static func walEpoch(key: String, prefix: String) -> Int64? {
        guard key.hasPrefix(prefix) else { return nil }
        return key.dropFirst(prefix.count).split(separator: "/").first.flatMap { Int64($0) }
    }

    /// PUTs one fence key (already there is fine), retrying failures a few times.
    private func putFence(node: Int32, epoch: Int64) async throws {
        guard epoch > 0 else { return }
        var delay = 50
        for attempt in 1... {
            do {
                try await objectStore.put(fenceKey(of: node, epoch: epoch), ByteBuffer(), ifNoneMatch: true)
                return
            } catch let e as ObjectStoreError where e.code == .alreadyExists {
                return
            } catch let error as ObjectStoreError where attempt < 10 {
                logger.warning("fence key PUT failed; retrying", metadata: ["node": "\(node)", "epoch": "\(epoch)", "error": "\(error)"])
                try await Task.sleep(for: .milliseconds(delay))
                delay = min(delay * 2, 1000)
            }
        }
    }

    /// PUTs the fence keys of this node's earlier broker epochs that no earlier start fenced
    /// (normally just the previous one; at most 1000).
    /// Returns the epochs it fenced.
    @discardableResult
    func fencePredecessors() async throws -> [Int64] {
        let prefix = fencePrefix
        let done = try await objectStore.list(prefix: prefix).compactMap { Int64($0.key.dropFirst(prefix.count)) }
        let first = max((done.filter { $0 < brokerEpoch }.max() ?? 0) + 1, brokerEpoch - 1000, 1)
        guard first < brokerEpoch else { return [] }
        for e in first..<brokerEpoch { try await putFence(node: nodeId, epoch: e) }
        logger.info("fenced earlier broker epochs of this node", metadata: ["from": "\(first)", "to": "\(brokerEpoch - 1)"])
        return Array(first..<brokerEpoch)
    }

    static func touchedStates(_ headers: [(Int64, RecordBatchHeader)], _ tables: [Int64: ProducerStateTable]) -> [ProducerStateRecord] {
        var seen = Set<[Int64]>()
        var out: [ProducerStateRecord] = []
        for (s, h) in headers where h.hasProducerId && seen.insert([s, h.producerId]).inserted {
            if let r = tables[s]?.entries[h.producerId] { out.append(r) }
        }
        return out
    }

    /// Opens a stream at epoch+1 and loads its object index and producer state.
    @discardableResult
    public func open(streamId: Int64) async throws -> StreamOffsets {
        let record = try await metadata.openStream(streamId: streamId, owner: nodeId)
        let ranges = try await metadata.ranges(streamId: streamId)
        let producers = try await metadata.producerStates(streamId: streamId)
        let aborted = try await metadata.abortedTxns(streamId: streamId)
        let table = ProducerStateTable(streamId: streamId, records: producers)
        // A start offset is never above the end; if the store says otherwise, serve what exists.
        let start = min(record.startOffset, record.endOffset)
        let stream = Stream(epoch: record.epoch, nextOffset: record.endOffset, highWatermark: record.endOffset,
                            logStartOffset: start, ranges: ranges, producers: table,
                            durableProducers: table, epochHistory: record.epochHistory,
                            aborted: aborted.filter { $0.lastOffset >= start }.sorted { $0.lastOffset < $1.lastOffset },
                            uploadedEnd: record.endOffset)
        state.withLockedValue { s in
            // Reopened: the old incarnation's cached batches leave the budget's count.
            if let old = s.streams.updateValue(stream, forKey: streamId) {
                s.cacheBytes -= old.cache.reduce(0) { $0 + $1.bytes.readableBytes }
            }
        }
        blockCache.forget(reader: streamId)
        return StreamOffsets(epoch: record.epoch, logStartOffset: start, highWatermark: record.endOffset,
                             lastStableOffset: stream.lastStableOffset)
    }

    /// Forgets a stream (its topic was deleted). Pending batches for it are still uploaded
    /// but the commit drops them.
    public func close(streamId: Int64) {
        state.withLockedValue { s in
            if let st = s.streams.removeValue(forKey: streamId) {
                s.cacheBytes -= st.cache.reduce(0) { $0 + $1.bytes.readableBytes }
            }
        }
        blockCache.forget(reader: streamId)
    }

    /// The LogCache and the produce buffer's fill, for metrics and tests.
    public struct LogCacheStats: Sendable, Equatable {
        /// Bytes of batches in the LogCache (uploaded or not).
        public var bytes: Int
        public var batches: Int
        /// Bytes appended but not yet in a finished upload (buffered or uploading).
        public var unflushedBytes: Int
        /// Appends waiting for buffer space (backpressure).
        public var waitingAppends: Int
    }

    /// Time from each WAL object's flush until it is done in WAL order: its PUT, the fence
    /// check, and the wait for earlier objects. With the S3 WAL its produce requests are acked
    /// then; with the file WAL they were acked at their fsync.
    public var walUploadDurations: DurationHistogram { state.withLockedValue { $0.uploadDurations } }

    /// File WAL: the time of each group commit's write and fdatasync (its produce requests are
    /// acked after it).
    public var walSyncDurations: DurationHistogram { state.withLockedValue { $0.syncDurations } }

    /// The throughput-class limiter in front of the object store, when one is set.
    public var throughputLimiter: ThroughputLimiter? { (objectStore as? ThrottledObjectStore)?.limiter }

    public var logCacheStats: LogCacheStats {
        state.withLockedValue { s in
            LogCacheStats(bytes: s.cacheBytes, batches: s.streams.values.reduce(0) { $0 + $1.cache.count },
                          unflushedBytes: s.unflushedBytes, waitingAppends: s.backpressure.count)
        }
    }

    /// Gives a stream up for a move: appends to it are refused from now on (the client sees
    /// NOT_LEADER_OR_FOLLOWER and asks for metadata), its buffered batches are uploaded, and
    /// once every object holding them is committed the stream is closed here. Returns the
    /// epoch it was open at; nil when it was not open or this broker was fenced meanwhile
    /// (then its batches were never acked).
    public func release(streamId: Int64) async -> Int64? {
        let epoch: Int64? = state.withLockedValue { s in
            guard var st = s.streams[streamId] else { return nil }
            st.releasing = true
            s.streams[streamId] = st
            return st.epoch
        }
        guard let epoch else { return nil }
        while true {
            let seen = notifier.generation
            let pending = state.withLockedValue { s in
                [s.buffer, s.syncing ?? Buffer(), s.synced].contains { $0.batches.contains { $0.streamId == streamId } }
                    || s.uploads.contains { $0.buffer.batches.contains { $0.streamId == streamId } }
            }
            if !pending { break }
            flush()
            await notifier.wait(after: seen, until: .now() + .milliseconds(200), on: loop)
        }
        let barrier = OneShot<Void>()
        commits.yield(.barrier(barrier))
        await barrier.wait()
        let fenced = state.withLockedValue { $0.fenced }
        close(streamId: streamId)
        return fenced ? nil : epoch
    }

    /// Bytes appended to and read from each stream open here (reads: since this process started).
    public func traffic() -> [Int64: (bytesIn: Int64, bytesOut: Int64)] {
        let read = bytesRead.withLockedValue { $0 }
        return state.withLockedValue { s in s.streams.mapValues { $0.bytesIn } }.reduce(into: [:]) { out, e in
            out[e.key] = (e.value, read[e.key] ?? 0)
        }
    }

    /// The epoch of every stream open here.
    public func openEpochs() -> [Int64: Int64] {
        state.withLockedValue { s in s.streams.mapValues(\.epoch) }
    }

    public func offsets(streamId: Int64) -> StreamOffsets? {
        state.withLockedValue { s in
            s.streams[streamId].map {
                StreamOffsets(epoch: $0.epoch, logStartOffset: $0.logStartOffset, highWatermark: $0.highWatermark,
                              lastStableOffset: $0.lastStableOffset)
            }
        }
    }

    /// Which of these reads GET from the object store: the stream is open here and the offset
    /// lies below what the LogCache holds (a catch-up read, not a tail read).
    public func readsFromObjects(_ reads: [(streamId: Int64, offset: Int64)]) -> [Bool] {
        state.withLockedValue { s in
            reads.map { r in
                guard let st = s.streams[r.streamId], r.offset >= st.logStartOffset, r.offset < st.highWatermark else { return false }
                return r.offset < (st.cache.first?.baseOffset ?? st.highWatermark)
            }
        }
    }

    /// Where retention would move a stream's log start, as Kafka's log retention deletes
    /// whole segments from the start: each object range whose newest record is older than
    /// `retentionMs` (-1: keep forever), then the oldest ranges for as long as what stays is
    /// still at least `retentionBytes` (-1: no limit). Only uploaded data counts; nil when
    /// nothing would move (or the stream is not open).
    public func retentionStart(streamId: Int64, retentionMs: Int64, retentionBytes: Int64, now: Int64) -> Int64? {
        state.withLockedValue { s in
            guard let st = s.streams[streamId] else { return nil }
            let live = st.ranges.filter { $0.endOffset > st.logStartOffset }.sorted { $0.startOffset < $1.startOffset }
            var start = st.logStartOffset
            var i = 0
            if retentionMs >= 0 {
                let cutoff = now - retentionMs
                while i < live.count, live[i].maxTimestamp < cutoff {
                    start = live[i].endOffset
                    i += 1
                }
            }
            if retentionBytes >= 0 {
                var size = live[i...].reduce(Int64(0)) { $0 + Int64($1.size) }
                while i < live.count, size - Int64(live[i].size) >= retentionBytes {
                    size -= Int64(live[i].size)
                    start = live[i].endOffset
                    i += 1
                }
            }
            return start > st.logStartOffset ? min(start, st.highWatermark) : nil
        }
    }

    /// Kafka's DeleteRecords on the leader: raises the log start offset to `offset` (-1: the
    /// high watermark) and returns the log start offset afterwards (the low watermark). An
    /// offset at or below the current start changes nothing. The new start is stored before
    /// it is served, so it survives a restart; reads, ListOffsets and produce responses then
    /// use it. Objects wholly below it become garbage, collected elsewhere.
    public func advanceLogStart(streamId: Int64, to offset: Int64) async throws(TrimError) -> Int64 {
        enum Plan { case done(Int64), store(epoch: Int64, target: Int64), fail(TrimError) }
        let plan: Plan = state.withLockedValue { s in
            guard let st = s.streams[streamId] else { return .fail(.unknownStream) }
            let target = offset == -1 ? st.highWatermark : offset
            if target < 0 || target > st.highWatermark { return .fail(.offsetOutOfRange) }
            if target <= st.logStartOffset { return .done(st.logStartOffset) }
            return .store(epoch: st.epoch, target: target)
        }
        let epoch: Int64, target: Int64
        switch plan {
        case .done(let start): return start
        case .fail(let e): throw e
        case .store(let e, let t): (epoch, target) = (e, t)
        }
        let stored: Int64
        do {
            stored = try await metadata.advanceStartOffset(streamId: streamId, epoch: epoch, to: target)
        } catch let e as MetadataError where e.code == .fenced {
            throw .fenced
        } catch let e as MetadataError where e.code == .notFound {
            throw .unknownStream
        } catch {
            throw .storage("\(error)")
        }
        let now: Int64? = state.withLockedValue { s in
            guard var st = s.streams[streamId], st.epoch == epoch else { return nil }
            st.logStartOffset = max(st.logStartOffset, stored)
            // Aborted transactions wholly below the start can no longer overlap a read (the
            // store dropped them with the same update).
            st.aborted.removeAll { $0.lastOffset < st.logStartOffset }
            s.streams[streamId] = st
            return st.logStartOffset
        }
        guard let now else { throw .unknownStream }
        return now
    }

    /// The idempotence state of every producer that appended to an open stream (including
    /// batches still on their way to the object store), by producer id; nil if not open.
    public func producerStates(streamId: Int64) -> [ProducerStateRecord]? {
        state.withLockedValue { s in
            s.streams[streamId].map { $0.producers.entries.values.sorted { $0.producerId < $1.producerId } }
        }
    }

    /// Bytes of record batches of an open stream that are written to the object store (the
    /// sum of its ranges; batches still in the WAL buffer are not counted); nil if not open.
    public func storedBytes(streamId: Int64) -> Int64? {
        state.withLockedValue { s in
            s.streams[streamId].map { $0.ranges.reduce(Int64(0)) { $0 + Int64($1.size) } }
        }
    }

    // MARK: append

    /// Appends one validated batch. Offsets are assigned before this returns (so calls made
    /// in order from one connection get offsets in that order); the ticket's `result()`
    /// returns once the batch is durable in the object store, or at the timeout.
    /// Suspends only for backpressure, when too many bytes are unflushed.
    /// With `timeout` nil nobody waits for the answer (acks=0) and no timer is kept.
    public func append(streamId: Int64, batch: ByteBuffer, header: RecordBatchHeader, timeout: TimeAmount?) async -> AppendTicket {
        await waitForBufferSpace()
        let waiter = OneShot<Result<AppendResult, AppendError>>()
        if let immediate = enqueue(streamId: streamId, batch: batch, header: header, waiter: waiter) {
            waiter.resume(immediate)
            return AppendTicket(waiter: waiter, timer: nil)
        }
        let timer = timeout.map { t in loop.scheduleTask(in: t) { waiter.resume(.failure(.timedOut)) } }
        return AppendTicket(waiter: waiter, timer: timer)
    }

    private func waitForBufferSpace() async {
        while true {
            let wait: Bool = state.withLockedValue { $0.unflushedBytes >= config.maxUnflushedBytes && !$0.closing }
            if !wait { return }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLockedValue { s -> Bool in
                    if s.unflushedBytes < config.maxUnflushedBytes || s.closing { return true }
                    s.backpressure.append(c)
                    return false
                }
                if ready { c.resume() }
            }
        }
    }

    /// The synchronous part of an append: checks, offsets, buffer. Returns a result when the
    /// append is answered at once (error or duplicate); nil when it waits for a flush.
    private func enqueue(streamId: Int64, batch: ByteBuffer, header: RecordBatchHeader, waiter: OneShot<Result<AppendResult, AppendError>>) -> Result<AppendResult, AppendError>? {
        enum Next { case answer(Result<AppendResult, AppendError>), flushNow, armTimers(interval: UInt64?, idle: Bool), syncNow, nothing }
        let next: Next = state.withLockedValue { s in
            if s.fenced { return .answer(.failure(.fenced)) }
            if s.walFailed { return .answer(.failure(.rejected(.kafkaStorageError))) }
            if s.closing { return .answer(.failure(.shuttingDown)) }
            // Taken out and put back, never copied: a copy shares the LogCache Deque and the
            // producer table with the dictionary's value, and changing them would copy them whole.
            guard var st = s.streams.removeValue(forKey: streamId) else { return .answer(.failure(.unknownStream)) }
            defer {
                s.streams[streamId] = st
                // Evicted as the cache grows, not only as uploads finish (once the stream is
                // back: eviction skips streams it cannot find): a slab then goes back to its
                // pool as the next one is taken, not several at once when an upload lands.
                evictCache(&s)
            }
            if st.releasing { return .answer(.failure(.fenced)) }
            switch st.producers.check(header) {
            case .reject(let code): return .answer(.failure(.rejected(code)))
            case .duplicate(let base):
                if base < st.highWatermark {
                    return .answer(.success(AppendResult(baseOffset: base, logStartOffset: st.logStartOffset)))
                }
                // The original is still on its way to the object store: answer when it lands.
                let pending = PendingAppend(waiter: waiter, result: AppendResult(baseOffset: base, logStartOffset: st.logStartOffset))
                let holds = { (b: ObjectFormat.Batch) in b.streamId == streamId && b.header.baseOffset == base }
                if let i = s.uploads.firstIndex(where: { $0.buffer.batches.contains(where: holds) }) {
                    s.uploads[i].buffer.waiters.append(pending)
                } else if s.syncing?.batches.contains(where: holds) == true {
                    s.syncing!.waiters.append(pending)
                } else {
                    s.buffer.waiters.append(pending)
                }
                return .nothing
            case .accept:
                break
            }
            // Copied (a slice would pin the whole request buffer), packed into a slab.
            var h = header
            h.baseOffset = st.nextOffset
            h.partitionLeaderEpoch = Int32(truncatingIfNeeded: st.epoch)
            let own = s.slabs.copy(batch, baseOffset: h.baseOffset, leaderEpoch: h.partitionLeaderEpoch)
            st.nextOffset += Int64(h.recordCount)
            st.bytesIn += Int64(own.readableBytes)
            st.producers.record(h, marker: h.isControl ? ControlMarker(controlBatch: own) : nil)
            st.cache.append(CachedBatch(baseOffset: h.baseOffset, lastOffset: h.lastOffset, maxTimestamp: h.maxTimestamp, bytes: own))
            s.cacheOrder.append((streamId, h.lastOffset, own.readableBytes))
            s.cacheBytes += own.readableBytes
            s.buffer.batches.append(ObjectFormat.Batch(streamId: streamId, epoch: st.epoch, header: h, bytes: own))
            s.buffer.waiters.append(PendingAppend(waiter: waiter, result: AppendResult(baseOffset: h.baseOffset, logStartOffset: st.logStartOffset)))
            s.buffer.bytes += own.readableBytes
            s.unflushedBytes += own.readableBytes
            // File WAL: sync at once unless a sync is under way (this batch then joins the next).
            if fileWAL != nil { return s.syncLoopRunning ? .nothing : .syncNow }
            if s.buffer.bytes >= config.uploadBytes { return .flushNow }
            var interval: UInt64?
            var idle = false
            if !s.timerArmed {
                s.timerArmed = true
                interval = s.nextSeq
            }
            if config.uploadIdleMs > 0 {
                s.lastAppend = .now()
                idle = idleTimerWanted(&s)
            }
            return interval == nil && !idle ? .nothing : .armTimers(interval: interval, idle: idle)
        }
        switch next {
        case .answer(let r): return r
        case .flushNow: flush()
        case .syncNow: sync()
        case .armTimers(let interval, let idle):
            if let interval { armFlushTimer(interval) }
            if idle { armIdleTimer() }
        case .nothing: break
        }
        return nil
    }

    // MARK: upload

    /// Starts uploading the WAL buffer, unless too many uploads are in flight (the last
    /// upload to finish then starts it).
    public func flush() {
        if fileWAL != nil {
            // Sync what is buffered, and upload everything synced (now, or after that sync).
            state.withLockedValue { $0.cutWanted = true }
            sync()
            cut()
            return
        }
        let (upload, change): (Upload?, BackedUpChange?) = state.withLockedValue { s in
            s.timerArmed = false
            guard !s.buffer.batches.isEmpty || !s.buffer.waiters.isEmpty else { return (nil, nil) }
            let u = takeUpload(\.buffer, &s)
            return (u, backedUpChange(&s))
        }
        report(change)
        guard let upload else { return }
        Task { await self.runUpload(upload) }
    }

    typealias BackedUpChange = (backedUp: Bool, version: UInt64)

    /// Whether produce is backed up changed since the limiter was last told; to be passed to
    /// `report` outside the lock. Backed up: half the upload slots or more are taken, or a
    /// flush waits for one. A WAL object then waits for the one before it to land, so the
    /// object store's latency is what paces produce: a client's requests in flight (librdkafka's
    /// 32 MiB queue in bench/peers) are acked only as fast as the PUTs land, and a compaction
    /// beside them slows the PUTs (figures in the README, "Throughput classes").
    private func backedUpChange(_ s: inout State) -> BackedUpChange? {
        let now = s.flushWanted || s.uploads.count >= max(1, config.maxConcurrentUploads / 2)
        guard now != s.backedUp else { return nil }
        s.backedUp = now
        s.backedUpVersion += 1
        return (now, s.backedUpVersion)
    }

    /// Tells the limiter: while produce is backed up, the object store is what holds it back,
    /// and compaction keeps to its floor.
    private func report(_ change: BackedUpChange?) {
        if let change, let limiter = throughputLimiter { limiter.setProduceBackedUp(change.backedUp, version: change.version) }
    }

    /// `wal.upload.interval.ms` from now, flushes WAL object `seq` unless it was flushed
    /// already (by size): a timer armed for one object must not cut the next one short.
    private func armFlushTimer(_ seq: UInt64) {
        loop.scheduleTask(in: .milliseconds(Int64(config.uploadIntervalMs))) {
            if self.state.withLockedValue({ $0.nextSeq == seq }) { self.flush() }
        }
    }

    /// The least a buffer holds before the idle flush takes it.
    private var idleFlushMinBytes: Int { config.uploadBytes / 8 }

    /// Whether to arm the idle-flush timer now (then marked armed): the object WAL, no upload
    /// under way, at least `uploadBytes / 8` buffered, and no timer armed.
    private func idleTimerWanted(_ s: inout State) -> Bool {
        guard config.uploadIdleMs > 0, fileWAL == nil, !s.idleTimerArmed, s.uploads.isEmpty,
              s.buffer.bytes >= idleFlushMinBytes else { return false }
        s.idleTimerArmed = true
        return true
    }

    /// After `delay` (the idle time by default), flushes the buffer if it still holds `uploadBytes / 8`, no upload is
    /// under way and nothing was appended for `uploadIdleMs`; re-armed for the rest of that
    /// time while appends go on. It looks at the buffer it finds, not the one it was armed
    /// for: one armed before a flush may be the only timer when the next buffer needs one.
    private func armIdleTimer(in delay: TimeAmount? = nil) {
        let idle = TimeAmount.milliseconds(Int64(config.uploadIdleMs))
        loop.scheduleTask(in: delay ?? idle) {
            enum Then { case flush, wait(TimeAmount), stop }
            let then: Then = self.state.withLockedValue { s in
                guard s.uploads.isEmpty, !s.closing, s.buffer.bytes >= self.idleFlushMinBytes else {
                    s.idleTimerArmed = false
                    return .stop
                }
                let quiet = NIODeadline.now() - s.lastAppend
                if quiet >= idle {
                    s.idleTimerArmed = false
                    return .flush
                }
                return .wait(idle - quiet)
            }
            switch then {
            case .flush: self.flush()
            case .wait(let rest): self.armIdleTimer(in: rest)
            case .stop: break
            }
        }
    }

    /// Makes the batches at `source` the next WAL object and queues its upload, unless too
    /// many uploads are in flight (then the next upload to finish flushes again).
    private func takeUpload(_ source: WritableKeyPath<State, Buffer>, _ s: inout State) -> Upload? {
        guard s.uploads.count < config.maxConcurrentUploads else {
            s.flushWanted = true
            return nil
        }
        s.flushWanted = false
        s.timerArmed = false
        let u = Upload(seq: s.nextSeq, buffer: s[keyPath: source])
        s.nextSeq += 1
        s[keyPath: source] = Buffer()
        s.uploads.append(u)
        return u
    }

    // MARK: file WAL

    /// File WAL: starts the sync loop on the WAL thread unless it runs.
    func sync() {
        let start: Bool = state.withLockedValue { s in
            guard !s.syncLoopRunning, !s.buffer.batches.isEmpty || !s.buffer.waiters.isEmpty else { return false }
            s.syncLoopRunning = true
            return true
        }
        if start, let fileWAL { fileWAL.submit { self.syncLoop(fileWAL) } }
    }

    /// Group commit, on the WAL thread: appends everything buffered to the current segment
    /// and fdatasyncs it; what arrives meanwhile makes up the next group. The thread never
    /// waits for another to pick the next group up, so under load it is always writing; a
    /// group that would begin within `wal.sync.min.interval.us` of the last one waits for it.
    private func syncLoop(_ fileWAL: FileWAL) {
        while true {
            fileWAL.waitForNextGroup()
            let next: (Buffer, UInt64)? = state.withLockedValue { s in
                guard !s.buffer.batches.isEmpty || !s.buffer.waiters.isEmpty else {
                    s.syncLoopRunning = false
                    return nil
                }
                let g = s.buffer
                s.buffer = Buffer()
                s.syncing = g
                return (g, s.nextSeq)
            }
            guard let (group, seq) = next else { return }
            if mutations.contains(.ackBeforeWrite) {
                for w in group.waiters { w.waiter.resume(.success(w.result)) }
            }
            let started = ContinuousClock.now
            let outcome = Result { group.batches.isEmpty ? true : try fileWAL.append(group.batches, segment: seq) }
            synced(group, outcome, seconds: (ContinuousClock.now - started).seconds)
        }
    }

    /// A group's sync ended: `true` durable, `false` durable but fenced.
    private func synced(_ group: Buffer, _ outcome: Result<Bool, any Error>, seconds: Double) {
        var toResume: [(OneShot<Result<AppendResult, AppendError>>, Result<AppendResult, AppendError>)] = []
        var drained: [OneShot<Bool>] = []
        var backpressure: [CheckedContinuation<Void, Never>] = []
        let cutNow: Bool = state.withLockedValue { s in
            s.syncing = nil
            if !group.batches.isEmpty { s.syncDurations.record(seconds) }
            let answer: Result<Void, AppendError>
            switch outcome {
            case .success(let notFenced):
                if !notFenced && !mutations.contains(.skipFenceCheck) { s.fenced = true }
                answer = s.fenced ? .failure(.fenced) : .success(())
            case .failure(let error):
                if !s.walFailed {
                    logger.critical("file WAL write failed; this broker acks no more produce requests until it restarts",
                                    metadata: ["error": "\(error)"])
                }
                s.walFailed = true
                answer = .failure(.rejected(.kafkaStorageError))
            }
            if case .success = answer {
                for b in group.batches {
                    guard var st = s.streams[b.streamId], st.epoch == b.epoch else { continue }
                    st.highWatermark = max(st.highWatermark, b.header.lastOffset + 1)
                    s.streams[b.streamId] = st
                }
                s.synced.batches += group.batches
                s.synced.bytes += group.bytes
            } else {
                // Never acked and never uploaded.
                s.unflushedBytes -= group.bytes
            }
            for w in group.waiters {
                toResume.append((w.waiter, answer.map { w.result }))
            }
            (backpressure, drained) = s.takeWaitersFreed(maxUnflushedBytes: config.maxUnflushedBytes)
            let cut = !s.synced.batches.isEmpty && (s.cutWanted || s.closing || s.synced.bytes >= config.uploadBytes)
            if !cut && !s.synced.batches.isEmpty && !s.timerArmed {
                s.timerArmed = true
                armFlushTimer(s.nextSeq)
            }
            return cut
        }
        for (w, r) in toResume { w.resume(r) }
        for c in backpressure { c.resume() }
        notifier.notifyAll()
        for c in drained { c.resume(true) }
        if cutNow { cut() }
    }

    /// File WAL: makes the synced batches the next WAL object and starts uploading it, once
    /// no group is being synced into its segment and fewer than the maximum uploads run.
    private func cut() {
        let (upload, change): (Upload?, BackedUpChange?) = state.withLockedValue { s in
            guard !s.synced.batches.isEmpty else {
                s.cutWanted = false
                return (nil, nil)
            }
            guard s.syncing == nil else {
                s.cutWanted = true
                return (nil, nil)
            }
            let u = takeUpload(\.synced, &s)
            if u != nil { s.cutWanted = false }
            return (u, backedUpChange(&s))
        }
        report(change)
        guard let upload else { return }
        Task { await self.runUpload(upload) }
    }

    private func runUpload(_ upload: Upload) async {
        let key = walKey(seq: upload.seq)
        // Written from the appended batches' own memory (the LogCache holds them until uploaded).
        let (object, entries) = ObjectFormat.body(upload.buffer.batches)
        var fenced = false
        if mutations.contains(.ackBeforeWrite) {
            for w in upload.buffer.waiters { w.waiter.resume(.success(w.result)) }
        }
        if !upload.buffer.batches.isEmpty {
            await putWithRetry(key: key, object: object)
            // Fencing before ack: whoever takes over this broker's WAL writes the fence key
            // first, so a read after our PUT tells whether our write can still count.
            fenced = mutations.contains(.skipFenceCheck) ? false : await fenceKeyExists()
        }
        finishUpload(seq: upload.seq, key: key, entries: entries, size: object.readableBytes, fenced: fenced)
    }

    private func putWithRetry(key: String, object: ObjectBody) async {
        var delay = 50
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await objectStore.put(key, object, ifNoneMatch: true)
                return
            } catch let e as ObjectStoreError where e.code == .alreadyExists {
                // An earlier attempt may have succeeded with its response lost: check, not repeat.
                if let info = try? await objectStore.head(key), info.size == object.readableBytes { return }
                logger.critical("WAL key already holds another object", metadata: ["key": "\(key)"])
            } catch {
                if attempt == 1 || attempt % 20 == 0 {
                    logger.warning("WAL upload failed; retrying", metadata: ["key": "\(key)", "attempt": "\(attempt)", "error": "\(error)"])
                }
            }
            try? await Task.sleep(for: .milliseconds(delay + Int.random(in: 0...delay / 2)))
            delay = min(delay * 2, 2000)
        }
    }

    private func fenceKeyExists() async -> Bool {
        var delay = 50
        while true {
            do {
                return try await objectStore.head(fenceKey) != nil
            } catch {
                try? await Task.sleep(for: .milliseconds(delay))
                delay = min(delay * 2, 2000)
            }
        }
    }

    private func finishUpload(seq: UInt64, key: String, entries: [ObjectFormat.Entry], size: Int, fenced: Bool) {
        var toResume: [(OneShot<Result<AppendResult, AppendError>>, Result<AppendResult, AppendError>)] = []
        var backpressure: [CheckedContinuation<Void, Never>] = []
        var drained: [OneShot<Bool>] = []
        var idle = false
        var change: BackedUpChange?
        let flushAgain: Bool = state.withLockedValue { s in
            guard let i = s.uploads.firstIndex(where: { $0.seq == seq }) else { return false }
            s.uploads[i].done = true
            s.uploads[i].key = key
            s.uploads[i].entries = entries
            s.uploads[i].size = size
            if fenced { s.fenced = true }
            // Complete in WAL order: offsets become visible in the order they were assigned.
            while let u = s.uploads.first, u.done {
                s.uploads.removeFirst()
                s.uploadDurations.record((ContinuousClock.now - u.started).seconds)
                let ok = !s.fenced
                var headers: [(Int64, RecordBatchHeader)] = []
                var aborted: [AbortedTxnRecord] = []
                for b in u.buffer.batches {
                    s.unflushedBytes -= b.bytes.readableBytes
                    headers.append((b.streamId, b.header))
                    guard ok, s.streams[b.streamId]?.epoch == b.epoch, var st = s.streams.removeValue(forKey: b.streamId) else { continue }
                    st.highWatermark = max(st.highWatermark, b.header.lastOffset + 1)
                    st.uploadedEnd = max(st.uploadedEnd, b.header.lastOffset + 1)
                    let marker = b.header.isControl ? ControlMarker(controlBatch: b.bytes) : nil
                    if let done = st.durableProducers.record(b.header, marker: marker), done.aborted {
                        let a = AbortedTxnRecord(streamId: b.streamId, producerId: done.producerId, firstOffset: done.firstOffset, lastOffset: done.lastOffset)
                        st.aborted.append(a)
                        aborted.append(a)
                    }
                    s.streams[b.streamId] = st
                }
                for w in u.buffer.waiters {
                    toResume.append((w.waiter, ok ? .success(w.result) : .failure(.fenced)))
                }
                guard ok, !u.buffer.batches.isEmpty else { continue }
                var tables: [Int64: ProducerStateTable] = [:]
                for (sid, _) in headers where tables[sid] == nil { tables[sid] = s.streams[sid]?.durableProducers }
                let ranges = ObjectFormat.ranges(of: u.entries, key: u.key, objectSize: u.size)
                for r in ranges { s.streams[r.streamId]?.ranges.append(r) }
                // Queued under the lock: two uploads finishing at once on two threads would
                // otherwise queue their commits in either order, and the metadata store refuses
                // a range past the stream's end (CommitOrderTests).
                commits.yield(.object(ObjectCommit(key: u.key, size: u.size, ranges: ranges,
                                                   producerStates: Self.touchedStates(headers, tables), abortedTxns: aborted),
                                      segment: fileWAL == nil ? nil : u.seq))
            }
            evictCache(&s)
            (backpressure, drained) = s.takeWaitersFreed(maxUnflushedBytes: config.maxUnflushedBytes)
            // What was appended while uploads were under way may have stopped growing.
            if !s.flushWanted { idle = idleTimerWanted(&s) }
            change = backedUpChange(&s)
            return s.flushWanted || (s.closing && (!s.buffer.batches.isEmpty || !s.buffer.waiters.isEmpty || !s.synced.batches.isEmpty))
        }
        report(change)
        for (w, r) in toResume { w.resume(r) }
        for c in backpressure { c.resume() }
        notifier.notifyAll()
        for c in drained { c.resume(true) }
        if flushAgain { flush() }
        if idle { armIdleTimer() }
    }

    /// Drops the oldest cached batches that are already uploaded until under budget.
    private func evictCache(_ s: inout State) {
        while s.cacheBytes > config.logCacheBytes, let first = s.cacheOrder.first {
            guard let uploadedEnd = s.streams[first.streamId]?.uploadedEnd else {
                s.cacheOrder.removeFirst()
                continue
            }
            if first.lastOffset >= uploadedEnd { break }  // not uploaded yet: keep
            s.cacheOrder.removeFirst()
            // Changed in place: a copy of the stream would make its Deque copy itself whole.
            if let c = s.streams[first.streamId]!.cache.first, c.lastOffset == first.lastOffset {
                s.streams[first.streamId]!.cache.removeFirst()
                s.cacheBytes -= c.bytes.readableBytes
            }
        }
    }

    /// Commits uploaded objects to the metadata store in WAL order, retrying failures.
    public func runCommitter() async {
        for await item in commitStream {
            guard case .object(let commit, let segment) = item else {
                if case .barrier(let b) = item { b.resume(()) }
                continue
            }
            // Committed or refused, the segment is done with (a refused one was never acked, or
            // was recovered by whoever fenced this broker before the refusal).
            defer { if let segment { fileWAL?.remove(segment: segment) } }
            var delay = 100
            while true {
                do {
                    try await metadata.commit(commit)
                    break
                } catch let e as MetadataError where e.code == .fenced || e.code == .offsetMismatch {
                    logger.error("object commit refused; dropping it", metadata: ["key": "\(commit.key)", "error": "\(e)"])
                    break
                } catch {
                    logger.warning("object commit failed; retrying", metadata: ["key": "\(commit.key)", "error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(delay))
                    delay = min(delay * 2, 5000)
                }
            }
        }
    }

    /// Flushes everything buffered and waits for the uploads, at most `timeout`; then closes
    /// the commit queue, and `runCommitter` returns once the last commit is written. Returns
    /// false when the uploads did not finish in time (their produce requests were never acked).
    /// Safe to call more than once.
    @discardableResult
    public func shutdown(timeout: TimeAmount = .seconds(30)) async -> Bool {
        if let known = state.withLockedValue({ $0.shutdownOutcome }) { return known }
        let done = OneShot<Bool>()
        let (drained, waiting) = state.withLockedValue { s in
            s.closing = true
            defer { s.backpressure.removeAll() }
            let empty = s.isDrained
            if !empty { s.drained.append(done) }
            return (empty, s.backpressure)
        }
        // Appends held back by backpressure now fail fast instead of waiting for a flush.
        for c in waiting { c.resume() }
        if drained {
            done.resume(true)
        } else {
            flush()
            loop.scheduleTask(in: timeout) { done.resume(false) }
        }
        let flushed = await done.wait()
        if !flushed {
            logger.error("uploads did not finish before the shutdown timeout; unacked produce requests are dropped")
            // Answer the produce requests still waiting so their connections can close.
            let stranded = state.withLockedValue { s in
                (s.uploads.flatMap(\.buffer.waiters) + s.buffer.waiters + (s.syncing?.waiters ?? [])).map(\.waiter)
            }
            for w in stranded { w.resume(.failure(.shuttingDown)) }
        }
        if flushed { await fileWAL?.settle() }
        state.withLockedValue { $0.shutdownOutcome = flushed }
        commits.finish()
        return flushed
    }

    // MARK: read

    /// Reads batches from `offset`, up to about `maxBytes` (at least one batch when any).
    /// With `readCommitted` (isolation level 1) reads stop at the last stable offset and the
    /// result names the aborted transactions that overlap what was read.
    public func read(streamId: Int64, offset: Int64, maxBytes: Int, currentLeaderEpoch: Int32 = -1,
                     readCommitted: Bool = false) async throws(ReadError) -> ReadResult {
        let r = try await readBatches(streamId: streamId, offset: offset, maxBytes: maxBytes, currentLeaderEpoch: currentLeaderEpoch,
                                      readCommitted: readCommitted)
        if r.bytes > 0 {
            let n = Int64(r.bytes)
            // A table of plain integers: updating it in place allocates nothing (a field of
            // the stream's struct, reached through the state's dictionary, did).
            bytesRead.withLockedValue { $0[streamId, default: 0] += n }
        }
        guard readCommitted else { return r }
        var out = r
        let upper = r.nextOffset ?? r.lastStableOffset
        out.abortedTxns = state.withLockedValue { s in
            (s.streams[streamId]?.aborted ?? []).filter { $0.lastOffset >= offset && $0.firstOffset < upper }
        }
        return out
    }

    private func readBatches(streamId: Int64, offset: Int64, maxBytes: Int, currentLeaderEpoch: Int32,
                             readCommitted: Bool) async throws(ReadError) -> ReadResult {
        enum Plan { case done(ReadResult), object(StreamRange, Int64, Int64, Int64, readaheadEnd: Int, prefetch: [Prefetch]) }
        let planned = state.withLockedValue { s in Result { () throws(ReadError) -> Plan in
            guard let st = s.streams[streamId] else { throw .unknownStream }
            if currentLeaderEpoch >= 0 {
                if Int64(currentLeaderEpoch) < st.epoch { throw .fencedLeaderEpoch }
                if Int64(currentLeaderEpoch) > st.epoch { throw .unknownLeaderEpoch }
            }
            if offset < st.logStartOffset || offset > st.highWatermark { throw .offsetOutOfRange }
            let lso = st.lastStableOffset
            let limit = readCommitted ? lso : st.highWatermark
            if offset >= limit {
                return .done(ReadResult(batches: [], highWatermark: st.highWatermark, logStartOffset: st.logStartOffset, lastStableOffset: lso))
            }
            if let first = st.cache.first, first.baseOffset <= offset {
                var out: [ByteBuffer] = []
                var bytes = 0
                // Binary search the first batch holding `offset`.
                var lo = 0, hi = st.cache.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if st.cache[mid].lastOffset < offset { lo = mid + 1 } else { hi = mid }
                }
                var i = lo
                while i < st.cache.count {
                    let c = st.cache[i]
                    if c.baseOffset >= limit { break }
                    if !out.isEmpty && bytes + c.bytes.readableBytes > maxBytes { break }
                    out.append(c.bytes)
                    bytes += c.bytes.readableBytes
                    i += 1
                }
                return .done(ReadResult(batches: out, highWatermark: st.highWatermark, logStartOffset: st.logStartOffset, lastStableOffset: lso))
            }
            guard let r = Self.range(containing: offset, in: st.ranges) else { throw .offsetOutOfRange }
            return .object(r, st.highWatermark, st.logStartOffset, lso, readaheadEnd: Self.readaheadEnd(from: r, in: st.ranges),
                           prefetch: Self.prefetchTargets(after: r, in: st.ranges, before: st.cache.first?.baseOffset ?? st.highWatermark,
                                                          objects: config.prefetchObjects, wholeBytes: wholeObjectBytes,
                                                          window: blockCache.partBytes, maxBytes: config.readaheadMaxBytes))
        } }
        let plan = try planned.get()
        switch plan {
        case .done(let r): return r
        case .object(let range, let hw, let start, let lso, let readaheadEnd, let prefetch):
            let limit = readCommitted ? lso : hw
            IOClass.$current.withValue(.catchUpRead) {
                for p in prefetch {
                    blockCache.prefetch(object: p.object, range: p.range, fetch: blockFetch(p.object))
                }
            }
            let block: [ByteBuffer]
            do {
                block = try await readBlockOrReload(range, streamId: streamId, offset: offset, readaheadEnd: readaheadEnd)
            } catch {
                throw .storage("\(error)")
            }
            var taken: Range<Int>?  // the block's bytes of the batches taken
            var next: Int64?
            for (h, at) in RecordBatch.split(parts: block) {
                guard h.lastOffset >= offset else {
                    if taken != nil { break }  // out of order: what was taken stays one span
                    continue
                }
                if h.baseOffset >= limit || (taken.map { $0.count + at.count > maxBytes } ?? false) { break }
                taken = (taken?.lowerBound ?? at.lowerBound)..<at.upperBound
                next = h.lastOffset + 1
            }
            return ReadResult(parts: taken.map { block.slices($0) } ?? [], partsAreBatches: false, nextOffset: next,
                              highWatermark: hw, logStartOffset: start, lastStableOffset: lso)
        }
    }

    static func range(containing offset: Int64, in ranges: [StreamRange]) -> StreamRange? {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].endOffset <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo < ranges.count && ranges[lo].startOffset <= offset ? ranges[lo] : nil
    }

    /// Where a reader of range `r` may read ahead to: the end of the stream's data that
    /// follows it contiguously in the same object (a stream object, or its part of an SSO).
    static func readaheadEnd(from r: StreamRange, in ranges: [StreamRange]) -> Int {
        var end = r.position + r.size
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].startOffset <= r.startOffset { lo = mid + 1 } else { hi = mid }
        }
        var i = lo  // the first range after r
        while i < ranges.count, ranges[i].objectKey == r.objectKey, ranges[i].position == end {
            end += ranges[i].size
            i += 1
        }
        return end
    }

    /// An object to GET ahead of a catch-up reader: its bytes `range`.
    struct Prefetch: Sendable {
        var object: String
        var range: Range<Int>
    }

    /// How much of a stream set object is fetched whole: a WAL object of `wal.upload.bytes`
    /// (8 MiB) and its index, in one GET of the block cache's part size and an eighth.
    var wholeObjectBytes: Int { blockCache.partBytes + blockCache.partBytes / 8 }

    /// Whether an object may hold many streams (a WAL object or a compaction SSO), rather
    /// than one (a stream object).
    static func isStreamSetObject(_ key: String) -> Bool { key.contains("/wal/") || key.contains("/data/sso/") }

    /// The next `objects` objects a reader of `r` will read after the one holding `r`, up to
    /// offset `before` (where the LogCache serves it), and what of each to GET ahead: of a
    /// stream set object, what `sharedRange` says its other partitions' readers want too;
    /// else the stream's contiguous data there, at most `maxBytes`.
    static func prefetchTargets(after r: StreamRange, in ranges: [StreamRange], before: Int64, objects: Int, wholeBytes: Int,
                                window: Int, maxBytes: Int) -> [Prefetch] {
        guard objects > 0 else { return [] }
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].startOffset <= r.startOffset { lo = mid + 1 } else { hi = mid }
        }
        var out: [Prefetch] = []
        var i = lo
        while i < ranges.count && out.count < objects && ranges[i].startOffset < before {
            let first = ranges[i]
            if first.objectKey == r.objectKey || out.contains(where: { $0.object == first.objectKey }) {
                i += 1
                continue
            }
            let end = readaheadEnd(from: first, in: ranges)
            if let shared = sharedRange(of: first, dataEnd: end, wholeBytes: wholeBytes, window: window, maxBytes: maxBytes) {
                out.append(Prefetch(object: first.objectKey, range: shared))
            } else {
                out.append(Prefetch(object: first.objectKey, range: first.position..<min(end, first.position + maxBytes)))
            }
            i += 1
        }
        return out
    }

    /// What of a stream set object holding `r` to GET on a miss, for all its streams' readers:
    /// all of it when its size is known and at most `maxBytes`; when larger, the aligned
    /// windows of `window` bytes that hold the stream's data from `r` to `dataEnd`, at most
    /// `maxBytes`; when the size is not known, its first `wholeBytes` if the stream's data
    /// lies within them. Nil for a stream object: then only the stream's own data.
    /// (Sixteen readers of a 52 MB object each made their own GET of their 1.2 MB there;
    /// SeaweedFS reads a whole 4 MiB chunk for every ranged GET that touches it.)
    public static func sharedRange(of r: StreamRange, dataEnd: Int, wholeBytes: Int, window: Int, maxBytes: Int) -> Range<Int>? {
        guard isStreamSetObject(r.objectKey) else { return nil }
        if r.objectSize > 0 {
            if r.objectSize <= maxBytes { return 0..<r.objectSize }
            let lower = r.position / window * window
            let upper = min(r.objectSize, (max(dataEnd, r.position + r.size) + window - 1) / window * window, lower + maxBytes)
            return lower..<upper
        }
        return dataEnd <= wholeBytes ? 0..<wholeBytes : nil
    }

    /// A range's bytes in one buffer.
    func readBlock(_ r: StreamRange) async throws -> ByteBuffer {
        try await readBlockParts(r).joined()
    }

    /// A range's bytes through the BlockCache, as slices of its blocks; `reader` (the stream,
    /// for fetches) drives readahead up to `readaheadEnd`, and a miss in a stream set object
    /// GETs it whole or the part of it around the read (`sharedRange`).
    func readBlockParts(_ r: StreamRange, reader: Int64? = nil, readaheadEnd: Int = 0) async throws -> [ByteBuffer] {
        let shared = reader == nil ? nil
            : Self.sharedRange(of: r, dataEnd: max(readaheadEnd, r.position + r.size), wholeBytes: wholeObjectBytes,
                               window: blockCache.partBytes, maxBytes: config.readaheadMaxBytes)
        let request = BlockCache.Request(object: r.objectKey, range: r.position..<(r.position + r.size), reader: reader,
                                         offsets: r.startOffset..<r.endOffset, readaheadEnd: readaheadEnd,
                                         shared: shared ?? 0..<0)
        return try await IOClass.$current.withValue(.catchUpRead) {
            try await blockCache.readParts(request, fetch: blockFetch(r.objectKey))
        }
    }

    /// The block cache's GETs of `key`: ranges read straight into buffers of its block size.
    private func blockFetch(_ key: String) -> @Sendable (Range<Int>) async throws -> [ByteBuffer] {
        { [objectStore, blockCache] range in try await objectStore.get(key, range: range, pieceBytes: blockCache.blockSize) }
    }

    // MARK: offsets by time and epoch

    /// The first offset whose record timestamp is at or after `timestamp`, with that
    /// record's timestamp; nil when no record is that late.
    public func offset(forTimestamp timestamp: Int64, streamId: Int64) async throws -> (offset: Int64, timestamp: Int64)? {
        let (ranges, cached, hw, start): ([StreamRange], [CachedBatch], Int64, Int64) = try state.withLockedValue { s in
            guard let st = s.streams[streamId] else { throw ReadError.unknownStream }
            let cacheStart = st.cache.first?.baseOffset ?? st.highWatermark
            return (st.ranges.filter { $0.endOffset <= cacheStart && $0.endOffset > st.logStartOffset && $0.maxTimestamp >= timestamp },
                    st.cache.filter { $0.baseOffset < st.highWatermark && $0.lastOffset >= st.logStartOffset && $0.maxTimestamp >= timestamp },
                    st.highWatermark, st.logStartOffset)
        }
        // Records below the log start offset (DeleteRecords) are gone for this lookup too.
        for r in ranges {
            let block = try await readBlock(r)
            for (h, b) in RecordBatch.split(block) where h.maxTimestamp >= timestamp && h.baseOffset < hw && h.lastOffset >= start {
                if let hit = Self.firstRecord(in: b, header: h, atOrAfter: timestamp, from: start) { return hit }
            }
        }
        for c in cached {
            let h = RecordBatchHeader(peeking: c.bytes)!
            if let hit = Self.firstRecord(in: c.bytes, header: h, atOrAfter: timestamp, from: start) { return hit }
        }
        return nil
    }

    /// The offset and timestamp of the record with the largest timestamp (ListOffsets -3);
    /// nil for an empty stream.
    public func offsetOfMaxTimestamp(streamId: Int64) async throws -> (offset: Int64, timestamp: Int64)? {
        let (range, cached, hw): (StreamRange?, CachedBatch?, Int64) = try state.withLockedValue { s in
            guard let st = s.streams[streamId] else { throw ReadError.unknownStream }
            let cacheStart = st.cache.first?.baseOffset ?? st.highWatermark
            let r = st.ranges.filter { $0.endOffset <= cacheStart && $0.endOffset > st.logStartOffset }.max { $0.maxTimestamp < $1.maxTimestamp }
            let c = st.cache.filter { $0.baseOffset < st.highWatermark }.max { $0.maxTimestamp < $1.maxTimestamp }
            return (r, c, st.highWatermark)
        }
        var best: (ByteBuffer, RecordBatchHeader)?
        if let range, range.maxTimestamp > (cached?.maxTimestamp ?? .min) {
            for (h, b) in RecordBatch.split(try await readBlock(range)) where h.baseOffset < hw && h.maxTimestamp > (best?.1.maxTimestamp ?? .min) {
                best = (b, h)
            }
        } else if let cached {
            best = (cached.bytes, RecordBatchHeader(peeking: cached.bytes)!)
        }
        guard let (batch, h) = best else { return nil }
        return Self.firstRecord(in: batch, header: h, atOrAfter: h.maxTimestamp)
    }

    /// The first record at or after `minOffset` whose timestamp is at least `ts`.
    static func firstRecord(in batch: ByteBuffer, header h: RecordBatchHeader, atOrAfter ts: Int64, from minOffset: Int64 = 0) -> (offset: Int64, timestamp: Int64)? {
        if h.isLogAppendTime {
            // Every record of a LogAppendTime batch carries the batch's time.
            return h.maxTimestamp >= ts ? (max(h.baseOffset, minOffset), h.maxTimestamp) : nil
        }
        guard let records = try? Record.decodeAll(batch: batch) else { return (max(h.baseOffset, minOffset), h.maxTimestamp) }
        for r in records where h.baseTimestamp + r.timestampDelta >= ts && h.baseOffset + Int64(r.offsetDelta) >= minOffset {
            return (h.baseOffset + Int64(r.offsetDelta), h.baseTimestamp + r.timestampDelta)
        }
        return nil
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch not above `epoch`, and the offset
    /// where the next epoch starts (or the end of the log for the current epoch).
    public func endOffset(forEpoch epoch: Int32, streamId: Int64) -> (epoch: Int32, endOffset: Int64)? {
        state.withLockedValue { s in
            guard let st = s.streams[streamId] else { return nil }
            let e = Int64(epoch)
            guard let idx = st.epochHistory.lastIndex(where: { $0.epoch <= e }) else { return (-1, -1) }
            if e > st.epoch { return (-1, -1) }
            let end = idx + 1 < st.epochHistory.count ? st.epochHistory[idx + 1].startOffset : st.highWatermark
            return (Int32(truncatingIfNeeded: st.epochHistory[idx].epoch), end)
        }
    }
}
