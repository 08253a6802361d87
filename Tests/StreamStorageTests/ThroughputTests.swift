import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Metadata
import ObjectStore
import StreamStorage
import Testing

/// The throughput classes: produce never waits, the other classes wait for the total in
/// priority order, catch-up reads also for their own cap, compaction may use its floor.
/// (Only lower bounds on waiting are checked, so a slow machine cannot fail them.)
@Suite struct ThroughputTests {
    static let MiB = 1 << 20

    static func limiter(total: Int = 0, catchUp: Int = 0, compaction: Int = 0, floor: Int = 0,
                        loop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()) -> ThroughputLimiter {
        var l = ThroughputLimits()
        l.totalBytesPerSec = total
        l.catchUpBytesPerSec = catchUp
        l.compactionBytesPerSec = compaction
        l.compactionFloorBytesPerSec = floor
        return ThroughputLimiter(limits: l, loop: loop)
    }

    /// Runs `work`, moving the test loop's clock (the limiter's) 10 ms at a time while one of
    /// its requests waits, and returns how far the clock moved: at least the waits the rates
    /// call for, at most 10 ms more per wait, however slow the machine. A request that goes
    /// without waiting moves it not at all.
    static func clockTime(_ l: ThroughputLimiter, _ loop: NIOAsyncTestingEventLoop, _ work: @escaping @Sendable () async -> Void) async -> TimeAmount {
        let start = loop.now
        let done = NIOLockedValueBox(false)
        await withTaskGroup(of: Void.self) { g in
            g.addTask {
                await work()
                done.withLockedValue { $0 = true }
            }
            while !done.withLockedValue({ $0 }) {
                if l.waitingRequests > 0 {
                    await loop.advanceTime(by: .milliseconds(10))
                } else {
                    try? await Task.sleep(for: .milliseconds(1))
                }
            }
        }
        return loop.now - start
    }

    @Test(.timeLimit(.minutes(1))) func produceNeverWaitsButItsBytesCount() async throws {
        let loop = NIOAsyncTestingEventLoop()
        let l = Self.limiter(total: 10 * Self.MiB, loop: loop)
        // 8 MiB over a 1 MiB burst: debt. The clock does not move: produce went straight through.
        #expect(await Self.clockTime(l, loop) { for _ in 0..<8 { await l.acquire(Self.MiB, as: .produce) } } == .zero)
        // The 7 MiB of debt at 10 MiB/s are paid before a read may go.
        let waited = await Self.clockTime(l, loop) { await l.acquire(Self.MiB, as: .catchUpRead) }
        #expect(waited >= .milliseconds(700) && waited <= .milliseconds(720), "\(waited)")
        #expect(l.bytesByClass == [.produce: 8 * Self.MiB, .catchUpRead: Self.MiB])
        try await loop.shutdownGracefully()
    }

    /// A class with a cap of its own keeps to it; the other, with no cap and no total, is
    /// not held.
    @Test(.timeLimit(.minutes(1)), arguments: [IOClass.catchUpRead, .compaction])
    func aClassKeepsToItsOwnCap(_ cls: IOClass) async throws {
        let other: IOClass = cls == .compaction ? .catchUpRead : .compaction
        let loop = NIOAsyncTestingEventLoop()
        let l = cls == .compaction ? Self.limiter(compaction: 20 * Self.MiB, loop: loop) : Self.limiter(catchUp: 20 * Self.MiB, loop: loop)
        // 2 MiB of burst (100 ms of the rate); a request goes while any tokens are left and
        // takes the bucket into debt, so the 8th goes once 5 MiB more came in: 250 ms at
        // 20 MiB/s (and up to one 10 ms step more for each of the 6 waits).
        let waited = await Self.clockTime(l, loop) { for _ in 0..<8 { await l.acquire(Self.MiB, as: cls) } }
        #expect(waited >= .milliseconds(250) && waited <= .milliseconds(310), "\(waited)")
        #expect(await Self.clockTime(l, loop) { await l.acquire(4 * Self.MiB, as: other) } == .zero)
        #expect(l.bytesByClass == [cls: 8 * Self.MiB, other: 4 * Self.MiB])
        try await loop.shutdownGracefully()
    }

    /// While produce is backed up, compaction keeps to its floor, though no total is set; once
    /// it is not, to its own cap again. A report older than the last one applied is ignored.
    @Test(.timeLimit(.minutes(1))) func compactionKeepsToItsFloorWhileProduceIsBackedUp() async throws {
        let loop = NIOAsyncTestingEventLoop()
        let l = Self.limiter(compaction: 20 * Self.MiB, floor: 4 * Self.MiB, loop: loop)
        l.setProduceBackedUp(true, version: 1)
        // The floor's 1 MiB of burst, then 1 MiB per 250 ms: the 8th request goes after 6 more
        // such waits (1.5 s, and up to one 10 ms step more for each of the 7 waits). At the
        // cap alone the same took 250-310 ms (aClassKeepsToItsOwnCap).
        let backedUp = await Self.clockTime(l, loop) { for _ in 0..<8 { await l.acquire(Self.MiB, as: .compaction) } }
        #expect(backedUp >= .milliseconds(1500) && backedUp <= .milliseconds(1580), "\(backedUp)")
        l.setProduceBackedUp(false, version: 2)
        l.setProduceBackedUp(true, version: 1)  // computed before version 2, arriving after it
        #expect(!l.produceBackedUp)
        // The cap's bucket is full again (2 MiB): 4 MiB go within 50 ms, not the floor's 750.
        let free = await Self.clockTime(l, loop) { for _ in 0..<4 { await l.acquire(Self.MiB, as: .compaction) } }
        #expect(free <= .milliseconds(100), "\(free)")
        #expect(l.bytesByClass == [.compaction: 12 * Self.MiB])
        try await loop.shutdownGracefully()
    }

    /// Holds every PUT until the test lets it go (`release`).
    final class HeldPutsStore: ForwardingStore, Sendable {
        let base = InMemoryObjectStore()
        let held = NIOLockedValueBox<(puts: [OneShot<Void>], open: Bool)>(([], false))
        var count: Int { held.withLockedValue { $0.puts.count } }
        func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
            let go = OneShot<Void>()
            if !held.withLockedValue({ h in h.puts.append(go); return h.open }) { await go.wait() }
            try await base.put(key, body, ifNoneMatch: ifNoneMatch)
        }
        /// Lets the held PUTs go, and every later one (`forever`) or only those.
        func release(forever: Bool = false) {
            let puts = held.withLockedValue { h in
                if forever { h.open = true }
                return h.puts
            }
            for go in puts { go.resume(()) }
        }
    }

    /// The engine tells the limiter that produce is backed up while half its upload slots or
    /// more are taken, and that it is not once fewer are.
    @Test(.timeLimit(.minutes(1))) func theEngineReportsProduceBackedUpWhileHalfItsUploadSlotsAreTaken() async throws {
        let held = HeldPutsStore()
        let l = Self.limiter(compaction: 32 * Self.MiB, floor: 4 * Self.MiB)
        let f = try await EngineTests.fixture(store: ThrottledObjectStore(base: held, limiter: l))
        var config = EngineTests.oneFlush()
        config.maxConcurrentUploads = 4
        let e = try await EngineTests.engine(f, config: config)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        func flushOne(_ value: String) async -> StreamEngine.AppendTicket {
            let (b, h) = EngineTests.batch([value])
            let ticket = await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(30))
            let before = held.count
            e.flush()
            while held.count == before { try? await Task.sleep(for: .milliseconds(1)) }
            return ticket
        }
        let first = await flushOne("a")
        #expect(!l.produceBackedUp, "one upload of four under way")
        let second = await flushOne("b")
        #expect(l.produceBackedUp, "two upload slots of four taken")
        held.release()
        _ = await first.result()
        _ = await second.result()
        #expect(!l.produceBackedUp, "no upload under way")
        held.release(forever: true)
        await e.shutdown()
        await committer.value
    }

    /// Compaction, then a catch-up read, ask while the total is in debt. The limiter runs on a
    /// test loop, whose clock is the buckets' too: time moves only when the test moves it, so
    /// a loaded machine cannot change the outcome (on the real clock, a compaction task that
    /// started a second late once found the debt paid and went alone). The first step lets
    /// exactly one request through, and the second step is taken only once it is recorded.
    static func race(total: Int, floor: Int = 0) async -> [IOClass] {
        var limits = ThroughputLimits()
        limits.totalBytesPerSec = total
        limits.compactionFloorBytesPerSec = floor
        let loop = NIOAsyncTestingEventLoop()
        let l = ThroughputLimiter(limits: limits, loop: loop)
        let order = NIOLockedValueBox<[IOClass]>([])
        let recorded = { order.withLockedValue { $0.count } }
        await l.acquire(3 * MiB, as: .produce)  // 2 MiB of debt: a second at 2 MiB/s
        await withTaskGroup(of: Void.self) { g in
            g.addTask {
                await l.acquire(MiB, as: .compaction)
                order.withLockedValue { $0.append(.compaction) }
            }
            while l.waitingRequests + recorded() < 1 { try? await Task.sleep(for: .milliseconds(1)) }
            g.addTask {
                await l.acquire(MiB, as: .catchUpRead)
                order.withLockedValue { $0.append(.catchUpRead) }
            }
            while l.waitingRequests + recorded() < 2 { try? await Task.sleep(for: .milliseconds(1)) }
            // The debt is paid at 1 s; the first to go takes the refilled MiB and leaves the
            // total closed until 1.5 s.
            await loop.advanceTime(by: .milliseconds(1200))
            while recorded() < 1 { try? await Task.sleep(for: .milliseconds(1)) }
            await loop.advanceTime(by: .seconds(1))
        }
        try? await loop.shutdownGracefully()
        return order.withLockedValue { $0 }
    }

    @Test func aHigherClassGoesFirstOnTheTotal() async {
        #expect(await Self.race(total: 2 * Self.MiB) == [.catchUpRead, .compaction])
    }

    @Test func compactionTakesItsFloorWhenTheTotalIsUsedUp() async {
        #expect(await Self.race(total: 2 * Self.MiB, floor: 50 * Self.MiB) == [.compaction, .catchUpRead])
    }

    @Test func theStoreCountsEachRequestInTheClassOfItsTask() async throws {
        let l = Self.limiter(total: 1 << 40)
        let store = ThrottledObjectStore(base: InMemoryObjectStore(), limiter: l)
        try await store.put("a", ByteBuffer(repeating: 1, count: 1000), ifNoneMatch: true)
        _ = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("a", range: 0..<100) }
        _ = try await IOClass.$current.withValue(.compaction) { try await store.get("a", range: nil) }
        #expect(l.bytesByClass == [.produce: 1000, .catchUpRead: 100, .compaction: 1000])
    }

    /// Records each GET's range, and how many catch-up bytes the limiter had let through then.
    final class RecordingStore: ForwardingStore, Sendable {
        let base = InMemoryObjectStore()
        let gets = NIOLockedValueBox<[(Range<Int>?, Int)]>([])
        let limiter: ThroughputLimiter

        init(limiter: ThroughputLimiter) { self.limiter = limiter }

        func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
            let counted = limiter.bytesByClass[.catchUpRead] ?? 0
            gets.withLockedValue { $0.append((range, counted)) }
            return try await base.get(key, range: range)
        }
    }

    /// Sends each PUT in parts of `partBytes`, asking `TransferPacing` before each, and records
    /// how many compaction bytes the limiter had let through as each part went. Receives each
    /// GET in parts of `partBytes` too, asking after each, and records the same of catch-up
    /// bytes as each part was read.
    final class PartedStore: ForwardingStore, Sendable {
        let base = InMemoryObjectStore()
        let sent = NIOLockedValueBox<[Int]>([])
        let limiter: ThroughputLimiter
        let partBytes: Int

        init(limiter: ThroughputLimiter, partBytes: Int) {
            self.limiter = limiter
            self.partBytes = partBytes
        }

        let received = NIOLockedValueBox<[Int]>([])

        func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
            for start in stride(from: 0, to: body.readableBytes, by: partBytes) {
                await TransferPacing.current?.take(min(partBytes, body.readableBytes - start))
                let counted = limiter.bytesByClass[.compaction] ?? 0
                sent.withLockedValue { $0.append(counted) }
            }
            try await base.put(key, body, ifNoneMatch: ifNoneMatch)
        }

        var pacesDownloads: Bool { true }

        func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
            let body = try await base.get(key, range: range)
            for start in stride(from: 0, to: body.readableBytes, by: partBytes) {
                received.withLockedValue { $0.append(limiter.bytesByClass[.catchUpRead] ?? 0) }
                await TransferPacing.current?.take(min(partBytes, body.readableBytes - start))
            }
            return body
        }
    }

    @Test func aLimitedClassGetReadsEachPartOnlyOnceTheOneBeforeWasLetThrough() async throws {
        let l = Self.limiter(catchUp: 1 << 40)
        let parted = PartedStore(limiter: l, partBytes: 1000)
        let store = ThrottledObjectStore(base: parted, limiter: l, chunkBytes: 3000)
        try await store.put("o", ByteBuffer(repeating: 5, count: 4500), ifNoneMatch: true)
        let got = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("o", range: 0..<4500) }
        #expect(got == ByteBuffer(repeating: 5, count: 4500))
        // Counted as it arrived, not before each GET went: chunks of 3000, parts of 1000.
        #expect(parted.received.withLockedValue { $0 } == [0, 1000, 2000, 3000, 4000])
        #expect(l.bytesByClass == [.produce: 4500, .catchUpRead: 4500])

        // A whole object: paced the same, its size unknown before.
        parted.received.withLockedValue { $0 = [] }
        _ = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("o", range: nil) }
        #expect(parted.received.withLockedValue { $0 } == [4500, 5500, 6500, 7500, 8500])
        #expect(l.bytesByClass == [.produce: 4500, .catchUpRead: 9000])

        // A class with no limit is not paced: counted once, as before.
        parted.received.withLockedValue { $0 = [] }
        _ = try await IOClass.$current.withValue(.compaction) { try await store.get("o", range: 0..<4500) }
        #expect(l.bytesByClass == [.produce: 4500, .catchUpRead: 9000, .compaction: 4500])
    }

    @Test func aLimitedClassPutWaitsForEachPartTheStoreSends() async throws {
        let l = Self.limiter(compaction: 1 << 40)
        let parted = PartedStore(limiter: l, partBytes: 1000)
        let store = ThrottledObjectStore(base: parted, limiter: l)
        try await IOClass.$current.withValue(.compaction) { try await store.put("o", ByteBuffer(repeating: 2, count: 3500), ifNoneMatch: true) }
        // Each part was let through before it went, not the whole body at first.
        #expect(parted.sent.withLockedValue { $0 } == [1000, 2000, 3000, 3500])
        #expect(l.bytesByClass == [.compaction: 3500])

        // A store that sends without asking: the body is counted once it was sent.
        let plain = ThrottledObjectStore(base: InMemoryObjectStore(), limiter: l)
        try await IOClass.$current.withValue(.compaction) { try await plain.put("p", ByteBuffer(repeating: 3, count: 700), ifNoneMatch: true) }
        #expect(l.bytesByClass == [.compaction: 4200])
        // Produce never waits: counted at once, the store not asked to pace.
        parted.sent.withLockedValue { $0 = [] }
        try await store.put("q", ByteBuffer(repeating: 4, count: 1500), ifNoneMatch: true)
        #expect(parted.sent.withLockedValue { $0 } == [4200, 4200])
        #expect(l.bytesByClass == [.compaction: 4200, .produce: 1500])
    }

    /// A recording store behind a limiter with 1000-byte chunks, holding object "o" of 5000
    /// distinct-looking bytes (written as produce).
    static func recordedObject(_ l: ThroughputLimiter) async throws -> (RecordingStore, ThrottledObjectStore, ByteBuffer) {
        let base = RecordingStore(limiter: l)
        let store = ThrottledObjectStore(base: base, limiter: l, chunkBytes: 1000)
        let object = ByteBuffer(bytes: (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try await store.put("o", object, ifNoneMatch: true)
        return (base, store, object)
    }

    @Test func aLimitedClassPlainGetOfALargeRangeGoesInChunksTooAndReadsBackWhole() async throws {
        let l = Self.limiter(compaction: 1 << 40)
        let (base, store, object) = try await Self.recordedObject(l)
        let got = try await IOClass.$current.withValue(.compaction) { try await store.get("o", range: 300..<3900) }
        #expect(got == object.getSlice(at: 300, length: 3600)!)
        #expect(base.gets.withLockedValue { $0.map(\.0) } == [300..<1300, 1300..<2300, 2300..<3300, 3300..<3900])
        #expect(l.bytesByClass == [.produce: 5000, .compaction: 3600])

        // A class with no limit (no total, no cap of its own) sends its GET as it is.
        base.gets.withLockedValue { $0 = [] }
        _ = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("o", range: 0..<5000) }
        _ = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("o", range: 0..<5000, pieceBytes: 100) }
        #expect(base.gets.withLockedValue { $0.map(\.0) } == [0..<5000, 0..<5000])
    }

    @Test func aLimitedClassGetsALargeRangeInChunksOfTheObjectEachCountedBeforeItIsSent() async throws {
        let l = Self.limiter(catchUp: 1 << 40)
        let (base, store, object) = try await Self.recordedObject(l)
        let pieces = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("o", range: 300..<3900, pieceBytes: 100) }
        // Cut at the object's multiples of 1000: the chunks the server keeps, each whole.
        #expect(base.gets.withLockedValue { $0.map(\.0) } == [300..<1000, 1000..<2000, 2000..<3000, 3000..<3900])
        // Each GET went once its own bytes were let through, not all of them at first.
        #expect(base.gets.withLockedValue { $0.map(\.1) } == [700, 1700, 2700, 3600])
        #expect(pieces.map(\.readableBytes) == Array(repeating: 100, count: 36))
        #expect(pieces.joined() == object.getSlice(at: 300, length: 3600)!)
        #expect(l.bytesByClass == [.produce: 5000, .catchUpRead: 3600])

        // A range that starts within a piece: cut every chunk from its start, pieces still whole.
        base.gets.withLockedValue { $0 = [] }
        let odd = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("o", range: 250..<5000, pieceBytes: 300) }
        #expect(base.gets.withLockedValue { $0.map(\.0) } == [250..<1450, 1450..<2650, 2650..<3850, 3850..<5000])
        #expect(odd.dropLast().allSatisfy { $0.readableBytes == 300 } && odd.joined() == object.getSlice(at: 250, length: 4750)!)

        // Produce (recovery) and ranges of at most a chunk go in one GET.
        base.gets.withLockedValue { $0 = [] }
        _ = try await store.get("o", range: 0..<5000, pieceBytes: 100)
        _ = try await IOClass.$current.withValue(.catchUpRead) { try await store.get("o", range: 0..<1000, pieceBytes: 100) }
        #expect(base.gets.withLockedValue { $0.map(\.0) } == [0..<5000, 0..<1000])
    }
}
