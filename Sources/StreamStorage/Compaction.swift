import KafkaProtocol
import Logging
import Metadata
import NIOConcurrencyHelpers
import NIOCore
import ObjectStore

/// Compaction settings, by their property names.
public struct CompactionConfig: Sendable {
    /// `compaction.interval.ms`: pause between compaction runs when there is nothing to do.
    public var intervalMs = 30_000
    /// `compaction.sso.max.bytes`: most live bytes one output reads (it holds them in memory
    /// and writes the output from them);
    /// SSOs and stream objects with at least half of this live are left as they are.
    public var ssoMaxBytes = 64 << 20
    /// `stream.object.split.bytes`: a stream with at least this much contiguous data among
    /// a run's inputs is written to its own stream object.
    public var splitBytes = 8 << 20
    /// `compaction.gather.quiet.ms`: how long this node's SSOs that are not gathered must
    /// stay unchanged (it has stopped writing) before a gather takes them however few they
    /// are; see `CompactionPlan.gather`.
    public var gatherQuietMs: Int64 = 300_000
    /// `compaction.sso.min.objects`: small SSOs are merged once there are this many, or once
    /// the oldest has waited `maxMergeDelayMs` (or there is a full output's worth of them, or
    /// a stream to split out). Merging whenever two were there rewrote the growing merged SSO
    /// with every new WAL object: one more PUT per flush at low rates, and each byte written
    /// again and again.
    public var minMergeObjects = 16
    /// `compaction.sso.max.delay.ms`: how long a small SSO waits for others to be merged with;
    /// it bounds how long a deleted topic's data stays in shared WAL objects.
    public var maxMergeDelayMs: Int64 = 10_000

    public init() {}
}

/// Keys of compaction outputs. Each embeds its writer (node, broker epoch, sequence), so an
/// output that was written but never committed can be told apart and swept.
enum CompactionKeys {
    /// `<cluster>/data/sso/<node>_<brokerEpoch>_<seq>`
    static func sso(cluster: String, node: Int32, brokerEpoch: Int64, seq: UInt64) -> String {
        "\(cluster)/data/sso/\(node)_\(brokerEpoch)_\(seq)"
    }

    /// `<cluster>/data/sso/gathered/<node>_<brokerEpoch>_<seq>`
    static func gathered(cluster: String, node: Int32, brokerEpoch: Int64, seq: UInt64) -> String {
        "\(cluster)/data/sso/gathered/\(node)_\(brokerEpoch)_\(seq)"
    }

    /// `<cluster>/data/<hash>/<streamId>/<start>-<end>-<node>_<brokerEpoch>_<seq>`; the hash
    /// spreads streams over key prefixes (S3 scales request rates per prefix).
    static func streamObject(cluster: String, streamId: Int64, start: Int64, end: Int64, node: Int32, brokerEpoch: Int64, seq: UInt64) -> String {
        let h = UInt64(bitPattern: streamId) &* 0x9E37_79B9_7F4A_7C15
        let hash = String(h >> 48, radix: 16)
        return "\(cluster)/data/\(String(repeating: "0", count: 4 - hash.count))\(hash)/\(streamId)/\(start)-\(end)-\(node)_\(brokerEpoch)_\(seq)"
    }

    /// The writer named by a compaction output's key; nil for other keys.
    static func writer(of key: String) -> (node: Int32, brokerEpoch: Int64, seq: UInt64)? {
        guard let last = key.split(separator: "/").last else { return nil }
        let id = last.split(separator: "-").last ?? last
        let parts = id.split(separator: "_")
        guard parts.count == 3, let n = Int32(parts[0]), let e = Int64(parts[1]), let s = UInt64(parts[2]) else { return nil }
        return (n, e, s)
    }
}

/// What one compaction run will do: which objects it reads and the objects it writes, each
/// named by the input ranges it holds. Pure: planned from the metadata store's view, tested
/// without I/O.
public struct CompactionPlan: Equatable, Sendable {
    public var inputs: [StoredObject]
    public var outputs: [Output]

    public enum Kind: Equatable, Sendable {
        /// A stream set object merged from small ones, in stream order.
        case streamSet
        /// One of a gather's stream set objects: each holds a band of streams (by id), and
        /// every stream's data among the gather's inputs sits in one of them.
        case gathered
        /// One contiguous run of one stream.
        case streamObject
    }

    public struct Output: Equatable, Sendable {
        public var kind: Kind
        /// The input ranges it holds, by stream id, then offset.
        public var ranges: [StreamRange]
    }

    public struct StreamRun: Equatable, Sendable {
        public var streamId: Int64
        public var start: Int64
        public var end: Int64
    }

    /// The stream objects it writes, as runs.
    public var streamObjects: [StreamRun] {
        outputs.filter { $0.kind == .streamObject }.map {
            StreamRun(streamId: $0.ranges[0].streamId, start: $0.ranges[0].startOffset, end: $0.ranges.last!.endOffset)
        }
    }

    /// SSO compaction: picks the inputs of a run from this node's live SSOs that are not a
    /// gather's outputs (oldest first): SSOs with less than half of `ssoMaxBytes` live, as
    /// many as fit in `ssoMaxBytes` of live data (at least one). A run happens when it splits
    /// out a stream, rewrites a lone object with much dead data (see
    /// `StoredObject.mostlyWaste`), or merges objects: at least `minMergeObjects` of them, or
    /// half of `ssoMaxBytes` live, or any two once one of them has `waited` (since this node
    /// first saw it) `maxMergeDelayMs`.
    public static func make(candidates: [StoredObject], waited: (StoredObject) -> Int64 = { _ in .max },
                            config: CompactionConfig) -> CompactionPlan? {
        var inputs: [StoredObject] = []
        var bytes = 0
        for c in candidates where !c.ranges.isEmpty {
            // A full SSO is worth reading again only for a stream it can split out. (Its total
            // size says nothing: taken for that, the oldest full SSO was picked alone, planned
            // to nothing, and stopped every later run.)
            let splittable = streamRuns([c]).contains { $0.bytes >= config.splitBytes }
            guard c.liveBytes < config.ssoMaxBytes / 2 || splittable else { continue }
            if !inputs.isEmpty && bytes + c.liveBytes > config.ssoMaxBytes { break }
            inputs.append(c)
            bytes += c.liveBytes
        }
        guard !inputs.isEmpty else { return nil }
        var outputs: [Output] = []
        var rest: [StreamRange] = []
        for run in streamRuns(inputs) {
            if run.bytes >= config.splitBytes { outputs.append(Output(kind: .streamObject, ranges: run.ranges)) } else { rest += run.ranges }
        }
        if outputs.isEmpty {
            if inputs.count == 1 && !inputs[0].mostlyWaste { return nil }
            let enough = inputs.count >= config.minMergeObjects || bytes >= config.ssoMaxBytes / 2
                || inputs.contains { waited($0) >= config.maxMergeDelayMs }
            if inputs.count > 1 && !enough { return nil }
        }
        if !rest.isEmpty { outputs.append(Output(kind: .streamSet, ranges: rest)) }
        return CompactionPlan(inputs: inputs, outputs: outputs)
    }

    /// Gather: rewrites all of this node's SSOs so that each stream's data among them sits in
    /// one object. Merged SSOs hold a slice of every partition each, so with many partitions
    /// their metadata rows grow as objects times partitions; gathered, a stream has one row
    /// per run. Streams with a run of at least `splitBytes` go to stream objects (cut at
    /// `ssoMaxBytes`); the rest fill stream set objects of up to `ssoMaxBytes` in stream
    /// order. A gather happens only when it would remove more (object, stream) pieces than
    /// there are objects, and then only when the SSOs not yet gathered hold at least as many
    /// bytes as the gathered ones (so each byte is rewritten a logarithmic number of times)
    /// or have not changed for `gatherQuietMs` (`quiet`: the node has stopped writing).
    public static func gather(ungathered: [StoredObject], gathered: [StoredObject], quiet: Bool, config: CompactionConfig) -> CompactionPlan? {
        let inputs = (ungathered + gathered).filter { !$0.ranges.isEmpty }
        // A stream's ranges in one object are one row once merged into runs; blocks do not count.
        let pieces = inputs.reduce(0) { $0 + Set($1.ranges.map(\.streamId)).count }
        let streams = Set(inputs.flatMap { $0.ranges.map(\.streamId) }).count
        guard inputs.count >= 2, pieces - streams > inputs.count else { return nil }
        let fresh = ungathered.reduce(0) { $0 + $1.liveBytes }
        let settled = gathered.reduce(0) { $0 + $1.liveBytes }
        guard quiet || fresh >= settled else { return nil }

        var outputs: [Output] = []
        var band = Output(kind: .gathered, ranges: [])
        var bandBytes = 0
        func cut() {
            if !band.ranges.isEmpty { outputs.append(band) }
            band = Output(kind: .gathered, ranges: [])
            bandBytes = 0
        }
        var stream: Int64?
        for run in streamRuns(inputs) {
            if run.bytes >= config.splitBytes {
                var piece = Output(kind: .streamObject, ranges: [])
                var pieceBytes = 0
                for r in run.ranges {
                    if pieceBytes > 0 && pieceBytes + r.size > config.ssoMaxBytes {
                        outputs.append(piece)
                        piece.ranges = []
                        pieceBytes = 0
                    }
                    piece.ranges.append(r)
                    pieceBytes += r.size
                }
                outputs.append(piece)
                continue
            }
            // Start a stream's first run in a new band when the band cannot take all of it.
            if run.run.streamId != stream {
                stream = run.run.streamId
                if bandBytes > 0 && bandBytes + run.bytes > config.ssoMaxBytes { cut() }
            }
            for r in run.ranges {
                if bandBytes > 0 && bandBytes + r.size > config.ssoMaxBytes { cut() }
                band.ranges.append(r)
                bandBytes += r.size
            }
        }
        cut()
        return CompactionPlan(inputs: inputs, outputs: outputs)
    }

    /// Every stream's ranges among the inputs, cut into contiguous runs, by stream id, then offset.
    static func streamRuns(_ inputs: [StoredObject]) -> [(run: StreamRun, ranges: [StreamRange], bytes: Int)] {
        var byStream: [Int64: [StreamRange]] = [:]
        for o in inputs { for r in o.ranges { byStream[r.streamId, default: []].append(r) } }
        var out: [(run: StreamRun, ranges: [StreamRange], bytes: Int)] = []
        for id in byStream.keys.sorted() {
            var current: (run: StreamRun, ranges: [StreamRange], bytes: Int)?
            for r in byStream[id]!.sorted(by: { $0.startOffset < $1.startOffset }) {
                if var c = current, c.run.end == r.startOffset {
                    c.run.end = r.endOffset
                    c.ranges.append(r)
                    c.bytes += r.size
                    current = c
                } else {
                    if let c = current { out.append(c) }
                    current = (StreamRun(streamId: id, start: r.startOffset, end: r.endOffset), [r], r.size)
                }
            }
            if let c = current { out.append(c) }
        }
        return out
    }
}

extension CompactionPlan {
    /// SO compaction: the first stream (by id) with two or more adjacent stream objects that
    /// each hold less than half of `ssoMaxBytes` live, merged oldest first into one stream
    /// object of at most `ssoMaxBytes` live bytes.
    public static func mergeStreamObjects(candidates: [StoredObject], config: CompactionConfig) -> CompactionPlan? {
        var byStream: [Int64: [StoredObject]] = [:]
        for c in candidates where !c.ranges.isEmpty {
            let id = c.ranges[0].streamId
            guard c.ranges.allSatisfy({ $0.streamId == id }) else { continue }
            byStream[id, default: []].append(c)
        }
        func start(_ o: StoredObject) -> Int64 { o.ranges.map(\.startOffset).min()! }
        func end(_ o: StoredObject) -> Int64 { o.ranges.map(\.endOffset).max()! }
        for id in byStream.keys.sorted() {
            var run: [StoredObject] = []
            var bytes = 0
            for o in byStream[id]!.sorted(by: { start($0) < start($1) }) {
                let small = o.liveBytes < config.ssoMaxBytes / 2
                if small, let last = run.last, end(last) == start(o), bytes + o.liveBytes <= config.ssoMaxBytes {
                    run.append(o)
                    bytes += o.liveBytes
                    continue
                }
                if run.count >= 2 { break }
                run = small ? [o] : []
                bytes = small ? o.liveBytes : 0
            }
            if run.count >= 2 {
                let ranges = run.flatMap(\.ranges).sorted { $0.startOffset < $1.startOffset }
                return CompactionPlan(inputs: run, outputs: [Output(kind: .streamObject, ranges: ranges)])
            }
        }
        return nil
    }
}

extension StoredObject {
    /// Whether rewriting this object alone pays: the bytes it holds beyond its live ranges and
    /// their index entries (dead ranges, plus the superseded-key list of a compaction output)
    /// are at least a quarter of the live bytes and at least 4 KiB. A lone rewrite names one
    /// superseded key, so its output is not mostly waste again: no endless rewriting.
    var mostlyWaste: Bool {
        let waste = size - liveBytes - ranges.count * ObjectFormat.indexEntrySize - ObjectFormat.footerSize
        return waste >= max(liveBytes / 4, 4096)
    }
}

/// What one compaction run did.
public struct CompactionReport: Sendable, Equatable {
    public var inputs = 0
    public var outputs = 0
    public var bytesRead = 0
    public var bytesWritten = 0
}

extension StreamEngine {
    /// Key prefixes of the SSOs this node merges: its WAL objects and its merged SSOs.
    var compactionPrefixes: [String] { ["\(clusterId)/data/sso/\(nodeId)_", walPrefix] }
    /// Key prefix of this node's gathered SSOs.
    var gatheredPrefix: String { "\(clusterId)/data/sso/gathered/\(nodeId)_" }

    /// One compaction run (ARCHITECTURE.md "Compaction and retention"), the first of these
    /// with work to do:
    /// 1. SSO compaction merges small SSOs of this node into one SSO and splits streams with
    ///    at least `splitBytes` of contiguous data into stream objects;
    /// 2. a gather rewrites all of this node's SSOs so that each stream's data sits in one of
    ///    them (`CompactionPlan.gather`);
    /// 3. SO compaction merges adjacent small stream objects of one stream.
    /// Every output's footer names the inputs it supersedes. The swap is one metadata
    /// transaction that compare-and-sets the inputs' state, so it cannot race another
    /// compaction or garbage collection; appends and retention only touch other ranges
    /// (appends add ranges past the stream's end; trimmed ranges copied here are dropped again
    /// by the next garbage pass). The inputs become garbage and are deleted only after the
    /// grace period. Returns nil when there was nothing to compact.
    public func compactOnce(config: CompactionConfig, now: Int64) async throws -> CompactionReport? {
        var ungathered: [StoredObject] = []
        for p in compactionPrefixes { ungathered += try await metadata.liveObjects(prefix: p, limit: 10_000) }
        let firstSeen = ssoFirstSeen.withLockedValue { seen in
            seen = Dictionary(uniqueKeysWithValues: ungathered.map { ($0.key, seen[$0.key] ?? now) })
            return seen
        }
        var planned = CompactionPlan.make(candidates: ungathered, waited: { now - firstSeen[$0.key]! }, config: config)
        // A gather runs once no small SSO is left to merge, not while some wait for more: it
        // would gather what the next merge rewrites anyway.
        let waiting = planned == nil && CompactionPlan.make(candidates: ungathered, config: config) != nil
        if planned == nil && !waiting {
            let gathered = try await metadata.liveObjects(prefix: gatheredPrefix, limit: 10_000)
            let keys = Set(ungathered.map(\.key))
            let quiet = gatherWatch.withLockedValue { w in
                if w.keys != keys { w = (keys, now) }
                return now - w.since >= config.gatherQuietMs
            }
            planned = CompactionPlan.gather(ungathered: ungathered, gathered: gathered, quiet: quiet, config: config)
        }
        if planned == nil {
            let ssoPrefix = "\(clusterId)/data/sso/"
            let streamObjects = try await metadata.liveObjects(prefix: "\(clusterId)/data/", limit: 10_000).filter { !$0.key.hasPrefix(ssoPrefix) }
            planned = CompactionPlan.mergeStreamObjects(candidates: streamObjects, config: config)
        }
        guard let plan = planned else { return nil }

        // Each output is read (ranged GETs of the inputs that hold its ranges), built and
        // written before the next, so one output is in memory at a time.
        var report = CompactionReport(inputs: plan.inputs.count)
        let superseded = plan.inputs.map(\.key)
        let sizes = Dictionary(plan.inputs.map { ($0.key, $0.size) }, uniquingKeysWith: { a, _ in a })
        var written: [StoredObject] = []
        do {
            for output in plan.outputs {
                let (batches, read) = try await readRanges(output.ranges, objectSizes: sizes)
                report.bytesRead += read
                let first = output.ranges[0]
                let seq = nextCompactionSeq()
                let key = switch output.kind {
                case .streamSet: CompactionKeys.sso(cluster: clusterId, node: nodeId, brokerEpoch: brokerEpoch, seq: seq)
                case .gathered: CompactionKeys.gathered(cluster: clusterId, node: nodeId, brokerEpoch: brokerEpoch, seq: seq)
                case .streamObject: CompactionKeys.streamObject(cluster: clusterId, streamId: first.streamId, start: first.startOffset,
                                                                end: output.ranges.last!.endOffset, node: nodeId, brokerEpoch: brokerEpoch, seq: seq)
                }
                // Written from the inputs' memory: no copy of the output beside them.
                let (bytes, entries) = ObjectFormat.body(batches, superseded: superseded)
                try await objectStore.put(key, bytes, ifNoneMatch: true)
                report.bytesWritten += bytes.readableBytes
                written.append(StoredObject(key: key, size: bytes.readableBytes,
                                            ranges: ObjectFormat.ranges(of: entries, key: key, objectSize: bytes.readableBytes)))
            }
        } catch {
            // Never referenced: what can be deleted now need not wait for the orphan sweep.
            try? await objectStore.delete(written.map(\.key))
            throw error
        }
        if mutations.contains(.deleteBeforeSupersedingCommit) { try await objectStore.delete(superseded) }
        do {
            try await metadata.commitCompaction(CompactionCommit(superseded: superseded, objects: written), now: now)
        } catch let e as MetadataError where e.code == .conflict {
            // Never referenced: delete them now rather than leave them for the orphan sweep.
            try? await objectStore.delete(written.map(\.key))
            logger.info("compaction lost a race; inputs changed", metadata: ["error": "\(e)"])
            return nil
        }
        replaceRanges(superseded: Set(superseded), with: written.flatMap(\.ranges))
        report.outputs = written.count
        logger.info("compacted objects", metadata: ["inputs": "\(report.inputs)", "outputs": "\(report.outputs)",
                                                    "streamObjects": "\(plan.streamObjects.count)",
                                                    "gathered": "\(plan.outputs.filter { $0.kind == .gathered }.count)",
                                                    "read": "\(report.bytesRead)", "written": "\(report.bytesWritten)"])
        return report
    }

    /// Bytes of compaction GETs under way at once (one larger GET may still run alone).
    static let maxReadBytesInFlight = 16 << 20

    /// The batches of `ranges` (in their order), read with one ranged GET per stretch of an
    /// input whose ranges lie at most `gap` apart, up to 8 GETs and `maxReadBytesInFlight`
    /// at a time. Returns the batches and the bytes read.
    func readRanges(_ ranges: [StreamRange], objectSizes: [String: Int], gap: Int = 1 << 20) async throws -> ([ObjectFormat.Batch], Int) {
        for r in ranges {
            guard r.position >= 0, r.size > 0, r.position + r.size <= objectSizes[r.objectKey] ?? .max else {
                throw ObjectFormat.FormatError(description: "range \(r.startOffset)-\(r.endOffset) of stream \(r.streamId) lies outside \(r.objectKey)")
            }
        }
        // Stretches: per object, ranges by position, joined across gaps of at most `gap`.
        var stretches: [(key: String, span: Range<Int>)] = []
        for (key, rs) in Dictionary(grouping: ranges, by: \.objectKey) {
            var current: Range<Int>?
            for r in rs.sorted(by: { $0.position < $1.position }) {
                let span = r.position..<(r.position + r.size)
                if let c = current, span.lowerBound <= c.upperBound + gap {
                    current = c.lowerBound..<max(c.upperBound, span.upperBound)
                } else {
                    if let c = current { stretches.append((key, c)) }
                    current = span
                }
            }
            if let c = current { stretches.append((key, c)) }
        }
        var fetched: [Int: ByteBuffer] = [:]
        try await withThrowingTaskGroup(of: (Int, ByteBuffer).self) { group in
            var next = 0
            var running = 0
            var runningBytes = 0
            // Small GETs go 8 at a time (many partitions' short runs), large ones at most
            // `maxReadBytesInFlight` together: eight 8 MiB GETs at once slowed the WAL uploads
            // beside them several-fold on SeaweedFS.
            func launchWhileRoom() {
                while next < stretches.count, running < 8,
                      running == 0 || runningBytes + stretches[next].span.count <= Self.maxReadBytesInFlight {
                    let i = next
                    let s = stretches[i]
                    next += 1
                    running += 1
                    runningBytes += s.span.count
                    group.addTask { (i, try await self.objectStore.get(s.key, range: s.span)) }
                }
            }
            launchWhileRoom()
            while let (i, body) = try await group.next() {
                guard body.readableBytes == stretches[i].span.count else {
                    throw ObjectFormat.FormatError(description: "\(stretches[i].key) is shorter than its ranges (\(body.readableBytes) of \(stretches[i].span.count) bytes)")
                }
                fetched[i] = body
                running -= 1
                runningBytes -= stretches[i].span.count
                launchWhileRoom()
            }
        }
        var byObject: [String: [(span: Range<Int>, body: ByteBuffer)]] = [:]
        for (i, s) in stretches.enumerated() { byObject[s.key, default: []].append((s.span, fetched[i]!)) }
        var batches: [ObjectFormat.Batch] = []
        for r in ranges {
            let (span, body) = byObject[r.objectKey]!.first { $0.span.contains(r.position) }!
            let block = body.getSlice(at: body.readerIndex + r.position - span.lowerBound, length: r.size)!
            for (h, b) in RecordBatch.split(block) {
                batches.append(ObjectFormat.Batch(streamId: r.streamId, epoch: r.epoch, header: h, bytes: b))
            }
        }
        return (batches, stretches.reduce(0) { $0 + $1.span.count })
    }

    /// Points open streams at compaction's outputs instead of its inputs. Ranges of other
    /// objects (including ones uploaded but not yet committed) stay as they are.
    func replaceRanges(superseded: Set<String>, with ranges: [StreamRange]) {
        var byStream: [Int64: [StreamRange]] = [:]
        for r in ranges { byStream[r.streamId, default: []].append(r) }
        state.withLockedValue { s in
            for id in Array(s.streams.keys) {
                guard s.streams[id]!.ranges.contains(where: { superseded.contains($0.objectKey) }) || byStream[id] != nil else { continue }
                var rs = s.streams[id]!.ranges.filter { !superseded.contains($0.objectKey) }
                rs += byStream[id] ?? []
                rs.sort { $0.startOffset < $1.startOffset }
                s.streams[id]!.ranges = rs
            }
        }
    }

    /// Reads a block; if its object is gone (another broker's compaction superseded it and
    /// the grace period passed), reloads the stream's ranges from the metadata store and reads
    /// the block that holds `offset` now.
    func readBlockOrReload(_ r: StreamRange, streamId: Int64, offset: Int64, readaheadEnd: Int = 0) async throws -> [ByteBuffer] {
        do {
            return try await readBlockParts(try await block(of: r, holding: offset), reader: streamId, readaheadEnd: readaheadEnd)
        } catch let e as ObjectStoreError where e.code == .notFound {
            indexCache.forget(r.objectKey)
            let stored = try await metadata.ranges(streamId: streamId)
            let committedEnd = stored.last?.endOffset ?? .min
            let fresh: StreamRange? = state.withLockedValue { s in
                guard let st = s.streams[streamId] else { return nil }
                // Keep what was uploaded past the store's view (its commit may be queued).
                let ranges = stored + st.ranges.filter { $0.startOffset >= committedEnd }
                s.streams[streamId]!.ranges = ranges
                return Self.range(containing: offset, in: ranges)
            }
            guard let fresh, fresh.objectKey != r.objectKey else { throw e }
            logger.info("reloaded a stream's ranges: an object it held was compacted away", metadata: ["stream": "\(streamId)", "key": "\(r.objectKey)"])
            return try await readBlockParts(try await block(of: fresh, holding: offset))
        }
    }

    /// The block of run `r` that holds `offset`: a run of more than one block is narrowed to
    /// one by its object's index (`indexCache`), so a read does not take the whole run.
    func block(of r: StreamRange, holding offset: Int64) async throws -> StreamRange {
        guard r.size > ObjectFormat.blockSize, r.objectSize > 0 else { return r }
        let entries = try await indexCache.entries(of: r.objectKey) { [objectStore] in
            try await IOClass.$current.withValue(.catchUpRead) {
                try await ObjectFormat.readIndex(objectStore, key: r.objectKey, size: r.objectSize).entries
            }
        }
        guard let e = ObjectFormat.entry(holding: offset, of: r.streamId, in: entries),
              e.position >= r.position, e.position + e.size <= r.position + r.size else { return r }
        return ObjectFormat.ranges(of: [e], key: r.objectKey, objectSize: r.objectSize)[0]
    }

    func nextCompactionSeq() -> UInt64 {
        compactionSeq.withLockedValue { s in
            s += 1
            return s
        }
    }
}

extension StreamEngine {
    /// One compaction pass, its requests paced one by one by the throughput limiter
    /// (`compaction.max.bytes.per.sec`, `ThroughputLimits.compactionBytesPerSec`): returns 0
    /// after a pass that compacted something, so that a backlog is worked off at that rate,
    /// or nil when there was nothing to do or it failed (then `compaction.interval.ms`).
    public func runCompaction(config: CompactionConfig, now: Int64) async -> Int? {
        do {
            let run = try await IOClass.$current.withValue(.compaction) { try await compactOnce(config: config, now: now) }
            return run == nil ? nil : 0
        } catch {
            logger.warning("compaction failed; retrying next interval", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
