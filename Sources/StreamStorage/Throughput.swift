import NIOConcurrencyHelpers
import NIOCore
import ObjectStore

/// `object.store.max.bytes.per.sec`, `catchup.read.max.bytes.per.sec`,
/// `compaction.max.bytes.per.sec` and `compaction.min.bytes.per.sec` (0: no limit).
public struct ThroughputLimits: Sendable, Equatable {
    /// All classes together.
    public var totalBytesPerSec = 0
    /// Catch-up reads on their own.
    public var catchUpBytesPerSec = 0
    /// Compaction on its own (bytes read plus written). Its requests are paced one by one,
    /// so its share of the object store is spread evenly: a compaction run at the store's
    /// full speed followed by a pause slowed the WAL uploads beside it (bench/peers' e2e
    /// phase: produce p99 589-750 ms against 247-356 with no compaction).
    public var compactionBytesPerSec = 32 << 20
    /// What compaction may take even when the total is used up, so that object and row
    /// counts stay bounded under sustained produce.
    public var compactionFloorBytesPerSec = 4 << 20

    public init() {}

    public var isUnlimited: Bool { IOClass.allCases.allSatisfy { !isLimited($0) } }

    /// Whether requests of `cls` may have to wait.
    public func isLimited(_ cls: IOClass) -> Bool {
        switch cls {
        case .produce: false
        case .catchUpRead: totalBytesPerSec > 0 || catchUpBytesPerSec > 0
        case .compaction: totalBytesPerSec > 0 || compactionBytesPerSec > 0
        }
    }
}

/// One token-bucket limiter over object-store bandwidth. Produce takes its bytes at once
/// (the total may go into debt); the other classes wait for the total in priority order
/// (a class waiting on the total holds back every class below it), catch-up reads and
/// compaction also for their own caps, and compaction may take from its floor instead of
/// the total. While produce is backed up (`produceBackedUp`: WAL objects wait for the ones
/// before them to land; `StreamEngine.backedUpChange`), the object store itself is what
/// limits produce, so compaction takes from its floor only, whatever the configured total. A request larger than a
/// bucket holds is let through once the bucket is full and leaves it in debt, so any size
/// passes at the configured rate.
public final class ThroughputLimiter: Sendable {
    struct Bucket {
        var rate: Double  // bytes per second; 0: unlimited
        var tokens: Double
        var burst: Double

        init(rate: Int) {
            self.rate = Double(rate)
            burst = max(Double(rate) / 10, Double(1 << 20))  // 100 ms of traffic, at least 1 MiB
            tokens = burst
        }

        var open: Bool { rate == 0 || tokens > 0 }

        mutating func refill(_ seconds: Double) {
            if rate > 0 { tokens = min(burst, tokens + rate * seconds) }
        }

        mutating func take(_ bytes: Int) {
            if rate > 0 { tokens -= Double(bytes) }
        }

        /// Seconds until `open`.
        var wait: Double { rate == 0 || tokens > 0 ? 0 : (-tokens + 1) / rate }
    }

    struct Waiter {
        var bytes: Int
        var go: @Sendable () -> Void
    }

    struct State {
        var total: Bucket
        var catchUp: Bucket
        var compaction: Bucket
        var floor: Bucket
        var last: NIODeadline
        var waiting: [IOClass: [Waiter]] = [:]
        var timerArmed = false
        var produceBackedUp = false
        var produceBackedUpVersion: UInt64 = 0
        /// Bytes let through, by class.
        var bytes: [IOClass: Int] = [:]

        /// The class's own cap, if it has one.
        subscript(cap cls: IOClass) -> Bucket? {
            get {
                switch cls {
                case .produce: nil
                case .catchUpRead: catchUp
                case .compaction: compaction
                }
            }
            set {
                switch cls {
                case .produce: break
                case .catchUpRead: catchUp = newValue!
                case .compaction: compaction = newValue!
                }
            }
        }
    }

    public let limits: ThroughputLimits
    private let state: NIOLockedValueBox<State>
    private let loop: any EventLoop

    public init(limits: ThroughputLimits, loop: any EventLoop) {
        self.limits = limits
        self.loop = loop
        state = NIOLockedValueBox(State(total: Bucket(rate: limits.totalBytesPerSec), catchUp: Bucket(rate: limits.catchUpBytesPerSec),
                                        compaction: Bucket(rate: limits.compactionBytesPerSec), floor: Bucket(rate: limits.compactionFloorBytesPerSec), last: loop.now))
    }

    /// Bytes let through so far, by class.
    public var bytesByClass: [IOClass: Int] { state.withLockedValue { $0.bytes } }

    /// Requests waiting, all classes together.
    public var waitingRequests: Int { state.withLockedValue { $0.waiting.values.reduce(0) { $0 + $1.count } } }

    /// Whether produce's uploads are backed up: while they are, compaction takes only its
    /// floor (`compaction.min.bytes.per.sec`), as it does when the total is used up.
    public var produceBackedUp: Bool { state.withLockedValue { $0.produceBackedUp } }

    /// Sets `produceBackedUp`. `version` orders the calls: one older than the last applied
    /// (computed before it, but arriving after) is ignored.
    public func setProduceBackedUp(_ on: Bool, version: UInt64) {
        let ready = state.withLockedValue { s -> [@Sendable () -> Void] in
            guard version > s.produceBackedUpVersion else { return [] }
            s.produceBackedUpVersion = version
            guard s.produceBackedUp != on else { return [] }
            s.produceBackedUp = on
            return pump(&s)
        }
        for go in ready { go() }
    }

    /// Waits until `bytes` of class `cls` may go to the object store.
    public func acquire(_ bytes: Int, as cls: IOClass) async {
        if !limits.isLimited(cls) {
            acquire(bytes, as: cls) {}
            return
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in acquire(bytes, as: cls) { c.resume() } }
    }

    /// Calls `then` once `bytes` of class `cls` may go to the object store: at once on this
    /// thread, or later on the limiter's event loop.
    public func acquire(_ bytes: Int, as cls: IOClass, then: @escaping @Sendable () -> Void) {
        if !limits.isLimited(cls) {
            state.withLockedValue { s in
                s.total.take(bytes)
                s.bytes[cls, default: 0] += bytes
            }
            return then()
        }
        let ready = state.withLockedValue { s -> [@Sendable () -> Void] in
            s.waiting[cls, default: []].append(Waiter(bytes: bytes, go: then))
            return pump(&s)
        }
        for go in ready { go() }
    }

    /// Lets through every waiter that may go now, highest class first; arms a timer for the
    /// rest. Returns the waiters' callbacks to call (outside the lock).
    private func pump(_ s: inout State) -> [@Sendable () -> Void] {
        let now = loop.now  // the loop's clock, so that a test loop's time is the buckets' too
        let seconds = Double((now - s.last).nanoseconds) / 1e9
        s.last = now
        s.total.refill(seconds)
        s.catchUp.refill(seconds)
        s.compaction.refill(seconds)
        s.floor.refill(seconds)
        var ready: [@Sendable () -> Void] = []
        var wake = Double.infinity
        // In priority order: a class waiting for the total finds it closed for the classes
        // below too (one bucket), so they wait behind it; compaction may use its floor.
        for cls in IOClass.allCases where cls != .produce {
            while let w = s.waiting[cls]?.first {
                let fromFloor = cls == .compaction && (!s.total.open || s.produceBackedUp) && s.floor.rate > 0
                let totalOK = fromFloor ? s.floor.open : s.total.open
                let classOK = s[cap: cls]?.open ?? true
                guard totalOK && classOK else {
                    if !totalOK { wake = min(wake, fromFloor ? s.floor.wait : s.total.wait) }
                    if !classOK { wake = min(wake, s[cap: cls]!.wait) }
                    break
                }
                s.waiting[cls]!.removeFirst()
                if fromFloor { s.floor.take(w.bytes) } else { s.total.take(w.bytes) }
                s[cap: cls]?.take(w.bytes)
                s.bytes[cls, default: 0] += w.bytes
                ready.append(w.go)
            }
        }
        if wake < .infinity && !s.timerArmed {
            s.timerArmed = true
            loop.scheduleTask(in: .nanoseconds(Int64(max(wake, 0.001) * 1e9))) { self.tick() }
        }
        return ready
    }

    private func tick() {
        let ready = state.withLockedValue { s -> [@Sendable () -> Void] in
            s.timerArmed = false
            return pump(&s)
        }
        for go in ready { go() }
    }
}

/// An object store whose GETs and PUTs wait for the limiter, by the class of the task that
/// makes them (`IOClass.current`).
///
/// A limited class's transfers go at the limiter's pace as they happen (`TransferPacing`): a
/// PUT waits for each part the store sends, and a store that `pacesDownloads` reads each part
/// of a GET only once the limiter let it through, so the server sends at that pace too. A
/// transfer counted whole before it starts would come at the server's full speed and leave
/// the limiter in debt: that burst of the server's, the broker's and the reader's CPU is what
/// a produce beside it waits behind. What a store sends or receives without asking is
/// counted after it was sent; a GET from a store that does not pace downloads is counted
/// before it is sent when its range is known, else after it arrived.
///
/// A ranged GET that a limited class makes is also sent as GETs of at most `chunkBytes` each,
/// one after another, so that no GET of a large object stays open long at a low limit.
public struct ThrottledObjectStore: ObjectStore {
    public let base: any ObjectStore
    public let limiter: ThroughputLimiter
    /// The largest GET a limited class sends (SeaweedFS's chunk size: a GET of a whole
    /// chunk costs it no more per byte than one of a whole object).
    public let chunkBytes: Int

    public init(base: any ObjectStore, limiter: ThroughputLimiter, chunkBytes: Int = 4 << 20) {
        self.base = base
        self.limiter = limiter
        self.chunkBytes = chunkBytes
    }

    public func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        let cls = IOClass.current
        guard limiter.limits.isLimited(cls) else {  // never waits: counted at once
            await limiter.acquire(body.readableBytes, as: cls)
            return try await base.put(key, body, ifNoneMatch: ifNoneMatch)
        }
        try await paced(cls, size: { body.readableBytes }) { try await base.put(key, body, ifNoneMatch: ifNoneMatch) }
    }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        if let range, limiter.limits.isLimited(IOClass.current), range.count > chunkBytes {
            return try await get(key, range: range, pieceBytes: chunkBytes).joined()
        }
        return try await throttled(range, { try await base.get(key, range: range) }, size: { $0.readableBytes })
    }

    public func get(_ key: String, range: Range<Int>?, pieceBytes: Int) async throws -> [ByteBuffer] {
        guard let range, limiter.limits.isLimited(IOClass.current), range.count > chunkBytes else {
            return try await throttled(range, { try await base.get(key, range: range, pieceBytes: pieceBytes) }, size: { $0.readableBytes })
        }
        var pieces: [ByteBuffer] = []
        for sub in Self.chunks(of: range, chunkBytes: chunkBytes, pieceBytes: max(1, pieceBytes)) {
            let got = try await throttled(sub, { try await base.get(key, range: sub, pieceBytes: pieceBytes) }, size: { $0.readableBytes })
            pieces += got
            if got.readableBytes < sub.count { break }  // the object ends here (S3 clips a range)
        }
        return pieces
    }

    /// `range` cut into GETs of at most `chunkBytes` (rounded up to whole pieces), whose pieces
    /// laid end to end are the pieces of `range`: cut at multiples of the chunk size in the
    /// object (the server's own chunks, whole) when `range` starts on a piece, else every
    /// chunk from its start.
    static func chunks(of range: Range<Int>, chunkBytes: Int, pieceBytes: Int) -> [Range<Int>] {
        let chunk = (max(chunkBytes, pieceBytes) + pieceBytes - 1) / pieceBytes * pieceBytes
        var cut = range.lowerBound % pieceBytes == 0 ? (range.lowerBound / chunk + 1) * chunk : range.lowerBound + chunk
        var out: [Range<Int>] = []
        var at = range.lowerBound
        while cut < range.upperBound {
            out.append(at..<cut)
            at = cut
            cut += chunk
        }
        out.append(at..<range.upperBound)
        return out
    }

    /// One GET: paced as it arrives by a store that `pacesDownloads`; else a range is counted
    /// before it is sent and a whole object after it arrived.
    private func throttled<T>(_ range: Range<Int>?, _ get: () async throws -> T, size: (T) -> Int) async throws -> T {
        let cls = IOClass.current
        if base.pacesDownloads && limiter.limits.isLimited(cls) { return try await paced(cls, size: size, get) }
        if let range { await limiter.acquire(range.count, as: cls) }
        let got = try await get()
        if range == nil { await limiter.acquire(size(got), as: cls) }
        return got
    }

    /// Runs `transfer` with the limiter pacing each part the store sends or receives
    /// (`TransferPacing`), then counts the bytes the store did not ask for.
    private func paced<T>(_ cls: IOClass, size: (T) -> Int, _ transfer: () async throws -> T) async throws -> T {
        let asked = NIOLockedValueBox(0)
        let pacing = TransferPacing { [limiter] bytes, then in
            asked.withLockedValue { $0 += bytes }
            limiter.acquire(bytes, as: cls, then: then)
        }
        let got = try await TransferPacing.$current.withValue(pacing) { try await transfer() }
        let rest = size(got) - asked.withLockedValue { $0 }
        if rest > 0 { await limiter.acquire(rest, as: cls) }
        return got
    }

    public func head(_ key: String) async throws -> ObjectInfo? { try await base.head(key) }
    public func list(prefix: String) async throws -> [ObjectInfo] { try await base.list(prefix: prefix) }
    public func delete(_ keys: [String]) async throws { try await base.delete(keys) }
}
