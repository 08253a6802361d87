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

/// An in-memory bucket that records every GET (key and range) and can hold back the PUT of
/// WAL object `seq` until `release(seq)`.
final class CountingStore: ForwardingStore {
    let base = InMemoryObjectStore()
    private let gates: [String: OneShot<Void>]
    private let log = NIOLockedValueBox<[(key: String, range: Range<Int>?)]>([])
    private let walPuts = NIOLockedValueBox(0)

    init(held: [Int] = []) {
        gates = Dictionary(uniqueKeysWithValues: held.map { (String(format: "%020d", $0), OneShot<Void>()) })
    }

    func release(_ seq: Int) { gates[String(format: "%020d", seq)]!.resume(()) }
    var gets: [(key: String, range: Range<Int>?)] { log.withLockedValue { $0 } }
    func resetGets() { log.withLockedValue { $0.removeAll() } }
    /// WAL object PUTs begun, held ones included.
    var walPutsBegun: Int { walPuts.withLockedValue { $0 } }

    func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        if key.contains("/wal/") { walPuts.withLockedValue { $0 += 1 } }
        if let gate = gates[String(key.split(separator: "/").last!)] { await gate.wait() }
        try await base.put(key, body, ifNoneMatch: ifNoneMatch)
    }
    func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        log.withLockedValue { $0.append((key, range)) }
        return try await base.get(key, range: range)
    }
}

/// The LogCache (FIFO of recent batches within `log.cache.bytes`, evicting only uploaded
/// ones) and produce backpressure (`wal.buffer.max.bytes`), without sleeps: uploads are held
/// and released by hand, and every wait is on an ack or on the engine's own counters.
@Suite struct LogCacheTests {
    static func setup(_ store: CountingStore, _ configure: (inout StorageConfig) -> Void) async throws -> (StreamEngine, Int64) {
        let f = try await EngineTests.fixture(.sqlite, store: store)
        var c = StorageConfig()
        c.uploadIntervalMs = 3_600_000  // flush only when told
        c.uploadIdleMs = 0
        configure(&c)
        let e = try await EngineTests.engine(f, config: c)
        try await e.open(streamId: f.streamId)
        return (e, f.streamId)
    }

    static let value = String(repeating: "v", count: 200)
    static var batchSize: Int { EngineTests.batch([value + "0"]).0.readableBytes }

    /// Appends one batch and flushes it as its own WAL object (upload seq `i`).
    static func appendAndFlush(_ e: StreamEngine, _ s: Int64, _ i: Int) async -> StreamEngine.AppendTicket {
        let (b, h) = EngineTests.batch([value + "\(i)"])
        let t = await e.append(streamId: s, batch: b, header: h, timeout: .seconds(60))
        e.flush()
        return t
    }

    @Test func budgetFifoAndOnlyUploadedBatchesAreEvicted() async throws {
        let store = CountingStore(held: [0, 1, 2, 3, 4])
        let (e, s) = try await Self.setup(store) { $0.logCacheBytes = 3 * Self.batchSize }
        var tickets: [StreamEngine.AppendTicket] = []
        for i in 0..<5 { tickets.append(await Self.appendAndFlush(e, s, i)) }
        // Nothing is uploaded yet: all five stay, over the budget.
        #expect(e.logCacheStats.batches == 5)
        #expect(e.logCacheStats.bytes == 5 * Self.batchSize)

        // Upload 0 lands: only batch 0 may go (batch 1 is not uploaded yet).
        store.release(0)
        _ = try await tickets[0].result().get()
        #expect(e.logCacheStats.batches == 4)
        store.release(1)
        _ = try await tickets[1].result().get()
        #expect(e.logCacheStats.batches == 3)
        #expect(e.logCacheStats.bytes <= 3 * Self.batchSize)
        // Within the budget again: uploading the rest evicts nothing more.
        for i in 2..<5 {
            store.release(i)
            _ = try await tickets[i].result().get()
        }
        #expect(e.logCacheStats.batches == 3)
        #expect(e.logCacheStats.bytes == 3 * Self.batchSize)

        // FIFO: the newest three (offsets 2-4) are served from memory, the oldest from objects.
        store.resetGets()
        for offset in Int64(2)...4 {
            let r = try await e.read(streamId: s, offset: offset, maxBytes: 1)
            #expect(try EngineTests.values(r) == [Self.value + "\(offset)"])
        }
        #expect(store.gets.isEmpty, "cached batches were read from the bucket")
        for offset in Int64(0)...1 {
            let r = try await e.read(streamId: s, offset: offset, maxBytes: 1)
            #expect(try EngineTests.values(r) == [Self.value + "\(offset)"])
        }
        #expect(store.gets.count == 2, "evicted batches come back from their objects")
    }

    /// Eviction as the cache grows: the batches appended after the uploaded ones push the
    /// oldest out at once, so the slabs they free are taken again by the next appends instead
    /// of all going back when an upload lands (they faulted in fresh pages: 170k page faults
    /// per GB produced). Before, the cache grew past its budget until the next upload landed.
    @Test func appendsOverTheBudgetEvictUploadedBatchesAtOnce() async throws {
        let store = CountingStore(held: [2])
        let (e, s) = try await Self.setup(store) { $0.logCacheBytes = 2 * Self.batchSize }
        for i in 0..<2 { _ = try await Self.appendAndFlush(e, s, i).result().get() }
        #expect(e.logCacheStats.batches == 2)
        // Batch 2 goes into a held upload, batch 3 stays buffered: neither is uploaded, and
        // each append makes room by evicting the oldest uploaded batch.
        let held = await Self.appendAndFlush(e, s, 2)
        #expect(e.logCacheStats.batches == 2, "appending over the budget evicted nothing")
        let (b, h) = EngineTests.batch([Self.value + "3"])
        let buffered = await e.append(streamId: s, batch: b, header: h, timeout: .seconds(60))
        #expect(e.logCacheStats.batches == 2 && e.logCacheStats.bytes == 2 * Self.batchSize)
        // Batches not uploaded stay even over the budget.
        let (b4, h4) = EngineTests.batch([Self.value + "4"])
        let more = await e.append(streamId: s, batch: b4, header: h4, timeout: .seconds(60))
        #expect(e.logCacheStats.batches == 3)
        store.release(2)
        e.flush()
        for t in [held, buffered, more] { _ = try await t.result().get() }
        for offset in Int64(0)...4 {
            let r = try await e.read(streamId: s, offset: offset, maxBytes: 1)
            #expect(try EngineTests.values(r) == [Self.value + "\(offset)"])
        }
    }

    @Test func aCacheOfZeroBytesKeepsOnlyWhatIsNotUploaded() async throws {
        let store = CountingStore(held: [0])
        let (e, s) = try await Self.setup(store) { $0.logCacheBytes = 0 }
        let t = await Self.appendAndFlush(e, s, 0)
        #expect(e.logCacheStats.batches == 1, "a batch on its way to the bucket stays cached")
        store.release(0)
        _ = try await t.result().get()
        let stats = e.logCacheStats
        #expect(stats.bytes == 0 && stats.batches == 0 && stats.unflushedBytes == 0)
    }

    @Test func backpressureBlocksAppendsAndReleasesThemWithoutFailing() async throws {
        let store = CountingStore(held: [0, 1])
        let (e, s) = try await Self.setup(store) { $0.maxUnflushedBytes = 2 * Self.batchSize }
        let t0 = await Self.appendAndFlush(e, s, 0)
        let t1 = await Self.appendAndFlush(e, s, 1)
        #expect(e.logCacheStats.unflushedBytes == 2 * Self.batchSize)
        // The third append must wait for space: it has not even got its offset yet.
        let returned = NIOLockedValueBox(false)
        let third = Task {
            let (b, h) = EngineTests.batch([Self.value + "2"])
            let t = await e.append(streamId: s, batch: b, header: h, timeout: .seconds(60))
            returned.withLockedValue { $0 = true }
            e.flush()
            return await t.result()
        }
        var spins = 0
        while e.logCacheStats.waitingAppends == 0 && spins < 1_000_000 {
            await Task.yield()
            spins += 1
        }
        #expect(e.logCacheStats.waitingAppends == 1)
        #expect(returned.withLockedValue { $0 } == false)
        #expect(e.offsets(streamId: s)?.highWatermark == 0)

        // One upload lands: space frees up, the append goes ahead and is acked, not failed.
        store.release(0)
        #expect(try await t0.result().get().baseOffset == 0)
        store.release(1)
        #expect(try await t1.result().get().baseOffset == 1)
        #expect(try await third.value.get().baseOffset == 2)
        #expect(e.logCacheStats.waitingAppends == 0)
        #expect(e.logCacheStats.unflushedBytes == 0)
    }
}

/// The BlockCache alone: byte budget, LRU order, block-aligned GETs, readahead growth and
/// shrink, counted on an in-memory bucket.
@Suite struct BlockCacheTests {
    static let kib = 1024

    /// An object of `blocks` KiB whose byte i is i % 251.
    static func object(_ store: CountingStore, _ key: String, kib n: Int) async throws {
        var b = ByteBufferAllocator().buffer(capacity: n * kib)
        for i in 0..<(n * kib) { b.writeInteger(UInt8(i % 251)) }
        try await store.base.put(key, b, ifNoneMatch: false)
    }

    static func read(_ c: BlockCache, _ store: CountingStore, _ key: String, _ range: Range<Int>, reader: Int64? = nil,
                     offsets: Range<Int64> = 0..<0, readaheadEnd: Int = 0) async throws -> ByteBuffer {
        let out = try await c.read(.init(object: key, range: range, reader: reader, offsets: offsets, readaheadEnd: readaheadEnd)) {
            try await store.get(key, range: $0, pieceBytes: c.blockSize)
        }
        #expect(out.readableBytes == range.count)
        #expect(out.readableBytesView.enumerated().allSatisfy { Int($0.element) == (range.lowerBound + $0.offset) % 251 }, "wrong bytes for \(range)")
        return out
    }

    /// Stream set objects "a" and "b" of 6 KiB, and a 16 KiB cache of 1 KiB blocks whose GETs go
    /// in parts of `partBytes`.
    static func twoStreamSetObjects(partBytes: Int) async throws -> (BlockCache, CountingStore) {
        let store = CountingStore()
        for name in ["a", "b"] { try await object(store, name, kib: 6) }
        return (BlockCache(capacity: 16 * kib, blockSize: kib, maxReadahead: kib, partBytes: partBytes), store)
    }

    /// Reader `reader`'s read of the start of its own KiB of a stream set object of `n` KiB
    /// (one KiB per stream), which asks to share the whole object.
    static func readOwnKiB(_ c: BlockCache, _ store: CountingStore, _ object: String, _ reader: Int, ofKiB n: Int) async throws {
        let out = try await c.read(.init(object: object, range: (reader * kib)..<(reader * kib + 10), reader: Int64(reader), offsets: 0..<1,
                                         readaheadEnd: (reader + 1) * kib, shared: 0..<(n * kib))) { try await store.get(object, range: $0, pieceBytes: c.blockSize) }
        #expect(out.readableBytesView.enumerated().allSatisfy { Int($0.element) == (reader * kib + $0.offset) % 251 })
    }

    /// Many readers of a few objects at once, with readahead, whole-object misses, evictions
    /// and GETs that finish in any order: every read gets exactly its own bytes.
    @Test func concurrentReadersAlwaysGetTheirOwnBytes() async throws {
        let kib = Self.kib
        let store = CountingStore()
        func byte(_ object: Int, _ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: (i &* 2_654_435_761 &+ object &* 97) >> 7) }
        let sizes = [37, 64, 101, 16]
        for (o, n) in sizes.enumerated() {
            var b = ByteBufferAllocator().buffer(capacity: n * kib)
            for i in 0..<(n * kib) { b.writeInteger(byte(o, i)) }
            try await store.base.put("o\(o)", b, ifNoneMatch: false)
        }
        let c = BlockCache(capacity: 48 * kib, blockSize: kib, maxReadahead: 16 * kib, partBytes: 4 * kib)
        try await withThrowingTaskGroup(of: Void.self) { g in
            for reader in 0..<24 {
                g.addTask {
                    var rng = SystemRandomNumberGenerator()
                    for _ in 0..<200 {
                        let o = Int.random(in: 0..<sizes.count, using: &rng)
                        let size = sizes[o] * kib
                        let lo = Int.random(in: 0..<(size - 1), using: &rng)
                        let hi = min(size, lo + Int.random(in: 1...(3 * kib), using: &rng))
                        let whole = Bool.random(using: &rng) ? size : 0
                        let out = try await c.read(.init(object: "o\(o)", range: lo..<hi, reader: Int64(reader), offsets: Int64(lo)..<Int64(hi),
                                                         readaheadEnd: min(size, hi + Int.random(in: 0...(8 * kib), using: &rng)), shared: 0..<whole)) { r in
                            try await Task.sleep(for: .microseconds(Int.random(in: 0...300)))
                            return try await store.get("o\(o)", range: r, pieceBytes: c.blockSize)
                        }
                        #expect(out.readableBytes == hi - lo)
                        let ok = out.readableBytesView.enumerated().allSatisfy { $0.element == byte(o, lo + $0.offset) }
                        #expect(ok, "wrong bytes for o\(o) \(lo)..<\(hi)")
                        if !ok { return }
                    }
                }
            }
            try await g.waitForAll()
        }
    }

    @Test func aLargeMissIsFetchedInPartsAllAtOnce() async throws {
        let store = CountingStore()
        try await Self.object(store, "o", kib: 64)
        let c = BlockCache(capacity: 64 * Self.kib, blockSize: Self.kib, maxReadahead: 16 * Self.kib, partBytes: 4 * Self.kib)
        let inFlight = NIOLockedValueBox((now: 0, most: 0))
        let out = try await c.read(.init(object: "o", range: 0..<(16 * Self.kib))) { range in
            inFlight.withLockedValue { $0.now += 1; $0.most = max($0.most, $0.now) }
            // Wait (at most 2 s) for the other parts: fetched one after another, they never come.
            for _ in 0..<2000 where inFlight.withLockedValue({ $0.most }) < 4 { try await Task.sleep(for: .milliseconds(1)) }
            defer { inFlight.withLockedValue { $0.now -= 1 } }
            return try await store.get("o", range: range, pieceBytes: c.blockSize)
        }
        #expect(inFlight.withLockedValue { $0.most } == 4, "four parts of 4 KiB in flight at once")
        #expect(store.gets.map(\.range!).sorted { $0.lowerBound < $1.lowerBound } == stride(from: 0, to: 16, by: 4).map { ($0 * Self.kib)..<(($0 + 4) * Self.kib) })
        #expect(out.readableBytesView.enumerated().allSatisfy { Int($0.element) == $0.offset % 251 })
        #expect(c.stats.gets == 4)
    }

    /// A GET that starts between part boundaries is cut at multiples of `partBytes`, so its
    /// parts line up with the ones other GETs of the object make.
    @Test func aGetsPartsEndOnMultiplesOfThePartSize() async throws {
        let kib = Self.kib
        let store = CountingStore()
        try await Self.object(store, "o", kib: 64)
        let c = BlockCache(capacity: 64 * kib, blockSize: kib, maxReadahead: 16 * kib, partBytes: 4 * kib)
        _ = try await Self.read(c, store, "o", (2 * kib)..<(14 * kib))
        #expect(store.gets.map(\.range!).sorted { $0.lowerBound < $1.lowerBound }
                == [(2 * kib)..<(4 * kib), (4 * kib)..<(8 * kib), (8 * kib)..<(12 * kib), (12 * kib)..<(14 * kib)])
    }

    /// Sixteen readers of one stream set object, each wanting its own kilobyte: one GET of
    /// the whole object, the others wait for it rather than GET their blocks themselves.
    @Test func readersOfOneObjectShareItsGet() async throws {
        let kib = Self.kib
        let store = CountingStore()
        try await Self.object(store, "sso", kib: 16)
        let c = BlockCache(capacity: 1 << 20, blockSize: kib, maxReadahead: kib, partBytes: 64 * kib)
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let reads = (0..<16).map { i in
            Task {
                try await c.read(.init(object: "sso", range: (i * kib + 10)..<(i * kib + 20), reader: Int64(i), offsets: 0..<1,
                                       readaheadEnd: (i + 1) * kib, shared: 0..<(16 * kib))) { range in
                    for await _ in gate { break }  // held until every reader has asked
                    return try await store.get("sso", range: range, pieceBytes: c.blockSize)
                }
            }
        }
        while c.stats.misses < 1 { await Task.yield() }
        try await Task.sleep(for: .milliseconds(50))  // the other fifteen reach the cache meanwhile
        open.yield(())
        open.finish()
        for (i, r) in reads.enumerated() {
            let out = try await r.value
            #expect(out.readableBytesView.enumerated().allSatisfy { Int($0.element) == (i * kib + 10 + $0.offset) % 251 })
        }
        #expect(store.gets.map(\.range) == [0..<(16 * kib)], "one GET for all sixteen")
        #expect(c.stats.misses == 1)
    }

    /// A miss GETs a stream set object whole only while the GETs under way and the blocks read
    /// ahead that nobody read yet leave room for it within half the budget. Readers spread
    /// over more objects than the cache holds otherwise GET each whole object again and again,
    /// evicting each other's unread blocks (7.6 GB of GETs for a 2 GB catch-up).
    @Test func aWholeObjectGetNeedsRoomBesideTheBlocksNotReadYet() async throws {
        let kib = Self.kib
        let (c, store) = try await Self.twoStreamSetObjects(partBytes: 64 * kib)
        func read(_ object: String, _ reader: Int) async throws { try await Self.readOwnKiB(c, store, object, reader, ofKiB: 6) }
        try await read("a", 0)
        #expect(store.gets.map(\.range) == [0..<(6 * kib)], "the first object whole")
        try await read("b", 0)
        #expect(store.gets.map(\.range).last == 0..<kib, "five blocks of a not read yet: only the reader's own block of b")
        for r in 1..<6 { try await read("a", r) }
        #expect(store.gets.count == 2, "a's other readers find their blocks cached")
        try await read("b", 1)
        #expect(store.gets.map(\.range).last == kib..<(6 * kib), "a read through: the rest of b whole")
    }

    /// Without room for all of a stream set object, a miss GETs the aligned windows of
    /// `partBytes` around the read when they fit: its neighbours' readers find their blocks
    /// there, instead of each making a GET of its own (2x the GETs on a 2 GB catch-up).
    @Test func withoutRoomForTheWholeObjectAMissGetsTheWindowAroundIt() async throws {
        let kib = Self.kib
        let (c, store) = try await Self.twoStreamSetObjects(partBytes: 2 * kib)
        func read(_ object: String, _ reader: Int) async throws { try await Self.readOwnKiB(c, store, object, reader, ofKiB: 6) }
        try await read("a", 0)
        #expect(store.gets.map(\.range) == [0..<(2 * kib), (2 * kib)..<(4 * kib), (4 * kib)..<(6 * kib)], "the first object whole")
        try await read("b", 3)
        #expect(store.gets.map(\.range).last == (2 * kib)..<(4 * kib), "five blocks of a not read yet: the window around the read")
        try await read("b", 2)
        #expect(store.gets.count == 4, "its neighbour finds its block there")
        #expect(c.stats.sharedTaken == 1 && c.stats.sharedWindows == 1 && c.stats.sharedRefused == 0)
    }

    /// What a miss in a stream set object GETs for its other streams' readers: all of an
    /// object of at most `maxBytes`; of a larger one, the aligned windows around the stream's
    /// data; nothing extra for a stream object.
    @Test func aLargeStreamSetObjectIsSharedByAlignedWindows() {
        let mib = 1 << 20
        func range(_ key: String, at position: Int, size: Int, objectSize: Int, dataEnd: Int) -> Range<Int>? {
            StreamEngine.sharedRange(of: StreamRange(streamId: 1, epoch: 0, startOffset: 0, endOffset: 1, objectKey: key, position: position, size: size,
                                                     minTimestamp: 0, maxTimestamp: 0, objectSize: objectSize),
                                     dataEnd: dataEnd, wholeBytes: 9 * mib, window: 8 * mib, maxBytes: 32 * mib)
        }
        #expect(range("c/wal/1/1/1", at: 3 * mib, size: mib, objectSize: 20 * mib, dataEnd: 4 * mib) == 0..<(20 * mib))
        #expect(range("c/wal/1/1/1", at: 19 * mib, size: mib, objectSize: 52 * mib, dataEnd: 20 * mib) == (16 * mib)..<(24 * mib))
        #expect(range("c/wal/1/1/1", at: 23 * mib, size: 2 * mib, objectSize: 52 * mib, dataEnd: 25 * mib) == (16 * mib)..<(32 * mib))
        #expect(range("c/wal/1/1/1", at: 50 * mib, size: mib, objectSize: 52 * mib, dataEnd: 51 * mib) == (48 * mib)..<(52 * mib))
        #expect(range("c/data/sso/1_1", at: mib, size: 60 * mib, objectSize: 64 * mib, dataEnd: 61 * mib) == 0..<(32 * mib))
        #expect(range("c/data/sso/1_1", at: mib, size: mib, objectSize: 0, dataEnd: 2 * mib) == 0..<(9 * mib), "size not known")
        #expect(range("c/data/so/1/0-9-1", at: 0, size: mib, objectSize: 40 * mib, dataEnd: 2 * mib) == nil)
    }

    /// A shared range that starts inside the object is GET from its start, not the object's.
    @Test func aSharedWindowIsGetFromItsStart() async throws {
        let kib = Self.kib
        let store = CountingStore()
        try await Self.object(store, "big", kib: 32)
        let c = BlockCache(capacity: 64 * kib, blockSize: kib, maxReadahead: kib, partBytes: 64 * kib)
        let out = try await c.read(.init(object: "big", range: (10 * kib + 5)..<(10 * kib + 50), reader: 1, offsets: 0..<1,
                                         readaheadEnd: 11 * kib, shared: (8 * kib)..<(16 * kib))) { try await store.get("big", range: $0, pieceBytes: c.blockSize) }
        #expect(out.readableBytesView.enumerated().allSatisfy { Int($0.element) == (10 * kib + 5 + $0.offset) % 251 })
        #expect(store.gets.map(\.range) == [(8 * kib)..<(16 * kib)])
    }

    /// A prefetch GETs in the background what is neither cached nor on its way; a read of
    /// its blocks waits for it instead of GETting them; past half the budget it does nothing.
    @Test func aPrefetchIsSharedWithTheReadsThatFollowIt() async throws {
        let kib = Self.kib
        let store = CountingStore()
        try await Self.object(store, "next", kib: 8)
        try await Self.object(store, "big", kib: 64)
        let c = BlockCache(capacity: 32 * kib, blockSize: kib, maxReadahead: kib, partBytes: 8 * kib)
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        c.prefetch(object: "next", range: 0..<(9 * kib)) { range in
            for await _ in gate { break }
            return try await store.get("next", range: range, pieceBytes: c.blockSize)
        }
        #expect(c.stats.prefetches == 1)
        c.prefetch(object: "next", range: 0..<(9 * kib)) { try await store.get("next", range: $0, pieceBytes: c.blockSize) }
        #expect(c.stats.prefetches == 1, "already on its way")
        c.prefetch(object: "big", range: 0..<(64 * kib)) { try await store.get("big", range: $0, pieceBytes: c.blockSize) }
        #expect(c.stats.prefetches == 1, "more than half the budget")
        let read = Task { try await Self.read(c, store, "next", (3 * kib)..<(3 * kib + 100)) }
        try await Task.sleep(for: .milliseconds(20))
        #expect(store.gets.isEmpty, "the read waits for the prefetch")
        open.yield(())
        open.finish()
        _ = try await read.value
        while c.stats.blocks < 8 { await Task.yield() }
        #expect(store.gets.map(\.range) == [0..<(9 * kib)], "one GET, clipped at the object's end by the store")
        _ = try await Self.read(c, store, "next", (7 * kib)..<(8 * kib))
        #expect(store.gets.count == 1)
    }

    /// Catching up two partitions through the same WAL objects: each object is fetched once,
    /// whole, and the second partition's reads are all hits. (Each partition GETting its own
    /// part made twice the GETs, each a fraction of an object.)
    @Test func catchUpReadersOfAStreamSetObjectGetItOnce() async throws {
        let store = CountingStore()
        let f = try await EngineTests.fixture(store: store)
        let second = try await f.metadata.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let e = try await EngineTests.engine(f, config: CompactionTests.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await e.open(streamId: second)
        try await CompactionTests.fill(e, [f.streamId, second], rounds: 6) { s, i in "s\(s)-\(i)" }
        // Usually 6 objects of both partitions; a round's two appends may also straddle a flush.
        let objects = try await store.base.list(prefix: "").count
        #expect(objects >= 6)
        try await CompactionTests.waitForCommits(f.metadata, objects)
        let live = try await f.metadata.liveObjects(prefix: "", limit: 100)
        let holding = { (s: Int64) in Set(live.filter { $0.ranges.contains { $0.streamId == s } }.map(\.key)) }
        store.resetGets()
        #expect(try await CompactionTests.readAll(e, f.streamId).map(\.1) == (0..<6).map { "s\(f.streamId)-\($0)" })
        #expect(Set(store.gets.map(\.key)) == holding(f.streamId) && store.gets.count == holding(f.streamId).count,
                "\(store.gets.map { "\($0.key.suffix(3)) \($0.range!)" })")
        #expect(store.gets.allSatisfy { $0.range?.lowerBound == 0 }, "whole objects")
        #expect(try await CompactionTests.readAll(e, second).map(\.1) == (0..<6).map { "s\(second)-\($0)" })
        #expect(store.gets.count == holding(f.streamId).union(holding(second)).count, "the second partition reads the shared objects from the cache")
        await e.shutdown()
        await committer.value
    }

    @Test func getsAreBlockAlignedAndTheBudgetHolds() async throws {
        let store = CountingStore()
        try await Self.object(store, "o", kib: 64)
        let c = BlockCache(capacity: 4 * Self.kib, blockSize: Self.kib, maxReadahead: Self.kib)
        // Bytes 1500..<2600 span blocks 1 and 2: one GET of exactly those blocks.
        _ = try await Self.read(c, store, "o", 1500..<2600)
        #expect(store.gets.map(\.range) == [1024..<3072])
        _ = try await Self.read(c, store, "o", 1100..<3000)
        #expect(store.gets.count == 1, "both blocks were cached")
        for i in 10..<30 { _ = try await Self.read(c, store, "o", (i * Self.kib + 7)..<(i * Self.kib + 9)) }
        #expect(c.stats.bytes <= 4 * Self.kib)
        #expect(c.stats.blocks == 4)
        // The tail block of an object is shorter; a GET past the end is clipped by the store.
        let tail = BlockCache(capacity: 64 * Self.kib, blockSize: 10 * Self.kib, maxReadahead: 10 * Self.kib)
        _ = try await Self.read(tail, store, "o", (63 * Self.kib)..<(64 * Self.kib))
        #expect(store.gets.last!.range == (60 * Self.kib)..<(70 * Self.kib))
        await #expect(throws: BlockCacheError.self) {
            _ = try await tail.read(.init(object: "o", range: (63 * Self.kib)..<(65 * Self.kib))) { try await store.get("o", range: $0, pieceBytes: tail.blockSize) }
        }
    }

    @Test func leastRecentlyUsedGoesFirst() async throws {
        let store = CountingStore()
        try await Self.object(store, "o", kib: 8)
        let c = BlockCache(capacity: 3 * Self.kib, blockSize: Self.kib, maxReadahead: Self.kib)
        func block(_ i: Int) -> Range<Int> { (i * Self.kib)..<(i * Self.kib + 10) }
        for i in [0, 1, 2] { _ = try await Self.read(c, store, "o", block(i)) }
        _ = try await Self.read(c, store, "o", block(0))  // 0 is now the most recent
        #expect(store.gets.count == 3)
        _ = try await Self.read(c, store, "o", block(3))  // evicts 1, the least recent
        #expect(store.gets.count == 4)
        _ = try await Self.read(c, store, "o", block(0))
        _ = try await Self.read(c, store, "o", block(2))
        #expect(store.gets.count == 4, "blocks 0 and 2 stayed")
        _ = try await Self.read(c, store, "o", block(1))
        #expect(store.gets.count == 5, "block 1 was evicted")
        #expect(store.gets.last!.range == block(1).lowerBound..<(2 * Self.kib))
    }

    /// The eviction order stays least recently used first through thousands of hits (each
    /// queues the block again; the queue is rebuilt when stale entries pile up).
    @Test func leastRecentlyUsedHoldsThroughManyHits() async throws {
        let store = CountingStore()
        try await Self.object(store, "o", kib: 8)
        let c = BlockCache(capacity: 3 * Self.kib, blockSize: Self.kib, maxReadahead: Self.kib)
        func block(_ i: Int) -> Range<Int> { (i * Self.kib)..<(i * Self.kib + 10) }
        for round in 0..<1500 {
            for i in [0, 1, 2].shuffled() { _ = try await Self.read(c, store, "o", block(i)) }
            if round == 1499 { for i in [2, 0, 1] { _ = try await Self.read(c, store, "o", block(i)) } }
        }
        #expect(store.gets.count == 3)
        _ = try await Self.read(c, store, "o", block(3))  // evicts 2, the least recent
        for i in [0, 1] { _ = try await Self.read(c, store, "o", block(i)) }
        #expect(store.gets.count == 4, "blocks 0 and 1 stayed")
        _ = try await Self.read(c, store, "o", block(2))
        #expect(store.gets.count == 5, "block 2 was evicted")
    }

    /// A sequential reader of 1 KiB ranges: its GETs double from one block to the maximum,
    /// and the reads in between are served from what was read ahead. Each GET ends on a
    /// multiple of its window (2, 4, 8, 16 KiB), so the first ones are cut short to get there.
    @Test func readaheadGrowsWhileSequentialAndResetsOnAJump() async throws {
        let store = CountingStore()
        try await Self.object(store, "so", kib: 200)
        let c = BlockCache(capacity: 1 << 20, blockSize: 2 * Self.kib, maxReadahead: 16 * Self.kib)
        for i in 0..<64 {
            _ = try await Self.read(c, store, "so", (i * Self.kib)..<((i + 1) * Self.kib), reader: 7,
                                    offsets: Int64(i * 10)..<Int64(i * 10 + 10), readaheadEnd: 200 * Self.kib)
        }
        #expect(store.gets.map { $0.range!.count / Self.kib } == [2, 2, 4, 8, 16, 16, 16], "\(store.gets.map(\.range))")
        #expect(store.gets.allSatisfy { $0.range!.upperBound % $0.range!.count == 0 }, "aligned: \(store.gets.map(\.range))")
        #expect(c.readahead(reader: 7) == 16 * Self.kib)
        // Readahead never passes the reader's data in the object.
        store.resetGets()
        _ = try await Self.read(c, store, "so", (100 * Self.kib)..<(101 * Self.kib), reader: 8,
                                offsets: 0..<10, readaheadEnd: 101 * Self.kib)
        #expect(store.gets.map(\.range) == [(100 * Self.kib)..<(102 * Self.kib)])
        // A jump (not where the reader's last read ended) starts again from one block.
        store.resetGets()
        _ = try await Self.read(c, store, "so", (150 * Self.kib)..<(151 * Self.kib), reader: 7,
                                offsets: 5000..<5010, readaheadEnd: 200 * Self.kib)
        #expect(store.gets.map(\.range) == [(150 * Self.kib)..<(152 * Self.kib)])
        // Without a reader (lookups by time) there is no readahead at all past one block.
        store.resetGets()
        _ = try await Self.read(c, store, "so", (180 * Self.kib)..<(181 * Self.kib), readaheadEnd: 200 * Self.kib)
        #expect(store.gets.map(\.range) == [(180 * Self.kib)..<(182 * Self.kib)])
    }

    /// GETs under way are memory outside the budget: they read ahead no further than half of
    /// it in all. While they hold that much, a reader GETs only what it asked for.
    @Test func noReadaheadWhileGetsUnderWayHoldHalfTheBudget() async throws {
        let kib = Self.kib
        let store = CountingStore()
        try await Self.object(store, "a", kib: 64)
        try await Self.object(store, "b", kib: 64)
        let c = BlockCache(capacity: 8 * kib, blockSize: kib, maxReadahead: 8 * kib)
        var offset: Int64 = 0
        func next(_ i: Int) async throws {  // sequential in the stream, at block i of the object
            _ = try await Self.read(c, store, "b", (i * kib)..<(i * kib + 100), reader: 2,
                                    offsets: offset..<(offset + 1), readaheadEnd: 64 * kib)
            offset += 1
        }
        try await next(0)
        try await next(1)
        #expect(store.gets.map(\.range) == [0..<kib, kib..<(2 * kib)], "the second GET ends on a multiple of its window")
        // A GET of 5 KiB, held under way.
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let held = Task {
            try await c.read(.init(object: "a", range: 0..<(5 * kib))) { range in
                for await _ in gate { break }
                return try await store.get("a", range: range, pieceBytes: c.blockSize)
            }
        }
        while c.stats.gets < 3 { await Task.yield() }
        try await next(3)
        #expect(store.gets.last!.range == (3 * kib)..<(4 * kib), "only the block asked for")
        open.yield(())
        open.finish()
        _ = try await held.value
        try await next(4)
        #expect(store.gets.last!.range == (4 * kib)..<(8 * kib), "readahead is back once the GET is done, up to half the budget")
    }

    /// A GET's pieces are the cached blocks themselves, and a read is a slice of each block it
    /// lies in: a catch-up byte is not copied between the object store and the fetch.
    @Test func blocksAreTheGetsPiecesAndAReadIsASliceOfEachBlock() async throws {
        let kib = Self.kib
        let store = CountingStore()
        try await Self.object(store, "o", kib: 8)
        let c = BlockCache(capacity: 64 * kib, blockSize: kib, maxReadahead: kib)
        let brought = NIOLockedValueBox<[UInt]>([])
        let out = try await c.read(.init(object: "o", range: (2 * kib + 10)..<(2 * kib + 100))) { range in
            let pieces = try await store.get("o", range: range, pieceBytes: c.blockSize)
            brought.withLockedValue { $0 += pieces.map { p in p.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) } } }
            return pieces
        }
        let at = out.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        #expect(brought.withLockedValue { $0 } == [at - 10], "a slice of the one block the GET brought")
        #expect(out.readableBytesView.enumerated().allSatisfy { Int($0.element) == (2 * kib + 10 + $0.offset) % 251 })
        // A read across blocks: a slice of each block, in order, none copied.
        let across = (4 * kib + 10)..<(6 * kib + 100)
        brought.withLockedValue { $0 = [] }
        let parts = try await c.readParts(.init(object: "o", range: across)) { range in
            let pieces = try await store.get("o", range: range, pieceBytes: c.blockSize)
            brought.withLockedValue { $0 += pieces.map { p in p.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) } } }
            return pieces
        }
        #expect(parts.map(\.readableBytes) == [kib - 10, kib, 100])
        #expect(parts.map { p in p.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) } }
                == brought.withLockedValue { b in [b[0] + 10, b[1], b[2]] })
        #expect(parts.joined().readableBytesView.enumerated().allSatisfy { Int($0.element) == (across.lowerBound + $0.offset) % 251 })
        // Pieces that are not blocks are refused, not cached at the wrong positions.
        await #expect(throws: BlockCacheError.self) {
            try await c.read(.init(object: "o", range: (7 * kib)..<(7 * kib + 1))) { range in
                try await store.get("o", range: range, pieceBytes: 100)
            }
        }
    }

    /// A GET under way is memory too: it evicts blocks so that they and it fit the budget.
    @Test func getsUnderWayCountAgainstTheBudget() async throws {
        let kib = Self.kib
        let store = CountingStore()
        try await Self.object(store, "a", kib: 64)
        let c = BlockCache(capacity: 8 * kib, blockSize: kib, maxReadahead: kib)
        for i in 0..<8 { _ = try await Self.read(c, store, "a", (i * kib)..<(i * kib + 1)) }
        #expect(c.stats.bytes == 8 * kib)
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let held = Task {
            try await c.read(.init(object: "a", range: (16 * kib)..<(19 * kib))) { range in
                for await _ in gate { break }
                return try await store.get("a", range: range, pieceBytes: c.blockSize)
            }
        }
        while c.stats.gets < 9 { await Task.yield() }
        #expect(c.stats.bytes == 5 * kib, "three blocks evicted for the 3 KiB on their way")
        open.yield(())
        open.finish()
        _ = try await held.value
        #expect(c.stats.bytes == 8 * kib)
    }

    /// Readahead is shared among the readers active in the last `activeNanos`: the first
    /// readers do not take all of it and leave the others one block per GET.
    @Test func readersActiveAtOnceShareTheReadahead() async throws {
        let kib = Self.kib
        let store = CountingStore()
        for k in ["a", "b", "c", "d"] { try await Self.object(store, k, kib: 256) }
        let now = NIOLockedValueBox<UInt64>(0)
        let c = BlockCache(capacity: 64 * kib, blockSize: kib, maxReadahead: 32 * kib, activeNanos: 1000, clock: { now.withLockedValue { $0 } })
        var offsets: [String: Int64] = [:]
        func next(_ key: String, at block: Int) async throws {
            let o = offsets[key, default: 0]
            _ = try await Self.read(c, store, key, (block * kib)..<(block * kib + 100), reader: Int64(key.unicodeScalars.first!.value),
                                    offsets: o..<(o + 1), readaheadEnd: 256 * kib)
            offsets[key] = o + 1
        }
        // Alone, "a" reads ahead up to its maximum (half the budget is 32 KiB).
        for i in 0..<64 { try await next("a", at: i) }
        #expect(store.gets.last!.range!.count == 32 * kib)
        // Four readers at once: 8 KiB each, aligned.
        store.resetGets()
        for i in 0..<40 {
            for k in ["b", "c", "d"] { try await next(k, at: 100 + i) }
            try await next("a", at: 64 + i)
        }
        let sizes = Dictionary(grouping: store.gets, by: \.key).mapValues { $0.map { $0.range!.count / kib } }
        for k in ["a", "b", "c", "d"] { #expect(sizes[k]!.max()! <= 8, "\(k): \(sizes[k]!)") }
        #expect(sizes["b"]!.filter { $0 == 8 }.count >= 3, "\(sizes["b"]!)")
        #expect(store.gets.allSatisfy { $0.range!.count < 8 * kib || $0.range!.lowerBound % (8 * kib) == 0 }, "\(store.gets.map(\.range))")
        // The others stop reading: once they are no longer active, "a" has it all again.
        now.withLockedValue { $0 += 2000 }
        store.resetGets()
        for i in 0..<100 { try await next("a", at: 104 + i) }
        #expect(store.gets.map { $0.range!.count }.max()! == 32 * kib, "\(store.gets.map(\.range))")
    }

    /// Blocks read ahead and evicted before anybody read them halve that reader's window.
    /// Blocks already read go first, so it takes other readers' read-ahead to push them out.
    @Test func readaheadShrinksWhenItsBlocksAreEvictedUnread() async throws {
        let store = CountingStore()
        try await Self.object(store, "so", kib: 64)
        try await Self.object(store, "other", kib: 64)
        try await Self.object(store, "third", kib: 64)
        try await Self.object(store, "fourth", kib: 64)
        // No sharing among readers (none counts as active): each may read ahead half the budget.
        let c = BlockCache(capacity: 11 * Self.kib, blockSize: Self.kib, maxReadahead: 8 * Self.kib, activeNanos: 0)
        var offset: Int64 = 0
        func next(_ i: Int) async throws {
            _ = try await Self.read(c, store, "so", (i * Self.kib)..<((i + 1) * Self.kib), reader: 1,
                                    offsets: offset..<(offset + 1), readaheadEnd: 64 * Self.kib)
            offset += 1
        }
        // GETs of 1, 1, 2, 4 blocks (each ending on a multiple of its window): the window is
        // now 8 blocks, and blocks 5-7 are read ahead.
        for i in 0..<5 { try await next(i) }
        #expect(c.readahead(reader: 1) == 8 * Self.kib)
        #expect(store.gets.map { $0.range!.count / Self.kib } == [1, 1, 2, 4])
        // A reader without readahead fills the cache: blocks read go first, 5-7 stay.
        for i in 0..<12 { _ = try await Self.read(c, store, "other", (i * Self.kib)..<(i * Self.kib + 1)) }
        #expect(c.readahead(reader: 1) == 8 * Self.kib, "nothing read ahead was evicted")
        // Three sequential readers read ahead of their own: now the oldest read-ahead, the never
        // read block 5, is evicted.
        for i in 0..<16 {
            for (reader, key) in [(Int64(2), "other"), (Int64(3), "third"), (Int64(4), "fourth")] {
                _ = try await Self.read(c, store, key, ((20 + i) * Self.kib)..<((20 + i) * Self.kib + 1), reader: reader,
                                        offsets: Int64(i)..<Int64(i + 1), readaheadEnd: 64 * Self.kib)
            }
        }
        let shrunk = c.readahead(reader: 1)
        #expect(shrunk < 8 * Self.kib, "halved for each of its blocks evicted unread, block 5 first")
        // Its next read GETs block 5 again, and the window grows again.
        store.resetGets()
        try await next(5)
        #expect(store.gets.first?.range?.lowerBound == 5 * Self.kib)
        #expect(c.readahead(reader: 1) == min(8 * Self.kib, 2 * shrunk))
    }
}
