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
    /// `compaction.max.bytes.per.sec`: compaction's share of object-store bandwidth (bytes
    /// read plus written); after each run it waits long enough to stay under it.
    public var maxBytesPerSec = 32 << 20
    /// `compaction.sso.max.bytes`: most live bytes one run reads (it holds the inputs and one
    /// output in memory);
    /// SSOs and stream objects with at least half of this live are left as they are.
    public var ssoMaxBytes = 64 << 20
    /// `stream.object.split.bytes`: a stream with at least this much contiguous data among
    /// a run's inputs is written to its own stream object.
    public var splitBytes = 8 << 20

    public init() {}
}

/// Keys of compaction outputs. Each embeds its writer (node, broker epoch, sequence), so an
/// output that was written but never committed can be told apart and swept.
enum CompactionKeys {
    /// `<cluster>/data/sso/<node>_<brokerEpoch>_<seq>`
    static func sso(cluster: String, node: Int32, brokerEpoch: Int64, seq: UInt64) -> String {
        "\(cluster)/data/sso/\(node)_\(brokerEpoch)_\(seq)"
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

/// What one compaction run will do: which objects it reads and which stream runs go to
/// stream objects. Pure: planned from the metadata store's view, tested without I/O.
struct CompactionPlan: Equatable {
    var inputs: [StoredObject]
    /// Contiguous runs of one stream (offset ranges) that become stream objects.
    var streamObjects: [StreamRun]

    struct StreamRun: Equatable {
        var streamId: Int64
        var start: Int64
        var end: Int64
    }

    /// Picks the inputs of a run from live SSOs (oldest first): SSOs with less than half of
    /// `ssoMaxBytes` live, as many as fit in `ssoMaxBytes` of live data (at least one). A run
    /// happens when it merges two or more objects, splits out a stream, or rewrites a lone
    /// object with much dead data (see `StoredObject.mostlyWaste`).
    static func make(candidates: [StoredObject], config: CompactionConfig) -> CompactionPlan? {
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
        let runs = streamRuns(inputs).filter { $0.bytes >= config.splitBytes }.map { $0.run }
        if inputs.count == 1 && runs.isEmpty && !inputs[0].mostlyWaste { return nil }
        return CompactionPlan(inputs: inputs, streamObjects: runs)
    }

    /// Every stream's ranges among the inputs, cut into contiguous runs.
    static func streamRuns(_ inputs: [StoredObject]) -> [(run: StreamRun, bytes: Int)] {
        var byStream: [Int64: [StreamRange]] = [:]
        for o in inputs { for r in o.ranges { byStream[r.streamId, default: []].append(r) } }
        var out: [(run: StreamRun, bytes: Int)] = []
        for id in byStream.keys.sorted() {
            var current: (StreamRun, Int)?
            for r in byStream[id]!.sorted(by: { $0.startOffset < $1.startOffset }) {
                if let c = current, c.0.end == r.startOffset {
                    current = (StreamRun(streamId: id, start: c.0.start, end: r.endOffset), c.1 + r.size)
                } else {
                    if let c = current { out.append((run: c.0, bytes: c.1)) }
                    current = (StreamRun(streamId: id, start: r.startOffset, end: r.endOffset), r.size)
                }
            }
            if let c = current { out.append((run: c.0, bytes: c.1)) }
        }
        return out
    }
}

extension CompactionPlan {
    /// SO compaction: the first stream (by id) with two or more adjacent stream objects that
    /// each hold less than half of `ssoMaxBytes` live, merged oldest first into one stream
    /// object of at most `ssoMaxBytes` live bytes.
    static func mergeStreamObjects(candidates: [StoredObject], config: CompactionConfig) -> CompactionPlan? {
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
                return CompactionPlan(inputs: run, streamObjects: [StreamRun(streamId: id, start: start(run[0]), end: end(run.last!))])
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
    /// Key prefixes of the SSOs this node compacts: its WAL objects and its earlier outputs.
    var compactionPrefixes: [String] { ["\(clusterId)/data/sso/\(nodeId)_", walPrefix] }

    /// One compaction run (ARCHITECTURE.md "Compaction and retention"). SSO compaction
    /// merges small SSOs of this node into one SSO and splits streams with at least
    /// `splitBytes` of contiguous data into stream objects; when there is no SSO work, SO
    /// compaction merges adjacent small stream objects of one stream. Every output's footer names the inputs it
    /// supersedes. The swap is one metadata transaction that compare-and-sets the inputs'
    /// state, so it cannot race another compaction or garbage collection; appends and
    /// retention only touch other ranges (appends add ranges past the stream's end; trimmed
    /// ranges copied here are dropped again by the next garbage pass). The inputs become
    /// garbage and are deleted only after the grace period. Returns nil when there was
    /// nothing to compact.
    public func compactOnce(config: CompactionConfig, now: Int64) async throws -> CompactionReport? {
        var candidates: [StoredObject] = []
        for p in compactionPrefixes { candidates += try await metadata.liveObjects(prefix: p, limit: 10_000) }
        var planned = CompactionPlan.make(candidates: candidates, config: config)
        if planned == nil {
            // No SSO work: merge adjacent small stream objects of one stream.
            let ssoPrefix = "\(clusterId)/data/sso/"
            let streamObjects = try await metadata.liveObjects(prefix: "\(clusterId)/data/", limit: 10_000).filter { !$0.key.hasPrefix(ssoPrefix) }
            planned = CompactionPlan.mergeStreamObjects(candidates: streamObjects, config: config)
        }
        guard let plan = planned else { return nil }

        // Read every live range of the inputs, by stream.
        var report = CompactionReport(inputs: plan.inputs.count)
        var batches: [Int64: [ObjectFormat.Batch]] = [:]
        for input in plan.inputs {
            let object = try await objectStore.get(input.key, range: nil)
            report.bytesRead += object.readableBytes
            for r in input.ranges {
                guard r.position >= 0, r.position + r.size <= object.readableBytes else {
                    throw ObjectFormat.FormatError(description: "range \(r.startOffset)-\(r.endOffset) of stream \(r.streamId) lies outside \(input.key)")
                }
                let block = object.getSlice(at: object.readerIndex + r.position, length: r.size)!
                for (h, b) in RecordBatch.split(block) {
                    batches[r.streamId, default: []].append(ObjectFormat.Batch(streamId: r.streamId, epoch: r.epoch, header: h, bytes: b))
                }
            }
        }
        for id in batches.keys { batches[id]!.sort { $0.header.baseOffset < $1.header.baseOffset } }

        // Cut out the stream objects' batches; the rest is the merged SSO. Each output is
        // written as soon as it is built, so one output at a time is in memory next to the inputs.
        let superseded = plan.inputs.map(\.key)
        var outputs: [(key: String, size: Int, entries: [ObjectFormat.Entry])] = []
        func write(_ key: String, _ batches: [ObjectFormat.Batch]) async throws {
            let (bytes, entries) = ObjectFormat.build(batches, superseded: superseded)
            try await objectStore.put(key, bytes, ifNoneMatch: true)
            outputs.append((key, bytes.readableBytes, entries))
        }
        for run in plan.streamObjects {
            let inRun = { (b: ObjectFormat.Batch) in b.header.baseOffset >= run.start && b.header.baseOffset < run.end }
            let mine = batches[run.streamId, default: []].filter(inRun)
            batches[run.streamId]?.removeAll(where: inRun)
            guard !mine.isEmpty else { continue }
            try await write(CompactionKeys.streamObject(cluster: clusterId, streamId: run.streamId, start: run.start, end: run.end,
                                                        node: nodeId, brokerEpoch: brokerEpoch, seq: nextCompactionSeq()), mine)
        }
        let rest = batches.keys.sorted().flatMap { batches[$0]! }
        batches = [:]
        if !rest.isEmpty {
            try await write(CompactionKeys.sso(cluster: clusterId, node: nodeId, brokerEpoch: brokerEpoch, seq: nextCompactionSeq()), rest)
        }
        report.bytesWritten = outputs.reduce(0) { $0 + $1.size }
        let objects = outputs.map { StoredObject(key: $0.key, size: $0.size, ranges: ObjectFormat.ranges(of: $0.entries, key: $0.key, objectSize: $0.size)) }
        if mutations.contains(.deleteBeforeSupersedingCommit) { try await objectStore.delete(superseded) }
        do {
            try await metadata.commitCompaction(CompactionCommit(superseded: superseded, objects: objects), now: now)
        } catch let e as MetadataError where e.code == .conflict {
            // Never referenced: delete them now rather than leave them for the orphan sweep.
            try? await objectStore.delete(outputs.map { $0.key })
            logger.info("compaction lost a race; inputs changed", metadata: ["error": "\(e)"])
            return nil
        }
        replaceRanges(superseded: Set(superseded), with: objects.flatMap(\.ranges))
        report.outputs = outputs.count
        logger.info("compacted objects", metadata: ["inputs": "\(report.inputs)", "outputs": "\(report.outputs)",
                                                    "streamObjects": "\(plan.streamObjects.count)",
                                                    "read": "\(report.bytesRead)", "written": "\(report.bytesWritten)"])
        return report
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
    func readBlockOrReload(_ r: StreamRange, streamId: Int64, offset: Int64, readaheadEnd: Int = 0) async throws -> ByteBuffer {
        do {
            return try await readBlock(r, reader: streamId, readaheadEnd: readaheadEnd)
        } catch let e as ObjectStoreError where e.code == .notFound {
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
            return try await readBlock(fresh)
        }
    }

    func nextCompactionSeq() -> UInt64 {
        compactionSeq.withLockedValue { s in
            s += 1
            return s
        }
    }
}

extension StreamEngine {
    /// One compaction pass: returns the pause before the next (a run's bytes at
    /// `compaction.max.bytes.per.sec`, so a backlog is worked off at that rate), or nil when
    /// there was nothing to do or it failed (then `compaction.interval.ms`).
    public func runCompaction(config: CompactionConfig, now: Int64) async -> Int? {
        do {
            let run = try await IOClass.$current.withValue(.compaction) { try await compactOnce(config: config, now: now) }
            guard let r = run else { return nil }
            return (r.bytesRead + r.bytesWritten) * 1000 / max(1, config.maxBytesPerSec)
        } catch {
            logger.warning("compaction failed; retrying next interval", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
