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

/// The storage engine's flush, commit and recovery, on an in-memory bucket and a real metadata
/// store: SQLite, and PostgreSQL when TERN_TEST_POSTGRES_URL is set.
@Suite struct EngineTests {
    struct Fixture {
        let store: any ObjectStore
        let metadata: any MetadataStore
        let clusterId: String
        let streamId: Int64
    }

    static func fixture(_ kind: StoreKind = .sqlite, store: any ObjectStore = InMemoryObjectStore()) async throws -> Fixture {
        let metadata = try await TestDatabase.fresh(kind).open()
        let (cluster, _) = try await metadata.bootstrap(nodeId: 1)
        let topic = try await metadata.createTopic(name: "t", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:])
        return Fixture(store: store, metadata: metadata, clusterId: cluster, streamId: topic.streamIds[0])
    }

    static func engine(_ f: Fixture, config: StorageConfig = StorageConfig()) async throws -> StreamEngine {
        let (_, epoch) = try await f.metadata.bootstrap(nodeId: 1)
        return StreamEngine(config: config, objectStore: f.store, metadata: f.metadata, nodeId: 1, clusterId: f.clusterId,
                            brokerEpoch: epoch, loop: MultiThreadedEventLoopGroup.singleton.next(), logger: Logger(label: "test"))
    }

    static func batch(_ values: [String], producerId: Int64 = -1, epoch: Int16 = -1, sequence: Int32 = -1, ts: Int64 = 1000) -> (ByteBuffer, RecordBatchHeader) {
        var b = RecordBatchBuilder(baseTimestamp: ts)
        b.producerId = producerId
        b.producerEpoch = epoch
        b.baseSequence = sequence
        for (i, v) in values.enumerated() { b.append(key: nil, value: ByteBuffer(string: v), timestampDelta: Int64(i)) }
        let bytes = b.build()
        return (bytes, try! RecordBatch.validateSingle(bytes))
    }

    static func append(_ e: StreamEngine, _ s: Int64, _ values: [String], producerId: Int64 = -1, sequence: Int32 = -1) async -> Result<AppendResult, AppendError> {
        let (b, h) = batch(values, producerId: producerId, epoch: producerId >= 0 ? 0 : -1, sequence: sequence)
        return await e.append(streamId: s, batch: b, header: h, timeout: .seconds(10)).result()
    }

    /// Appends one batch per element back to back, flushes, and waits for every ack: one WAL
    /// object for them all when the engine's flush timer is long (`oneFlush`); a short timer
    /// can fire between the appends on a busy machine (CI saw it).
    static func appendTogether(_ e: StreamEngine, _ s: Int64, _ batches: [[String]]) async {
        var tickets: [StreamEngine.AppendTicket] = []
        for values in batches {
            let (b, h) = batch(values)
            tickets.append(await e.append(streamId: s, batch: b, header: h, timeout: .seconds(10)))
        }
        e.flush()
        for t in tickets { _ = await t.result() }
    }

    /// `config` with no flush timer that fires within a test (the interval far off, the idle
    /// flush off: on a loaded CI machine a 10 ms pause between two appends cut an object):
    /// flushes come from `flush()` and from `wal.upload.bytes`.
    static func oneFlush(_ config: StorageConfig = StorageConfig()) -> StorageConfig {
        var c = config
        c.uploadIntervalMs = 600_000
        c.uploadIdleMs = 0
        return c
    }

    static func values(_ r: ReadResult) throws -> [String] {
        try r.batches.flatMap { try Record.decodeAll(batch: $0).map { String(buffer: $0.value!) } }
    }

    /// Batches read from an object come with one slice of the block they lie in, which a
    /// fetch answers with instead of copying the batches together.
    @Test func batchesReadFromAnObjectAreOneSliceOfIt() async throws {
        let f = try await Self.fixture()
        let e = try await Self.engine(f, config: Self.oneFlush(CompactionTests.noCache))
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        await Self.appendTogether(e, f.streamId, [["a", "b"], ["c"], ["d", "e", "f"]])
        try await CompactionTests.waitForCommits(f.metadata, try await CompactionTests.committedWALObjects(f))
        func base(_ b: ByteBuffer) -> UnsafeRawPointer? { b.withUnsafeReadableBytes { $0.baseAddress } }
        for (offset, batches) in [(Int64(0), 3), (2, 2), (3, 1)] {
            let r = try await e.read(streamId: f.streamId, offset: offset, maxBytes: 1 << 20)
            #expect(r.batches.count == batches)
            #expect(r.records == r.batches.reduce(into: ByteBuffer()) { $0.writeImmutableBuffer($1) })
            #expect(base(r.records) == base(r.batches[0]), "a slice of the block, not a copy")
            #expect(r.parts.count == 1)
        }
        await e.shutdown()
        await committer.value
    }

    /// Batches that lie across cache blocks come as slices of each block, in order (a batch
    /// may run from one into the next): nothing is copied together for a fetch.
    @Test func batchesAcrossBlocksComeAsSlicesOfEachBlock() async throws {
        let f = try await Self.fixture()
        var config = Self.oneFlush(CompactionTests.noCache)
        config.blockCacheBlockBytes = 256
        let e = try await Self.engine(f, config: config)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        let values = (0..<12).map { i in String(repeating: Character(UnicodeScalar(UInt8(97 + i))), count: 100 + 37 * i) }
        await Self.appendTogether(e, f.streamId, values.map { [$0] })
        try await CompactionTests.waitForCommits(f.metadata, try await CompactionTests.committedWALObjects(f))
        for offset in [Int64(0), 5, 11] {
            let r = try await e.read(streamId: f.streamId, offset: offset, maxBytes: 1 << 20)
            #expect(try Self.values(r) == Array(values[Int(offset)...]))
            #expect(r.parts.count > 1 && r.parts.allSatisfy { $0.readableBytes <= 256 }, "a slice of each block, not one copy")
            #expect(r.records.readableBytes == r.bytes && r.parts.readableBytes == r.bytes)
        }
        await e.shutdown()
        await committer.value
    }

    /// Appended batches are copied one after another into shared slabs, not each into storage
    /// of its own rounded up to a power of two (a 64 KiB batch took 128 KiB); each copy is
    /// stamped with its offset, and a batch over 1 MiB gets storage of its own.
    @Test func appendedBatchesArePackedIntoSlabs() async throws {
        let f = try await Self.fixture()
        let e = try await Self.engine(f)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        let big = String(repeating: "x", count: 65_536)
        let huge = String(repeating: "y", count: 1_100_000)
        var sizes: [Int] = []
        for values in [[big], [big], ["a", "b"], [huge], [big]] {
            let (b, h) = Self.batch(values)
            sizes.append(b.readableBytes)
            _ = await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(10)).result()
        }
        let r = try await e.read(streamId: f.streamId, offset: 0, maxBytes: 8 << 20)
        #expect(r.batches.map(\.readableBytes) == sizes)
        #expect(r.batches.compactMap { RecordBatchHeader(peeking: $0)?.baseOffset } == [0, 1, 2, 4, 5])
        func base(_ b: ByteBuffer) -> UnsafeRawPointer { b.withUnsafeReadableBytes { $0.baseAddress! } }
        #expect(base(r.batches[1]) == base(r.batches[0]) + sizes[0], "one after another in one slab")
        #expect(base(r.batches[2]) == base(r.batches[1]) + sizes[1])
        #expect(base(r.batches[4]) == base(r.batches[2]) + sizes[2], "the batch over 1 MiB is elsewhere")
        #expect(base(r.batches[3]) != base(r.batches[2]) + sizes[2])
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func appendIsAckedAfterOneObjectForAllStreams(kind: StoreKind) async throws {
        let f = try await Self.fixture(kind)
        let second = try await f.metadata.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let e = try await Self.engine(f)
        try await e.open(streamId: f.streamId)
        try await e.open(streamId: second)
        async let a = Self.append(e, f.streamId, ["a", "b"])
        async let b = Self.append(e, second, ["c"])
        let (ra, rb) = await (a, b)
        #expect(try ra.get().baseOffset == 0)
        #expect(try rb.get().baseOffset == 0)
        let objects = try await f.store.list(prefix: "")
        #expect(objects.count == 1, "both partitions' batches share one WAL object")
        #expect(e.offsets(streamId: f.streamId)?.highWatermark == 2)
    }

    @Test(arguments: StoreKind.testable) func nothingIsVisibleBeforeItsObjectIsWritten(kind: StoreKind) async throws {
        let f = try await Self.fixture(kind)
        let e = try await Self.engine(f, config: { var c = StorageConfig(); c.uploadIntervalMs = 60_000; return c }())
        try await e.open(streamId: f.streamId)
        let (b, h) = Self.batch(["x"])
        let ticket = await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(30))
        #expect(e.offsets(streamId: f.streamId)?.highWatermark == 0)
        #expect(try await e.read(streamId: f.streamId, offset: 0, maxBytes: 1 << 20).batches.isEmpty)
        #expect(try await f.store.list(prefix: "").isEmpty)
        e.flush()
        #expect(try await ticket.result().get().baseOffset == 0)
        #expect(try Self.values(try await e.read(streamId: f.streamId, offset: 0, maxBytes: 1 << 20)) == ["x"])
    }

    @Test(arguments: StoreKind.testable) func readsFallBackToObjectsAfterRestart(kind: StoreKind) async throws {
        let f = try await Self.fixture(kind)
        let e = try await Self.engine(f)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        for i in 0..<5 { _ = try await Self.append(e, f.streamId, ["v\(i)"]).get() }
        await e.shutdown()
        await committer.value

        let e2 = try await Self.engine(f)
        let opened = try await e2.open(streamId: f.streamId)
        #expect(opened.highWatermark == 5)
        #expect(opened.epoch == 2, "every open raises the epoch")
        var got: [String] = []
        var offset: Int64 = 0
        while offset < 5 {
            let r = try await e2.read(streamId: f.streamId, offset: offset, maxBytes: 1)
            got += try Self.values(r)
            offset += Int64(try r.batches.map { try Record.decodeAll(batch: $0).count }.reduce(0, +))
        }
        #expect(got == ["v0", "v1", "v2", "v3", "v4"])
        #expect(e2.endOffset(forEpoch: 1, streamId: f.streamId)! == (1, 5))
        #expect(e2.endOffset(forEpoch: 2, streamId: f.streamId)! == (2, 5))
    }

    @Test(arguments: StoreKind.testable) func uncommittedObjectsAreRecovered(kind: StoreKind) async throws {
        let f = try await Self.fixture(kind)
        let e = try await Self.engine(f)
        // No committer runs: the objects are written and acked but never committed,
        // as when a broker dies right after an upload.
        try await e.open(streamId: f.streamId)
        _ = try await Self.append(e, f.streamId, ["a"]).get()
        _ = try await Self.append(e, f.streamId, ["b", "c"], producerId: 7, sequence: 0).get()

        let e2 = try await Self.engine(f)
        #expect(try await e2.recover() == 2)
        let opened = try await e2.open(streamId: f.streamId)
        #expect(opened.highWatermark == 3)
        #expect(try Self.values(try await e2.read(streamId: f.streamId, offset: 0, maxBytes: 1 << 20)) == ["a"])
        // The producer state came back with the recovered object: a retry is a duplicate.
        let retry = try await Self.append(e2, f.streamId, ["b", "c"], producerId: 7, sequence: 0).get()
        #expect(retry.baseOffset == 1)
        #expect(e2.offsets(streamId: f.streamId)?.highWatermark == 3)
    }

    @Test(arguments: StoreKind.testable) func offsetsByTimestampFromCacheAndObjects(kind: StoreKind) async throws {
        let meter = ObjectStoreMeter()
        let f = try await Self.fixture(kind, store: MeteredObjectStore(base: InMemoryObjectStore(), meter: meter))
        var c = StorageConfig()
        c.logCacheBytes = 0  // force reads of uploaded data back from objects
        let e = try await Self.engine(f, config: c)
        try await e.open(streamId: f.streamId)
        for (i, ts) in [Int64(1000), 2000, 9000, 3000].enumerated() {
            let (b, h) = Self.batch(["r\(i)a", "r\(i)b"], ts: ts)  // records at ts and ts+1
            _ = try await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(10)).result().get()
        }
        #expect(try await e.offset(forTimestamp: 1001, streamId: f.streamId)! == (1, 1001))
        #expect(try await e.offset(forTimestamp: 1500, streamId: f.streamId)! == (2, 2000))
        #expect(try await e.offset(forTimestamp: 2500, streamId: f.streamId)! == (4, 9000))
        #expect(try await e.offset(forTimestamp: 9002, streamId: f.streamId) == nil)
        #expect(try await e.offsetOfMaxTimestamp(streamId: f.streamId)! == (5, 9001))
        #expect((meter.snapshot()[.get]?.requests ?? 0) > 0, "read back from objects, not the cache")
    }

    @Test(arguments: StoreKind.testable) func fencedBrokerDoesNotAck(kind: StoreKind) async throws {
        let f = try await Self.fixture(kind)
        let e = try await Self.engine(f)
        try await e.open(streamId: f.streamId)
        _ = try await Self.append(e, f.streamId, ["a"]).get()
        // Whoever takes over writes the fence key for this broker epoch.
        let epochs = try await f.store.list(prefix: "\(f.clusterId)/wal/1/").map { $0.key.split(separator: "/")[3] }
        try await f.store.put("\(f.clusterId)/meta/fence/1/\(Int(epochs[0])!)", ByteBuffer(), ifNoneMatch: true)
        let r = await Self.append(e, f.streamId, ["b"])
        #expect(r == .failure(.fenced))
        #expect(e.offsets(streamId: f.streamId)?.highWatermark == 1)
    }

    @Test(arguments: StoreKind.testable) func idempotentRetriesGetTheirOriginalOffsets(kind: StoreKind) async throws {
        let f = try await Self.fixture(kind)
        let e = try await Self.engine(f)
        try await e.open(streamId: f.streamId)
        #expect(try await Self.append(e, f.streamId, ["a", "b"], producerId: 3, sequence: 0).get().baseOffset == 0)
        #expect(try await Self.append(e, f.streamId, ["c"], producerId: 3, sequence: 2).get().baseOffset == 2)
        #expect(try await Self.append(e, f.streamId, ["a", "b"], producerId: 3, sequence: 0).get().baseOffset == 0)
        #expect(await Self.append(e, f.streamId, ["d"], producerId: 3, sequence: 5) == .failure(.rejected(.outOfOrderSequenceNumber)))
        #expect(e.offsets(streamId: f.streamId)?.highWatermark == 3)
    }

    /// Records where the bytes of each PUT body and GET answer lie in memory.
    final class AddressRecordingStore: ForwardingStore {
        let base = InMemoryObjectStore()
        let puts = NIOLockedValueBox<[(key: String, parts: [Range<UInt>])]>([])
        let gets = NIOLockedValueBox<[Range<UInt>]>([])
        static func span(_ b: ByteBuffer) -> Range<UInt> {
            b.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) ..< UInt(bitPattern: $0.baseAddress) + UInt($0.count) }
        }
        func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
            puts.withLockedValue { $0.append((key, body.parts.map(Self.span))) }
            try await base.put(key, body, ifNoneMatch: ifNoneMatch)
        }
        func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
            // A copy, as a real store's answer is: the stored object's memory is not the GET's.
            let body = ByteBuffer(bytes: try await base.get(key, range: range).readableBytesView)
            gets.withLockedValue { $0.append(Self.span(body)) }
            return body
        }
    }

    /// A WAL object is written from the appended batches where the LogCache holds them, not
    /// from a copy of them all (which took one more buffer of up to a flush per upload).
    @Test func walObjectsAreWrittenFromTheAppendedBatches() async throws {
        let store = AddressRecordingStore()
        let f = try await Self.fixture(store: store)
        let e = try await Self.engine(f, config: Self.oneFlush())
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        await Self.appendTogether(e, f.streamId, [["a", "b"], ["c"], ["d", "e", "f"]])
        let cached = try await e.read(streamId: f.streamId, offset: 0, maxBytes: 1 << 20).batches.map(AddressRecordingStore.span)
        let walPuts = store.puts.withLockedValue { $0.filter { $0.key.contains("/wal/") } }
        let dataParts = walPuts.flatMap { $0.parts.dropLast() }  // the last part is the index and footer
        #expect(cached.count == 3)
        #expect(dataParts == cached, "the cached batches themselves")
        await e.shutdown()
        await committer.value
    }

    /// Records when each WAL object's PUT began.
    final class PutTimesStore: ForwardingStore {
        let base = InMemoryObjectStore()
        let walPuts = NIOLockedValueBox<[ContinuousClock.Instant]>([])
        func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
            if key.contains("/wal/") { walPuts.withLockedValue { $0.append(.now) } }
            try await base.put(key, body, ifNoneMatch: ifNoneMatch)
        }
    }

    /// A WAL object is flushed `wal.upload.interval.ms` after its first append. The timer
    /// armed for the object before, which was flushed by size, used to fire into the next
    /// one and cut it short (objects at 60 MB/s averaged 6.4 MB, not 8 MiB).
    @Test(arguments: [false, true]) func aSizeFlushedObjectsTimerDoesNotCutTheNextShort(fileWAL: Bool) async throws {
        let store = PutTimesStore()
        let f = try await Self.fixture(store: store)
        var c = StorageConfig()
        c.uploadIntervalMs = 1_000
        c.uploadBytes = 64 << 10
        let e = fileWAL ? try await FileWALTests.engine(f, dir: FileWALTests.directory(), config: c) : try await Self.engine(f, config: c)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        func putsAfter(_ n: Int) async throws -> [ContinuousClock.Instant] {
            for _ in 0..<1_000 where store.walPuts.withLockedValue({ $0.count }) < n { try await Task.sleep(for: .milliseconds(10)) }
            return store.walPuts.withLockedValue { $0 }
        }
        let (small, smallHeader) = Self.batch(["a"])
        let first = await e.append(streamId: f.streamId, batch: small, header: smallHeader, timeout: .seconds(30))  // arms the timer
        if fileWAL { _ = await first.result() }  // synced on its own: the file WAL arms the timer once synced
        _ = await Self.append(e, f.streamId, [String(repeating: "x", count: 70_000)])  // flushed by size
        _ = await first.result()
        #expect(try await putsAfter(1).count == 1)
        try await Task.sleep(for: .milliseconds(400))
        let armed = ContinuousClock.now
        _ = await Self.append(e, f.streamId, ["b"])  // arms the next object's timer
        let puts = try await putsAfter(2)
        try #require(puts.count == 2)
        #expect(puts[1] - armed >= .milliseconds(950), "flushed \(puts[1] - armed) after its first append")
        await e.shutdown()
        await committer.value
    }

    /// With no upload under way, a buffer of at least `wal.upload.bytes / 8` is flushed once
    /// appends stop for `wal.upload.idle.ms`, not `wal.upload.interval.ms` after its first
    /// append: producers whose requests all wait in it send nothing more (at half load the
    /// client's p99 was twice the broker's). A smaller buffer waits for the interval, appends
    /// that go on put the flush off, and an upload under way holds it until it is done.
    @Test func aBufferThatStopsGrowingIsFlushedOnceIdle() async throws {
        let store = CountingStore(held: [1])
        let (e, f, committer) = try await Self.idleEngine(store, idleMs: 200)
        let large = String(repeating: "x", count: 10_000)
        func append(_ v: String) async -> StreamEngine.AppendTicket {
            let (b, h) = Self.batch([v])
            return await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(30))
        }

        let small = await append("small")
        try await Task.sleep(for: .milliseconds(500))
        #expect(store.walPutsBegun == 0, "under wal.upload.bytes / 8: not flushed when idle")
        let first = await append(large)
        let appended = ContinuousClock.now
        #expect(try await first.result().get().baseOffset == 1)
        #expect(try await small.result().get().baseOffset == 0)
        #expect(ContinuousClock.now - appended >= .milliseconds(150))  // quiet from inside the append
        #expect(store.walPutsBegun == 1)

        // Upload 1 is held: what is appended meanwhile waits for it, however long it idles.
        let held = await append(large)
        e.flush()
        let behind = await append(large)
        try await Task.sleep(for: .milliseconds(500))
        #expect(store.walPutsBegun == 2, "flushed when idle while an upload was under way")
        store.release(1)
        #expect(try await held.result().get().baseOffset == 2)
        #expect(try await behind.result().get().baseOffset == 3, "not flushed once the upload was done")
        #expect(store.walPutsBegun == 3)
        await e.shutdown()
        await committer.value
    }

    /// Appends 100 ms apart for 3 s put a 2 s idle flush off: one WAL object for all of
    /// them, once they stopped. (The interval, 25 s here, flushes what a stall of the test
    /// machine might leave under 8 KiB, so that such a stall fails only the object count;
    /// CI once took 4-5 s for 30 sleeps of 50 ms, and a 5 s interval flushed first.)
    @Test func appendsThatGoOnPutTheIdleFlushOff() async throws {
        let store = CountingStore()
        let (e, f, committer) = try await Self.idleEngine(store, idleMs: 2_000, intervalMs: 25_000)
        var tickets: [StreamEngine.AppendTicket] = []
        let started = ContinuousClock.now
        for i in 0..<31 {
            if i > 0 { try await Task.sleep(for: .milliseconds(100)) }
            let (b, h) = Self.batch([i == 0 ? String(repeating: "x", count: 10_000) : "\(i)"])
            tickets.append(await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(60)))
        }
        let last = ContinuousClock.now
        for (i, t) in tickets.enumerated() { #expect(try await t.result().get().baseOffset == Int64(i)) }
        let waited = ContinuousClock.now - last
        // The quiet time runs from inside the last append, a moment before `last`.
        #expect(waited >= .milliseconds(1_900), "acked \(waited) after the last append")
        #expect(ContinuousClock.now - started < .seconds(25), "flushed by the interval, not when idle")
        #expect(store.walPutsBegun == 1, "flushed while appends went on")
        await e.shutdown()
        await committer.value
    }

    /// An engine flushed when idle from 8 KiB, its interval by default never within a test.
    static func idleEngine(_ store: CountingStore, idleMs: Int, intervalMs: Int = 600_000) async throws -> (StreamEngine, Fixture, Task<Void, Never>) {
        let f = try await Self.fixture(store: store)
        var c = StorageConfig()
        c.uploadIntervalMs = intervalMs
        c.uploadBytes = 64 << 10
        c.uploadIdleMs = idleMs
        let e = try await Self.engine(f, config: c)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        return (e, f, committer)
    }

    @Test(arguments: StoreKind.testable) func aRetriedBatchIsNotAckedBeforeItsOriginal(kind: StoreKind) async throws {
        let gated = CountingStore(held: [0, 1])
        let f = try await Self.fixture(kind, store: gated)
        let other = try await f.metadata.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        var c = StorageConfig()
        c.uploadIntervalMs = 60_000  // flush only when told
        let e = try await Self.engine(f, config: c)
        try await e.open(streamId: f.streamId)
        try await e.open(streamId: other)
        let (b0, h0) = Self.batch(["other"])
        let first = await e.append(streamId: other, batch: b0, header: h0, timeout: .seconds(30))
        e.flush()  // upload 0 (held): the other stream's offset 0
        let (b1, h1) = Self.batch(["mine"], producerId: 9, epoch: 0, sequence: 0)
        let original = await e.append(streamId: f.streamId, batch: b1, header: h1, timeout: .seconds(30))
        e.flush()  // upload 1 (held): this stream's offset 0
        // A retry of the same batch while both uploads are in flight.
        let retry = await e.append(streamId: f.streamId, batch: b1, header: h1, timeout: .seconds(30))
        gated.release(0)
        #expect(try await first.result().get().baseOffset == 0)
        let early = OneShot<Bool>()
        Task { _ = await retry.result(); early.resume(true) }
        Task { try await Task.sleep(for: .milliseconds(300)); early.resume(false) }
        #expect(await early.wait() == false, "the retry was acked while its original was not durable")
        gated.release(1)
        #expect(try await original.result().get().baseOffset == 0)
    }

    @Test(arguments: StoreKind.testable) func slowUploadsTimeOutWithoutLosingOrder(kind: StoreKind) async throws {
        let slow = FaultInjectingObjectStore(base: InMemoryObjectStore(), faults: [.put: .init(delayMs: 500)])
        let f = try await Self.fixture(kind, store: slow)
        let e = try await Self.engine(f)
        try await e.open(streamId: f.streamId)
        let (b, h) = Self.batch(["late"])
        let r = await e.append(streamId: f.streamId, batch: b, header: h, timeout: .milliseconds(100)).result()
        #expect(r == .failure(.timedOut))
        // The batch is still written, in order.
        #expect(try await Self.append(e, f.streamId, ["next"]).get().baseOffset == 1)
    }

    @Test(arguments: StoreKind.testable) func backpressureWaitsInsteadOfFailing(kind: StoreKind) async throws {
        let slow = FaultInjectingObjectStore(base: InMemoryObjectStore(), faults: [.put: .init(delayMs: 200)])
        let f = try await Self.fixture(kind, store: slow)
        var c = StorageConfig()
        c.maxUnflushedBytes = 1 << 20
        c.uploadBytes = 64 << 10
        let e = try await Self.engine(f, config: c)
        try await e.open(streamId: f.streamId)
        let big = String(repeating: "x", count: 100_000)
        var tickets: [StreamEngine.AppendTicket] = []
        for _ in 0..<30 {
            let (b, h) = Self.batch([big])
            tickets.append(await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(30)))
        }
        for (i, t) in tickets.enumerated() { #expect(try await t.result().get().baseOffset == Int64(i)) }
    }
}

@Suite struct ObjectFormatTests {
    @Test func buildAndParse() throws {
        var batches: [ObjectFormat.Batch] = []
        for (stream, offset) in [(Int64(9), Int64(0)), (Int64(2), Int64(10)), (Int64(9), Int64(1))] {
            var (b, h) = EngineTests.batch(["v"], ts: 500 + offset)
            h.baseOffset = offset
            RecordBatch.stamp(&b, baseOffset: offset, leaderEpoch: 1)
            batches.append(.init(streamId: stream, epoch: 1, header: h, bytes: b))
        }
        let (object, entries) = ObjectFormat.build(batches, superseded: ["old/one"])
        let parsed = try ObjectFormat.parse(object)
        #expect(parsed.entries == entries)
        #expect(parsed.superseded == ["old/one"])
        #expect(entries.map(\.streamId) == [2, 9], "streams sorted by id")
        #expect(entries[1].startOffset == 0 && entries[1].endOffset == 2)
        #expect(entries[1].minTimestamp == 500 && entries[1].maxTimestamp == 501)
        let block = object.getSlice(at: entries[1].position, length: entries[1].size)!
        #expect(RecordBatch.split(block).map(\.header.baseOffset) == [0, 1])
    }

    @Test func garbageIsRefused() {
        #expect(throws: ObjectFormat.FormatError.self) { try ObjectFormat.parse(ByteBuffer(bytes: Array(repeating: 1, count: 100))) }
    }
}

@Suite struct ProducerStateTests {
    func header(pid: Int64, epoch: Int16, seq: Int32, count: Int32 = 1, base: Int64 = 0) -> RecordBatchHeader {
        var (_, h) = EngineTests.batch(Array(repeating: "v", count: Int(count)), producerId: pid, epoch: epoch, sequence: seq)
        h.baseOffset = base
        return h
    }

    @Test func rules() {
        var t = ProducerStateTable(streamId: 1)
        #expect(t.check(header(pid: 1, epoch: 0, seq: 17)) == .accept, "unknown producers may start anywhere")
        t.record(header(pid: 1, epoch: 0, seq: 0, count: 2, base: 0))
        #expect(t.check(header(pid: 1, epoch: 0, seq: 2)) == .accept)
        #expect(t.check(header(pid: 1, epoch: 0, seq: 3)) == .reject(.outOfOrderSequenceNumber))
        #expect(t.check(header(pid: 1, epoch: 0, seq: 0, count: 2)) == .duplicate(baseOffset: 0))
        #expect(t.check(header(pid: 1, epoch: 1, seq: 0)) == .accept, "a new epoch restarts at 0")
        #expect(t.check(header(pid: 1, epoch: 1, seq: 4)) == .reject(.outOfOrderSequenceNumber))
        t.record(header(pid: 1, epoch: 1, seq: 0, base: 2))
        #expect(t.check(header(pid: 1, epoch: 0, seq: 1)) == .reject(.invalidProducerEpoch))
        for i in 1...6 { t.record(header(pid: 1, epoch: 1, seq: Int32(i), base: Int64(2 + i))) }
        #expect(t.entries[1]!.batches.count == 5, "only the last five batches are kept")
        #expect(t.check(header(pid: 1, epoch: 1, seq: 1)) == .reject(.outOfOrderSequenceNumber))
        #expect(t.check(header(pid: 1, epoch: 1, seq: 6)) == .duplicate(baseOffset: 8))
    }
}

/// Uploads finish out of order (several in flight); their commits must still reach the
/// metadata store in WAL order, or the store refuses a range that starts past the stream's
/// end and the object is dropped from it.
@Suite struct CommitOrderTests {
    /// PUTs that take a random 0-2 ms, so that uploads in flight together finish in any order.
    struct Jittery: ForwardingStore {
        let base = InMemoryObjectStore()
        func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
            try await Task.sleep(for: .microseconds(Int.random(in: 0...2000)))
            try await base.put(key, body, ifNoneMatch: ifNoneMatch)
        }
    }

    /// Five rounds: without the ordering, one round in two loses commits on a 2-core machine.
    @Test(arguments: 0..<5) func commitsOfConcurrentUploadsKeepWalOrder(round: Int) async throws {
        let f = try await EngineTests.fixture(.sqlite, store: Jittery())
        var config = StorageConfig()
        config.uploadIntervalMs = 1
        config.uploadBytes = 1024
        config.maxConcurrentUploads = 8
        let e = try await EngineTests.engine(f, config: config)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        let writers = 64, batches = 40
        await withTaskGroup(of: Void.self) { g in
            for w in 0..<writers {
                g.addTask {
                    for i in 0..<batches { _ = await EngineTests.append(e, f.streamId, ["w\(w)-\(i)"]) }
                }
            }
        }
        await e.shutdown()
        await committer.value
        let e2 = try await EngineTests.engine(f)
        let opened = try await e2.open(streamId: f.streamId)
        #expect(opened.highWatermark == Int64(writers * batches), "every acked batch is committed to the metadata store")
    }
}
