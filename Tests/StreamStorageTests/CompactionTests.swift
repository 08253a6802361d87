import Foundation
import KafkaProtocol
import Logging
import Metadata
import NIOCore
import NIOPosix
import ObjectStore
import StreamStorage
import Testing

/// SSO compaction and garbage collection over the in-memory bucket and a real SQLite file.
@Suite struct CompactionTests {
    typealias E = EngineTests

    /// Reads a whole stream back from `from` by offset, one object block at a time.
    static func readAll(_ e: StreamEngine, _ s: Int64, from: Int64 = 0) async throws -> [(Int64, String)] {
        var out: [(Int64, String)] = []
        var offset = from
        let end = e.offsets(streamId: s)!.highWatermark
        while offset < end {
            let r = try await e.read(streamId: s, offset: offset, maxBytes: 1)
            #expect(!r.batches.isEmpty)
            if r.batches.isEmpty { break }
            for b in r.batches {
                let h = RecordBatchHeader(peeking: b)!
                for rec in try Record.decodeAll(batch: b) where h.baseOffset + Int64(rec.offsetDelta) >= offset {
                    out.append((h.baseOffset + Int64(rec.offsetDelta), String(buffer: rec.value!)))
                }
                offset = h.lastOffset + 1
            }
        }
        return out
    }

    /// Waits until the committer has committed `count` live objects.
    static func waitForCommits(_ m: any MetadataStore, _ count: Int) async throws {
        for _ in 0..<500 {
            if try await m.liveObjects(prefix: "", limit: 100_000).count >= count { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("only \(try await m.liveObjects(prefix: "", limit: 100_000).count) of \(count) objects were committed")
    }

    static var noCache: StorageConfig {
        var c = StorageConfig()
        c.logCacheBytes = 0  // reads go to the objects, not the LogCache
        c.uploadIntervalMs = 5
        return c
    }

    /// Appends `n` batches to each stream, alternating, each acked (so each its own WAL object
    /// holding both streams' batches of that round).
    static func fill(_ e: StreamEngine, _ streams: [Int64], rounds: Int, value: (Int64, Int) -> String) async throws {
        for i in 0..<rounds {
            await withTaskGroup(of: Void.self) { g in
                for s in streams {
                    let v = value(s, i)
                    g.addTask { _ = await E.append(e, s, [v]) }
                }
            }
        }
    }

    @Test(arguments: StoreKind.testable) func compactionKeepsEveryRecordReadableOnceAndDeletesInputsOnlyAfterGrace(kind: StoreKind) async throws {
        let f = try await E.fixture(kind)
        let second = try await f.metadata.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await e.open(streamId: second)
        try await Self.fill(e, [f.streamId, second], rounds: 12) { s, i in "s\(s)-\(i)" }
        let walObjects = try await f.store.list(prefix: "").count
        #expect(walObjects >= 12)
        try await Self.waitForCommits(f.metadata, walObjects)

        var config = CompactionConfig()
        config.splitBytes = 1 << 30  // nothing is split out: one merged SSO
        let report = try #require(try await e.compactOnce(config: config, now: 1_000))
        #expect(report.inputs == walObjects)
        #expect(report.outputs == 1)
        #expect(try await e.compactOnce(config: config, now: 1_001) == nil, "one SSO left: nothing more to do")

        let expected = { (s: Int64) in (0..<12).map { (Int64($0), "s\(s)-\($0)") } }
        for s in [f.streamId, second] {
            let got = try await Self.readAll(e, s)
            #expect(got.map { $0.0 } == got.map { $0.0 }.sorted() && got.count == 12)
            #expect(got.elementsEqual(expected(s), by: { $0 == $1 }))
        }
        // The inputs are garbage but stay for the grace period: readers may hold them.
        var gc = GarbageCollectionConfig()
        gc.graceMs = 60_000
        let early = try await e.collectGarbage(now: 1_000 + 59_999, config: gc)
        #expect(early.marked == 0, "the compaction commit marked its inputs itself")
        #expect(early.deleted == 0)
        #expect(try await f.store.list(prefix: "").count == walObjects + 1)
        let late = try await e.collectGarbage(now: 1_000 + 60_000, config: gc)
        #expect(late.deleted == walObjects)
        let left = try await f.store.list(prefix: "")
        #expect(left.count == 1)
        #expect(left[0].key.contains("/data/sso/"))
        let parsed = try ObjectFormat.parse(try await f.store.get(left[0].key, range: nil))
        #expect(Set(parsed.superseded).count == walObjects, "the footer names every object it supersedes")

        // Everything still reads, here and after a restart (from the metadata store's view).
        for s in [f.streamId, second] {
            #expect(try await Self.readAll(e, s).elementsEqual(expected(s), by: { $0 == $1 }))
        }
        await e.shutdown()
        await committer.value
        let e2 = try await E.engine(f, config: Self.noCache)
        for s in [f.streamId, second] {
            try await e2.open(streamId: s)
            #expect(try await Self.readAll(e2, s).elementsEqual(expected(s), by: { $0 == $1 }))
        }
    }

    /// A full SSO (half of `ssoMaxBytes` or more) with no stream big enough to split out is
    /// left alone, and runs go on with the small objects after it. (Its total passing
    /// `splitBytes` made it an input again: rewritten for nothing, and when nothing fitted
    /// beside it, a run of it alone planned to nothing and compaction stopped for good.)
    @Test func aFullSSOFirstInLineDoesNotStopCompaction() async throws {
        let f = try await E.fixture()
        var streams = [f.streamId]
        for name in ["u", "v", "w"] {
            streams.append(try await f.metadata.createTopic(name: name, topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0])
        }
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        for s in streams { try await e.open(streamId: s) }
        let value = String(repeating: "x", count: 100)
        var config = CompactionConfig()
        config.ssoMaxBytes = 4096
        config.splitBytes = 1024  // no stream reaches it in one run: ~150 bytes per batch
        try await Self.fill(e, streams, rounds: 4) { s, i in "\(value)\(s)-\(i)" }
        try await Self.waitForCommits(f.metadata, 4)
        let first = try #require(try await e.compactOnce(config: config, now: 1_000))
        #expect(first.inputs == 4 && first.outputs == 1)
        let full = try await f.metadata.liveObjects(prefix: "", limit: 100)
        #expect(full.count == 1 && full[0].liveBytes >= config.ssoMaxBytes / 2, "one full SSO: \(full.map(\.liveBytes))")
        try await Self.fill(e, streams, rounds: 3) { s, i in "\(value)\(s)-\(i + 4)" }
        try await Self.waitForCommits(f.metadata, 4)
        let second = try #require(try await e.compactOnce(config: config, now: 2_000), "the small objects after the full SSO are compacted")
        #expect(second.inputs == 3)
        for s in streams {
            #expect(try await Self.readAll(e, s).map(\.1) == (0..<7).map { "\(value)\(s)-\($0)" })
        }
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func largeStreamsAreSplitIntoStreamObjects(kind: StoreKind) async throws {
        let f = try await E.fixture(kind)
        let small = try await f.metadata.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await e.open(streamId: small)
        let big = String(repeating: "x", count: 500)
        try await Self.fill(e, [f.streamId, small], rounds: 8) { s, i in s == small ? "s\(i)" : "\(big)\(i)" }
        let walObjects = try await f.store.list(prefix: "").count
        try await Self.waitForCommits(f.metadata, walObjects)

        var config = CompactionConfig()
        config.splitBytes = 2048  // the big stream has ~4 KiB among the inputs, the small one ~0.5 KiB
        let report = try #require(try await e.compactOnce(config: config, now: 0))
        #expect(report.outputs == 2)
        let live = try await f.metadata.liveObjects(prefix: "", limit: 100)
        #expect(live.count == 2)
        let so = try #require(live.first { !$0.key.contains("/data/sso/") })
        #expect(so.key.contains("/data/") && so.key.contains("/\(f.streamId)/0-8-"), "\(so.key)")
        #expect(Set(so.ranges.map(\.streamId)) == [f.streamId])
        let sso = try #require(live.first { $0.key.contains("/data/sso/") })
        #expect(Set(sso.ranges.map(\.streamId)) == [small])
        #expect(Set(try ObjectFormat.parse(try await f.store.get(so.key, range: nil)).superseded).count == walObjects)

        #expect(try await Self.readAll(e, f.streamId).map { $0.1 } == (0..<8).map { "\(big)\($0)" })
        #expect(try await Self.readAll(e, small).map { $0.1 } == (0..<8).map { "s\($0)" })
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func newAppendsDuringCompactionAreKept(kind: StoreKind) async throws {
        let f = try await E.fixture(kind)
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await Self.fill(e, [f.streamId], rounds: 5) { _, i in "a\(i)" }
        try await Self.waitForCommits(f.metadata, 5)
        // Compaction and appends race; every record must come back once, in order.
        async let compacted = e.compactOnce(config: CompactionConfig(), now: 0)
        try await Self.fill(e, [f.streamId], rounds: 5) { _, i in "b\(i)" }
        #expect(try await compacted != nil)
        try await Self.fill(e, [f.streamId], rounds: 2) { _, i in "c\(i)" }
        let want = (0..<5).map { "a\($0)" } + (0..<5).map { "b\($0)" } + (0..<2).map { "c\($0)" }
        #expect(try await Self.readAll(e, f.streamId).map { $0.1 } == want)
        await e.shutdown()
        await committer.value
        let e2 = try await E.engine(f, config: Self.noCache)
        try await e2.open(streamId: f.streamId)
        let got = try await Self.readAll(e2, f.streamId)
        #expect(got.map { $0.1 } == want)
        #expect(got.map { $0.0 } == (0..<12).map(Int64.init))
    }

    @Test(arguments: StoreKind.testable) func trimmedAndDeletedTopicsObjectsAreCollected(kind: StoreKind) async throws {
        let f = try await E.fixture(kind)
        let doomed = try await f.metadata.createTopic(name: "doomed", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await e.open(streamId: doomed)
        try await Self.fill(e, [f.streamId], rounds: 4) { _, i in "t\(i)" }
        try await Self.fill(e, [doomed], rounds: 3) { _, i in "d\(i)" }
        try await Self.waitForCommits(f.metadata, 7)
        var gc = GarbageCollectionConfig()
        gc.graceMs = 100
        #expect(try await e.collectGarbage(now: 0, config: gc) == .init(marked: 0, deleted: 0), "everything is referenced")

        // DeleteRecords to offset 2 makes the first two objects of `t` garbage.
        #expect(try await e.advanceLogStart(streamId: f.streamId, to: 2) == 2)
        _ = try await f.metadata.deleteTopic(name: "doomed")
        e.close(streamId: doomed)
        #expect(try await e.collectGarbage(now: 1_000, config: gc) == .init(marked: 5, deleted: 0))
        #expect(try await f.store.list(prefix: "").count == 7)
        #expect(try await e.collectGarbage(now: 1_100, config: gc) == .init(marked: 0, deleted: 5))
        #expect(try await f.store.list(prefix: "").count == 2)
        #expect(try await Self.readAll(e, f.streamId, from: 2).map { $0.1 } == ["t2", "t3"])
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func compactionCommitIsACompareAndSetOnItsInputs(kind: StoreKind) async throws {
        let f = try await E.fixture(kind)
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await Self.fill(e, [f.streamId], rounds: 2) { _, i in "v\(i)" }
        try await Self.waitForCommits(f.metadata, 2)
        let inputs = try await f.metadata.liveObjects(prefix: "", limit: 10)
        // A first swap wins: its inputs become garbage.
        let first = CompactionCommit(superseded: inputs.map(\.key), objects: [StoredObject(key: "out-1", size: 1, ranges: inputs.flatMap(\.ranges).map {
            var r = $0
            r.objectKey = "out-1"
            return r
        })])
        try await f.metadata.commitCompaction(first, now: 5)
        // A second swap of the same inputs (another compactor, or a stale plan) is refused and
        // changes nothing.
        var second = first
        second.objects[0].key = "out-2"
        await #expect(throws: MetadataError.self) { try await f.metadata.commitCompaction(second, now: 6) }
        let live = try await f.metadata.liveObjects(prefix: "", limit: 10)
        #expect(live.map(\.key) == ["out-1"])
        #expect(try await f.metadata.ranges(streamId: f.streamId).map(\.objectKey) == ["out-1", "out-1"])
        #expect(try await f.metadata.garbageObjects(markedBefore: 5, limit: 10).sorted() == inputs.map(\.key).sorted())
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func aReaderWhoseObjectsWereCompactedElsewhereReloadsItsRanges(kind: StoreKind) async throws {
        let f = try await E.fixture(kind)
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await Self.fill(e, [f.streamId], rounds: 4) { _, i in "v\(i)" }
        try await Self.waitForCommits(f.metadata, 4)
        // Another engine (here: this node's next incarnation) compacts and collects the
        // objects `e` still points at.
        let other = try await E.engine(f, config: Self.noCache)
        #expect(try await other.compactOnce(config: CompactionConfig(), now: 0) != nil)
        var gc = GarbageCollectionConfig()
        gc.graceMs = 0
        #expect(try await other.collectGarbage(now: 1, config: gc).deleted == 4)
        #expect(try await Self.readAll(e, f.streamId).map { $0.1 } == ["v0", "v1", "v2", "v3"])
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func adjacentSmallStreamObjectsMerge(kind: StoreKind) async throws {
        let f = try await E.fixture(kind)
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        var config = CompactionConfig()
        config.splitBytes = 1024
        let big = String(repeating: "y", count: 500)
        try await Self.fill(e, [f.streamId], rounds: 4) { _, i in "\(big)\(i)" }
        try await Self.waitForCommits(f.metadata, 4)
        #expect(try await e.compactOnce(config: config, now: 0)?.outputs == 1)
        try await Self.fill(e, [f.streamId], rounds: 4) { _, i in "\(big)\(i + 4)" }
        try await Self.waitForCommits(f.metadata, 5)
        #expect(try await e.compactOnce(config: config, now: 0)?.outputs == 1)
        let split = try await f.metadata.liveObjects(prefix: "", limit: 100).map(\.key)
        #expect(split.count == 2 && split[0].contains("/\(f.streamId)/0-4-") && split[1].contains("/\(f.streamId)/4-8-"), "\(split)")

        // No SSO left: the two adjacent stream objects become one.
        let merged = try #require(try await e.compactOnce(config: config, now: 0))
        #expect(merged.inputs == 2 && merged.outputs == 1)
        let live = try await f.metadata.liveObjects(prefix: "", limit: 100)
        #expect(live.count == 1 && live[0].key.contains("/\(f.streamId)/0-8-"), "\(live.map(\.key))")
        #expect(try await e.compactOnce(config: config, now: 0) == nil)
        #expect(try await Self.readAll(e, f.streamId).map { $0.1 } == (0..<8).map { "\(big)\($0)" })
        var gc = GarbageCollectionConfig()
        gc.graceMs = 0
        try await e.collectGarbage(now: 1, config: gc)
        #expect(try await f.store.list(prefix: "").map(\.key) == live.map(\.key))
        #expect(try await Self.readAll(e, f.streamId).map { $0.1 } == (0..<8).map { "\(big)\($0)" })
        await e.shutdown()
        await committer.value
    }
}
