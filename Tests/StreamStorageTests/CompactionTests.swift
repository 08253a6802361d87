import Foundation
import KafkaProtocol
import Logging
import Metadata
import NIOConcurrencyHelpers
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

    /// The WAL objects in the bucket, once every one of them is committed (before compaction
    /// has superseded any).
    static func committedWALObjects(_ f: E.Fixture) async throws -> Int {
        let n = try await f.store.list(prefix: "\(f.clusterId)/wal/").count
        try await waitForCommits(f.metadata, n)
        return n
    }

    /// A fixture with `count` one-partition streams (its own and `count - 1` more), an engine
    /// without a LogCache that has them open, and its committer running.
    static func openStreams(_ count: Int, _ kind: StoreKind = .sqlite) async throws -> (E.Fixture, StreamEngine, [Int64], Task<Void, Never>) {
        let f = try await E.fixture(kind)
        var streams = [f.streamId]
        for i in 1..<count {
            streams.append(try await f.metadata.createTopic(name: "s\(i)", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0])
        }
        let e = try await E.engine(f, config: noCache)
        let committer = Task { await e.runCommitter() }
        for s in streams { try await e.open(streamId: s) }
        return (f, e, streams, committer)
    }

    /// Merges any two small SSOs (the default waits for `minMergeObjects` of them).
    static var mergeAny: CompactionConfig {
        var c = CompactionConfig()
        c.minMergeObjects = 2
        return c
    }

    static var noCache: StorageConfig {
        var c = StorageConfig()
        c.logCacheBytes = 0  // reads go to the objects, not the LogCache
        c.uploadIntervalMs = 5
        return c
    }

    /// Appends a round of one batch to each stream, `rounds` times, each round acked before the
    /// next: usually one WAL object per round holding every stream's batch of it. The round's
    /// batches are built first and appended back to back from one task, so that the flush timer
    /// seldom falls between them; when it does, the round is two objects, and a test that
    /// counts objects must count what was written.
    static func fill(_ e: StreamEngine, _ streams: [Int64], rounds: Int, values: (Int64, Int) -> [String]) async throws {
        for i in 0..<rounds {
            let batches = streams.map { s in (s, E.batch(values(s, i))) }
            var tickets: [StreamEngine.AppendTicket] = []
            for (s, (b, h)) in batches {
                tickets.append(await e.append(streamId: s, batch: b, header: h, timeout: .seconds(10)))
            }
            for t in tickets { _ = await t.result() }
        }
    }

    static func fill(_ e: StreamEngine, _ streams: [Int64], rounds: Int, value: (Int64, Int) -> String) async throws {
        try await fill(e, streams, rounds: rounds) { s, i in [value(s, i)] }
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

        var config = Self.mergeAny
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
        let (f, e, streams, committer) = try await Self.openStreams(4)
        let value = String(repeating: "x", count: 100)
        var config = CompactionConfig()
        config.ssoMaxBytes = 4096
        config.splitBytes = 1024  // no stream reaches it in one run: ~150 bytes per batch
        try await Self.fill(e, streams, rounds: 4) { s, i in "\(value)\(s)-\(i)" }
        let written = try await Self.committedWALObjects(f)
        let first = try #require(try await e.compactOnce(config: config, now: 1_000))
        #expect(first.inputs == written && first.outputs == 1)
        let full = try await f.metadata.liveObjects(prefix: "", limit: 100)
        #expect(full.count == 1 && full[0].liveBytes >= config.ssoMaxBytes / 2, "one full SSO: \(full.map(\.liveBytes))")
        try await Self.fill(e, streams, rounds: 3) { s, i in "\(value)\(s)-\(i + 4)" }
        let more = try await f.store.list(prefix: "\(f.clusterId)/wal/").count - written
        try await Self.waitForCommits(f.metadata, 1 + more)
        let second = try #require(try await e.compactOnce(config: config, now: 2_000), "the small objects after the full SSO are compacted")
        #expect(second.inputs == more)
        for s in streams {
            #expect(try await Self.readAll(e, s).map(\.1) == (0..<7).map { "\(value)\(s)-\($0)" })
        }
        await e.shutdown()
        await committer.value
    }

    /// Compaction writes each output from the bytes its GETs brought, not from a copy of them:
    /// it holds one output's inputs in memory, not those and the output as well.
    @Test func compactionOutputsAreWrittenFromTheirInputs() async throws {
        let store = E.AddressRecordingStore()
        let f = try await E.fixture(store: store)
        let second = try await f.metadata.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let e = try await E.engine(f, config: Self.noCache)
        let committer = Task { await e.runCommitter() }
        let streams = [f.streamId, second]
        for s in streams { try await e.open(streamId: s) }
        try await Self.fill(e, streams, rounds: 4) { s, i in "\(s)-\(i)" }
        try await Self.waitForCommits(f.metadata, try await Self.committedWALObjects(f))
        let report = try #require(try await e.compactOnce(config: Self.mergeAny, now: 1_000))
        #expect(report.outputs == 1)
        let output = try #require(store.puts.withLockedValue { $0.last { !$0.key.contains("/wal/") } })
        let gets = store.gets.withLockedValue { $0 }
        #expect(output.parts.count == 9, "8 batches, then the index and footer")
        for part in output.parts.dropLast() {
            #expect(gets.contains { $0.contains(part.lowerBound) && $0.contains(part.upperBound - 1) }, "\(part) lies in a GET's answer")
        }
        for s in streams { #expect(try await Self.readAll(e, s).map(\.1) == (0..<4).map { "\(s)-\($0)" }) }
        await e.shutdown()
        await committer.value
    }

    /// Holds every GET until the test lets it go, and records which GETs were held together.
    final class HeldGetsStore: ForwardingStore {
        let base = InMemoryObjectStore()
        struct Held { var bytes: Int; var go: OneShot<Void> }
        let held = NIOLockedValueBox<[Held]>([])
        func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
            let go = OneShot<Void>()
            held.withLockedValue { $0.append(Held(bytes: range?.count ?? 0, go: go)) }
            await go.wait()
            return try await base.get(key, range: range)
        }
    }

    /// Compaction reads at most 16 MiB at once: four 6 MiB inputs are read two at a time
    /// (eight GETs at once, 24 MiB here, slowed the WAL uploads beside them on SeaweedFS).
    @Test func compactionKeepsAtMost16MiBOfGetsUnderWay() async throws {
        let store = HeldGetsStore()
        let f = try await E.fixture(store: store)
        let e = try await E.engine(f, config: E.oneFlush(Self.noCache))
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        let mib = String(repeating: "x", count: 1 << 20)
        for _ in 0..<4 { await E.appendTogether(e, f.streamId, Array(repeating: [mib], count: 6)) }
        #expect(try await Self.committedWALObjects(f) == 4)
        let done = NIOLockedValueBox(false)
        let compaction = Task {
            defer { done.withLockedValue { $0 = true } }
            return try await e.compactOnce(config: Self.mergeAny, now: 1_000)
        }
        var mostHeld = 0
        var released = 0
        while !done.withLockedValue({ $0 }) {
            // Lets the compaction start whatever GETs it will before counting them.
            try await Task.sleep(for: .milliseconds(100))
            let under = store.held.withLockedValue { Array($0[released...]) }
            guard let first = under.first else { continue }
            mostHeld = max(mostHeld, under.reduce(0) { $0 + $1.bytes })
            first.go.resume(())
            released += 1
        }
        let report = try #require(try await compaction.value)
        #expect(report.inputs == 4)
        #expect(mostHeld <= 16 << 20, "\(mostHeld) bytes of GETs under way at once")
        #expect(mostHeld > 6 << 20, "two GETs still run together")
        await e.shutdown()
        await committer.value
    }

    /// A few small SSOs wait for more (merging whenever two were there rewrote the merged SSO
    /// with every new WAL object: one more PUT per flush), until there are `minMergeObjects`
    /// of them or the oldest has waited `maxMergeDelayMs`; meanwhile no gather takes them.
    @Test func smallSSOsWaitForEnoughOfThemOrForTheirDelay() async throws {
        let (f, e, streams, committer) = try await Self.openStreams(2)
        try await Self.fill(e, streams, rounds: 3) { s, i in "\(s)-\(i)" }
        try await Self.waitForCommits(f.metadata, try await Self.committedWALObjects(f))
        var config = CompactionConfig()
        config.minMergeObjects = 5
        config.maxMergeDelayMs = 60_000
        #expect(try await e.compactOnce(config: config, now: 1_000) == nil, "three of five, and no gather")
        #expect(try await e.compactOnce(config: config, now: 30_000) == nil, "waited 29 s")
        try await Self.fill(e, streams, rounds: 3) { s, i in "\(s)-\(i + 3)" }
        let written = try await Self.committedWALObjects(f)
        try await Self.waitForCommits(f.metadata, written)
        #expect(try #require(try await e.compactOnce(config: config, now: 40_000)).inputs == written, "six of five")
        try await Self.fill(e, streams, rounds: 2) { s, i in "\(s)-\(i + 6)" }
        try await Self.waitForCommits(f.metadata, 1 + (try await f.store.list(prefix: "\(f.clusterId)/wal/").count) - written)
        #expect(try await e.compactOnce(config: config, now: 50_000) == nil, "three again: the merged SSO and two")
        #expect(try await e.compactOnce(config: config, now: 109_999) == nil)
        #expect(try #require(try await e.compactOnce(config: config, now: 110_000)).outputs == 1, "the oldest waited 60 s")
        for s in streams { #expect(try await Self.readAll(e, s).map(\.1) == (0..<8).map { "\(s)-\($0)" }) }
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
        async let compacted = e.compactOnce(config: Self.mergeAny, now: 0)
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
        #expect(try await other.compactOnce(config: Self.mergeAny, now: 0) != nil)
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

    /// Runs compaction until it has nothing to do; returns the runs' reports.
    static func compactAll(_ e: StreamEngine, _ config: CompactionConfig, now: Int64) async throws -> [CompactionReport] {
        var reports: [CompactionReport] = []
        while let r = try await e.compactOnce(config: config, now: now) {
            reports.append(r)
            if reports.count > 100 { Issue.record("compaction never settles"); break }
        }
        return reports
    }

    /// How many objects hold each stream's ranges.
    static func objectsPerStream(_ m: any MetadataStore) async throws -> [Int64: Int] {
        var out: [Int64: Int] = [:]
        for o in try await m.liveObjects(prefix: "", limit: 10_000) {
            for id in Set(o.ranges.map(\.streamId)) { out[id, default: 0] += 1 }
        }
        return out
    }

    /// Merged SSOs each hold a slice of every stream, so rows grow as objects x streams; a
    /// gather rewrites them so that each stream sits in one object. It waits while the SSOs
    /// not yet gathered hold fewer bytes than the gathered ones, until they stay unchanged for
    /// `gatherQuietMs`; once everything is gathered, compaction has nothing left to do.
    @Test(arguments: StoreKind.testable) func aGatherLeavesEachStreamInOneObject(kind: StoreKind) async throws {
        let (f, e, streams, committer) = try await Self.openStreams(8, kind)
        let value = String(repeating: "x", count: 100)
        var config = CompactionConfig()
        config.ssoMaxBytes = 4096  // a merged SSO holds ~3 rounds of all 8 streams
        config.splitBytes = 1 << 30
        config.gatherQuietMs = 60_000
        try await Self.fill(e, streams, rounds: 12) { s, i in "\(value)\(s)-\(i)" }
        _ = try await Self.committedWALObjects(f)

        // Merges, then one gather (nothing was gathered yet, so the merged SSOs outweigh it).
        let first = try await Self.compactAll(e, config, now: 1_000)
        #expect(first.count >= 5, "\(first)")
        var perStream = try await Self.objectsPerStream(f.metadata)
        #expect(perStream.count == 8 && perStream.values.allSatisfy { $0 == 1 }, "\(perStream)")
        let gathered = try await f.metadata.liveObjects(prefix: "", limit: 100)
        #expect(gathered.count >= 2 && gathered.allSatisfy { $0.key.contains("/data/sso/gathered/") }, "\(gathered.map(\.key))")
        #expect(gathered.reduce(0) { $0 + $1.ranges.count } <= streams.count + gathered.count)

        // A few more rounds: merged into one SSO, fewer bytes than the gathered ones, so no
        // gather until the quiet time has passed.
        try await Self.fill(e, streams, rounds: 3) { s, i in "\(value)\(s)-\(i + 12)" }
        try await Self.waitForCommits(f.metadata, gathered.count + 3)
        #expect(try await Self.compactAll(e, config, now: 2_000).count == 1, "two of the three new objects are merged")
        #expect(try await e.compactOnce(config: config, now: 2_000 + 59_999) == nil, "not quiet long enough")
        let fresh = try await f.metadata.liveObjects(prefix: "", limit: 100).filter { !$0.key.contains("/gathered/") }
        #expect(fresh.count == 2 && fresh.allSatisfy { Set($0.ranges.map(\.streamId)).count == 8 }, "\(fresh.map(\.key))")
        let last = try await Self.compactAll(e, config, now: 2_000 + 60_000)
        #expect(last.count == 1 && last[0].inputs == gathered.count + 2, "\(last)")
        perStream = try await Self.objectsPerStream(f.metadata)
        #expect(perStream.values.allSatisfy { $0 == 1 }, "\(perStream)")
        #expect(try await e.compactOnce(config: config, now: 1_000_000) == nil, "nothing left to do")

        for s in streams {
            #expect(try await Self.readAll(e, s).map(\.1) == (0..<15).map { "\(value)\(s)-\($0)" })
        }
        var gc = GarbageCollectionConfig()
        gc.graceMs = 0
        try await e.collectGarbage(now: 2_000_000, config: gc)
        #expect(try await f.store.list(prefix: "").count == (try await f.metadata.liveObjects(prefix: "", limit: 100).count))
        await e.shutdown()
        await committer.value
        let e2 = try await E.engine(f, config: Self.noCache)
        for s in streams {
            try await e2.open(streamId: s)
            #expect(try await Self.readAll(e2, s).map(\.1) == (0..<15).map { "\(value)\(s)-\($0)" })
        }
    }

    /// A gather's plan: stream runs of `splitBytes` go to stream objects cut at
    /// `ssoMaxBytes`, the rest fill bands in stream order, and a stream starts a new band
    /// rather than straddle two when it fits in one.
    @Test func aGatherPlanBandsStreamsInOrder() throws {
        func range(_ s: Int64, _ start: Int64, _ size: Int, _ key: String, _ position: Int) -> StreamRange {
            StreamRange(streamId: s, epoch: 1, startOffset: start, endOffset: start + 1, objectKey: key, position: position, size: size, minTimestamp: 0, maxTimestamp: 0)
        }
        var a = StoredObject(key: "a", size: 10_000, ranges: [])
        var b = StoredObject(key: "b", size: 10_000, ranges: [])
        var position = 0
        for s in Int64(1)...4 {  // streams 1-4: 300 bytes in a, 300 in b (offsets 0 and 1)
            a.ranges.append(range(s, 0, 300, "a", position))
            b.ranges.append(range(s, 1, 300, "b", position))
            position += 300
        }
        a.ranges.append(range(9, 0, 800, "a", position))  // stream 9: 1600 bytes: split out
        b.ranges.append(range(9, 1, 800, "b", position))
        var config = CompactionConfig()
        config.ssoMaxBytes = 1500
        config.splitBytes = 1200
        let c = StoredObject(key: "c", size: 10_000, ranges: [range(10, 0, 500, "c", 0)])
        #expect(CompactionPlan.gather(ungathered: [a], gathered: [b, c], quiet: false, config: config) == nil, "2000 fresh bytes < 2500 gathered")
        let plan = try #require(CompactionPlan.gather(ungathered: [a, b], gathered: [], quiet: false, config: config))
        #expect(plan.outputs.map(\.kind) == [.gathered, .streamObject, .streamObject, .gathered])
        #expect(plan.outputs[0].ranges.map(\.streamId) == [1, 1, 2, 2], "stream 3 starts the next band: 1800 > 1500")
        #expect(plan.outputs[1].ranges.map(\.objectKey) == ["a"] && plan.outputs[2].ranges.map(\.objectKey) == ["b"], "cut at ssoMaxBytes")
        #expect(plan.outputs[3].ranges.map(\.streamId) == [3, 3, 4, 4])
        #expect(CompactionPlan.gather(ungathered: [a, b], gathered: [], quiet: true, config: config) != nil)
    }

    /// A stream's run in an object is one metadata row however many blocks it spans, and a
    /// read that starts inside the run fetches the block that holds its offset (found in the
    /// object's index, read once), not the run from its start.
    @Test func aRunOfManyBlocksIsOneRowAndAReadInsideItFetchesOneBlock() async throws {
        let store = CountingStore()
        let f = try await E.fixture(.sqlite, store: store)
        var c = Self.noCache
        c.readaheadMaxBytes = 512 << 10
        let e = try await E.engine(f, config: c)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        let value = String(repeating: "r", count: 4000)
        for i in 0..<6 {  // 100 records of 4 KB per batch: ~400 KB, each acked alone
            _ = await E.append(e, f.streamId, (0..<100).map { "\(i)-\($0)-\(value)" })
        }
        try await Self.waitForCommits(f.metadata, 6)
        var config = CompactionConfig()
        config.splitBytes = 1 << 20
        #expect(try await e.compactOnce(config: config, now: 0)?.outputs == 1)
        let rows = try await f.metadata.ranges(streamId: f.streamId)
        #expect(rows.count == 1 && rows[0].size > 2 * ObjectFormat.blockSize, "one row for the stream object's run: \(rows.map(\.size))")
        let key = try #require(rows.first?.objectKey)
        let parsed = try ObjectFormat.parse(try await store.get(key, range: nil))
        #expect(parsed.entries.count >= 3, "the run spans blocks")

        store.resetGets()
        let r = try await e.read(streamId: f.streamId, offset: 450, maxBytes: 1)
        let first = try #require(r.batches.first.flatMap { RecordBatchHeader(peeking: $0) })
        #expect(first.baseOffset <= 450 && first.lastOffset >= 450)
        let gets = store.gets.filter { $0.key == key }
        #expect(gets.count >= 2 && gets.allSatisfy { ($0.range?.lowerBound ?? 0) >= ObjectFormat.blockSize },
                "the index and the block holding offset 450, not the first block: \(gets.map(\.range))")
        // Another read inside the run: the index is not read again.
        let size = try #require(try await store.base.head(key)).size
        _ = try await e.read(streamId: f.streamId, offset: 120, maxBytes: 1)
        let tails = store.gets.filter { $0.key == key && $0.range?.upperBound == size }
        #expect(tails.count == 1, "\(store.gets.map(\.range))")
        await e.shutdown()
        await committer.value
    }

    /// Partitions whose runs share one merged SSO, read at once from a cold cache (as one
    /// fetch of many partitions does), each get their own records, in order.
    @Test func concurrentReadsOfRunsInOneObjectGetTheirOwnRecords() async throws {
        let (f, e, streams, committer) = try await Self.openStreams(8)
        let value = String(repeating: "q", count: 4000)
        try await Self.fill(e, streams, rounds: 4) { s, round in (0..<100).map { "\(s)/\(round)/\($0)/\(value)" } }
        _ = try await Self.committedWALObjects(f)
        var config = Self.mergeAny
        config.splitBytes = 1 << 30
        #expect(try await e.compactOnce(config: config, now: 0)?.outputs == 1)
        let rows = try await f.metadata.liveObjects(prefix: "", limit: 10)
        #expect(rows.count == 1 && rows[0].ranges.allSatisfy { $0.size > ObjectFormat.blockSize }, "\(rows.map { $0.ranges.map(\.size) })")

        let e2 = try await E.engine(f, config: Self.noCache)  // a cold cache
        for s in streams { try await e2.open(streamId: s) }
        try await withThrowingTaskGroup(of: Void.self) { g in
            for s in streams {
                g.addTask {
                    var offset: Int64 = 0
                    var seen: [String] = []
                    while offset < 400 {
                        let r = try await e2.read(streamId: s, offset: offset, maxBytes: 1 << 20)
                        for b in r.batches {
                            let h = RecordBatchHeader(peeking: b)!
                            for rec in try Record.decodeAll(batch: b) where h.baseOffset + Int64(rec.offsetDelta) >= offset {
                                seen.append(String(String(buffer: rec.value!).prefix(while: { $0 != "/" })))
                            }
                            offset = h.lastOffset + 1
                        }
                    }
                    #expect(seen.count == 400 && seen.allSatisfy { $0 == "\(s)" }, "stream \(s) read \(Set(seen))")
                }
            }
            try await g.waitForAll()
        }
        await e.shutdown()
        await committer.value
    }
}
