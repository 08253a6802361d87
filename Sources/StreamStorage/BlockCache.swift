import DequeModule
import Metadata
import NIOConcurrencyHelpers
import NIOCore
import ObjectStore

/// LRU cache of object blocks for catch-up reads, bounded in bytes (`block.cache.bytes`).
///
/// Objects are read in aligned blocks of `blockSize` bytes: block `i` of an object holds its
/// bytes `i*blockSize ..< (i+1)*blockSize` (the last one is shorter: the object ends there).
/// A miss is a ranged GET of whole blocks (in parallel parts of `partBytes`), from the first block missing through the
/// reader's readahead window. Each reader (a stream) has its own window: it starts at
/// `blockSize` (512 KiB), doubles with every GET of a read that continues where the reader's
/// previous read ended (or re-reads within it), up to `maxReadahead` (32 MiB), falls back to
/// `blockSize` when the reader jumps, and halves when a block it read ahead is evicted before
/// anyone read it. GETs under way read ahead no further than half of `capacity` in all, and
/// each reader's readahead is at most its share of that half: half of `capacity` over the
/// readers that read in the last `activeNanos`. A readahead GET ends on a multiple of a power
/// of two blocks near its size (at most `partBytes`), so a sequential reader's GETs are
/// aligned: object stores keep objects in chunks (SeaweedFS 4 MiB, multipart parts), and a
/// range across two of them reads both.
///
/// Every block is a buffer of its own (`fetch` brings them so: the object store reads a GET's
/// body straight into them), so a cached block never pins a larger GET buffer. The GETs under
/// way count against `capacity` too: a GET evicts blocks to make room for what it brings.
public final class BlockCache: Sendable {
    private struct Key: Hashable {
        var object: String
        var index: Int
    }

    private struct Entry {
        var buffer: ByteBuffer
        var tick: UInt64
        /// The reader that read this block ahead, until somebody reads it.
        var unreadBy: Int64?
        /// The object ends in this block (a GET asked for more and got less): nothing past
        /// it is GET.
        var last = false
        /// Read ahead (by a prefetch, or past what its read asked for) and not read yet.
        var prefetched = false
    }

    private struct Reader {
        var window: Int
        /// The offsets of the reader's last read.
        var last: Range<Int64>
        /// When it last read (`clock`).
        var seen: UInt64 = 0
    }

    private struct State {
        var blocks: [Key: Entry] = [:]
        var readers: [Int64: Reader] = [:]
        var bytes = 0
        var tick: UInt64 = 0
        var hits = 0
        var misses = 0
        var gets = 0
        /// Bytes of GETs under way: their buffers count against the cache's budget.
        var fetching = 0
        /// Blocks a GET under way will bring, with the reads waiting for them: a read never
        /// GETs a block that is already on its way (sixteen partitions catching up through
        /// the same stream set objects share one GET of each).
        var pending: [Key: [OneShot<Void>]] = [:]
        var prefetches = 0
        var sharedTaken = 0
        var sharedWindows = 0
        var sharedRefused = 0
        /// Bytes of cached blocks read ahead that nobody read yet: prefetches stop while these
        /// and the GETs under way hold half the budget, or they would evict each other's
        /// blocks before their readers come (objects fetched twice, in pieces).
        var unreadPrefetched = 0

        /// Eviction order: blocks as they were cached or last read, in tick order, those read
        /// (or asked for) apart from those read ahead and not read yet. An entry whose block
        /// has a newer tick (read since) or went is stale and skipped. (A scan of every block
        /// for the oldest, per eviction, grew with the cache.)
        var readOrder = Deque<(tick: UInt64, key: Key)>()
        var aheadOrder = Deque<(tick: UInt64, key: Key)>()

        func cachedOrPending(_ k: Key) -> Bool { blocks[k] != nil || pending[k] != nil }

        /// Caches or re-ticks block `k`, and queues it for eviction in its order.
        mutating func put(_ e: Entry, at k: Key) {
            blocks[k] = e
            if e.prefetched { aheadOrder.append((e.tick, k)) } else { readOrder.append((e.tick, k)) }
            // Stale entries pile up when blocks are read again and again without evictions.
            if readOrder.count + aheadOrder.count > 2 * blocks.count + 1024 {
                let live = blocks.sorted { $0.value.tick < $1.value.tick }
                readOrder = Deque(live.filter { !$0.value.prefetched }.map { ($0.value.tick, $0.key) })
                aheadOrder = Deque(live.filter { $0.value.prefetched }.map { ($0.value.tick, $0.key) })
            }
        }

        /// The block to evict: the least recently used of those read, else of those read ahead.
        mutating func nextVictim() -> (key: Key, entry: Entry)? {
            while let (tick, k) = readOrder.first {
                if let e = blocks[k], e.tick == tick { return (k, e) }
                readOrder.removeFirst()
            }
            while let (tick, k) = aheadOrder.first {
                if let e = blocks[k], e.tick == tick { return (k, e) }
                aheadOrder.removeFirst()
            }
            return nil
        }
        /// Whether the object is known to end before block `k`.
        func pastEnd(_ k: Key) -> Bool { k.index > 0 && blocks[Key(object: k.object, index: k.index - 1)]?.last == true }
    }

    /// One read: bytes `range` of `object`, which hold a reader's stream offsets `offsets`;
    /// readahead may run to `readaheadEnd` (where the reader's data in this object ends).
    /// With `reader` nil (lookups by time, reloads) no readahead state is kept or used.
    public struct Request: Sendable {
        public var object: String
        public var range: Range<Int>
        public var reader: Int64?
        public var offsets: Range<Int64>
        public var readaheadEnd: Int
        /// On a miss, GET at least these bytes of the object (of a stream set object, whose other
        /// streams' readers want them too): empty for none.
        public var shared: Range<Int>

        public init(object: String, range: Range<Int>, reader: Int64? = nil, offsets: Range<Int64> = 0..<0, readaheadEnd: Int = 0,
                    shared: Range<Int> = 0..<0) {
            self.object = object
            self.range = range
            self.reader = reader
            self.offsets = offsets
            self.readaheadEnd = readaheadEnd
            self.shared = shared
        }
    }

    public struct Stats: Sendable, Equatable {
        public var bytes: Int
        public var blocks: Int
        public var hits: Int
        public var misses: Int
        /// Ranged GETs made.
        public var gets: Int
        /// Prefetches started (`prefetch`).
        public var prefetches: Int = 0
        /// Misses that asked for shared bytes (`Request.shared`): GET with them all, with the
        /// aligned windows around the read only, or without them, for want of room in half
        /// the budget.
        public var sharedTaken: Int = 0
        public var sharedWindows: Int = 0
        public var sharedRefused: Int = 0
    }

    private let state = NIOLockedValueBox(State())
    public let capacity: Int
    public let blockSize: Int
    public let maxReadahead: Int
    /// A miss larger than this is fetched as parts of this size, all at once: one connection
    /// to an object store carries far less than the store serves in all (AWS's guidance is
    /// parallel ranged GETs of 8 to 16 MB), and a 32 MiB readahead in one GET made the
    /// reader wait for all of it at one connection's speed.
    public let partBytes: Int
    /// A reader that read within this long counts as active: it gets a share of the readahead.
    public let activeNanos: UInt64
    /// Monotonic nanoseconds; tests pass their own.
    let clock: @Sendable () -> UInt64

    public init(capacity: Int, blockSize: Int = 512 << 10, maxReadahead: Int = 32 << 20, partBytes: Int = 8 << 20,
                activeNanos: UInt64 = 2_000_000_000, clock: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }) {
        self.capacity = capacity
        self.blockSize = max(1, blockSize)
        self.maxReadahead = max(self.blockSize, maxReadahead)
        self.partBytes = max(1, partBytes / self.blockSize) * self.blockSize
        self.activeNanos = activeNanos
        self.clock = clock
    }

    /// The bytes of `request.range`, from cached blocks, blocks other GETs under way bring,
    /// and at most one miss, fetched with ranged GETs (`fetch`, called with block-aligned
    /// ranges of about `partBytes`, in parallel, that may run past the object's end; it
    /// answers in buffers of `blockSize` bytes, the last one shorter where the object ends).
    public func read(_ request: Request, fetch: @escaping @Sendable (Range<Int>) async throws -> [ByteBuffer]) async throws -> ByteBuffer {
        try await readParts(request, fetch: fetch).joined()
    }

    /// The same bytes as slices of the blocks they lie in, in order: a read across blocks
    /// copies nothing (assembling such reads was a tenth of the broker's CPU in a catch-up).
    public func readParts(_ request: Request, fetch: @escaping @Sendable (Range<Int>) async throws -> [ByteBuffer]) async throws -> [ByteBuffer] {
        let range = request.range
        guard !range.isEmpty else { return [] }
        let first = range.lowerBound / blockSize
        let last = (range.upperBound - 1) / blockSize
        enum Step {
            case wait(OneShot<Void>)
            case ready([Int: ByteBuffer], get: Range<Int>?)
        }
        var window = blockSize
        var sawReader = false
        let now = request.reader == nil ? 0 : clock()
        var blocks: [Int: ByteBuffer] = [:]
        while true {
            // Under the lock: take what is cached, wait for what is on its way, decide what to GET.
            let step: Step = state.withLockedValue { s in
                if let id = request.reader, !sawReader {
                    sawReader = true
                    var r = s.readers[id] ?? Reader(window: blockSize, last: -1..<(-1))
                    // Sequential: it starts where the last read ended, or within it (a fetch that
                    // took only part of a range reads that range again).
                    let o = request.offsets.lowerBound
                    if o < r.last.lowerBound || o > r.last.upperBound { r.window = blockSize }
                    r.last = request.offsets
                    r.seen = now
                    window = r.window
                    s.readers[id] = r
                }
                var have: [Int: ByteBuffer] = [:]
                var firstMissing: Int?
                for i in first...last {
                    let k = Key(object: request.object, index: i)
                    if var e = s.blocks[k] {
                        s.tick += 1
                        e.tick = s.tick
                        e.unreadBy = nil
                        if e.prefetched {
                            e.prefetched = false
                            s.unreadPrefetched -= e.buffer.readableBytes
                        }
                        s.put(e, at: k)
                        have[i] = e.buffer
                    } else if s.pending[k] != nil {
                        let w = OneShot<Void>()
                        s.pending[k]!.append(w)
                        return .wait(w)
                    } else if firstMissing == nil {
                        firstMissing = i
                    }
                }
                guard let firstMissing else {
                    s.hits += 1
                    return .ready(have, get: nil)
                }
                s.misses += 1
                // Whole blocks from the first missing one through the readahead window (within
                // the reader's data), stopping early at a block already cached or on its way.
                // Readahead only as far as the GETs under way stay within half the cache's
                // budget: sixteen readers each reading 32 MiB ahead held 214 MB outside it. And
                // each reader only its share of that half: the first few readers of stream
                // objects took all of it, and the other twelve GET 1 MB at a time (56 MB/s
                // from SeaweedFS, which reads a whole 4 MiB chunk for each).
                var ahead = min(window, max(0, capacity / 2 - s.fetching))
                if request.reader != nil {
                    let active = max(1, s.readers.values.reduce(0) { $0 + (now &- $1.seen < activeNanos ? 1 : 0) })
                    ahead = min(ahead, max(blockSize, capacity / 2 / active / blockSize * blockSize))
                }
                var want = max(range.upperBound, min(range.lowerBound + ahead, max(request.readaheadEnd, range.upperBound)))
                // Aligned: the GET ends on a multiple of the largest power of two blocks within
                // it (at most `partBytes`), so the next one starts there, unless that would
                // not reach the bytes asked for.
                let align = min(partBytes, blockSize << (Int.bitWidth - 1 - max(1, ahead / blockSize).leadingZeroBitCount))
                if align > blockSize, want < request.readaheadEnd, want / align * align >= range.upperBound {
                    want = want / align * align
                }
                var start = firstMissing
                // The shared bytes only while the GETs under way and the blocks read ahead that
                // nobody read yet leave room for them within half the budget: readers spread over
                // more objects than the cache holds GET each object again and again (7.6 GB of
                // GETs for a 2 GB catch-up through a 128 MiB cache).
                // Without room for all of them, the aligned windows of `partBytes` around the read
                // (the neighbouring streams' data, which their readers want next), if those fit:
                // else each reader GETs its own data, a GET per stream per object (2x the GETs,
                // and SeaweedFS reads a whole 4 MiB chunk for each).
                if !request.shared.isEmpty {
                    let room = capacity / 2 - s.fetching - s.unreadPrefetched
                    var shared = request.shared
                    if shared.count > room {
                        shared = max(shared.lowerBound, range.lowerBound / partBytes * partBytes)
                            ..< min(shared.upperBound, (range.upperBound + partBytes - 1) / partBytes * partBytes)
                    }
                    if shared.count <= room {
                        if shared == request.shared { s.sharedTaken += 1 } else { s.sharedWindows += 1 }
                        want = max(want, shared.upperBound)
                        let floor = shared.lowerBound / blockSize
                        while start > floor && !s.cachedOrPending(Key(object: request.object, index: start - 1)) { start -= 1 }
                    } else {
                        s.sharedRefused += 1
                    }
                }
                var end = (want + blockSize - 1) / blockSize
                var i = last + 1
                while i < end {
                    let k = Key(object: request.object, index: i)
                    if s.cachedOrPending(k) || s.pastEnd(k) {
                        end = i
                        break
                    }
                    i += 1
                }
                if let id = request.reader {
                    // This read needed a GET: a sequential reader's window grows for the next one.
                    s.readers[id]!.window = min(window * 2, maxReadahead)
                }
                return .ready(have, get: take(&s, object: request.object, blocks: start..<end))
            }
            switch step {
            case .wait(let w):
                await w.wait()
                continue
            case .ready(let have, let get):
                blocks = have
                if let get {
                    let fresh = try await fetchRun(object: request.object, get, needed: first...last, reader: request.reader, fetch: fetch)
                    for (i, b, _) in fresh where first <= i && i <= last { blocks[i] = b }
                }
            }
            break
        }
        var out: [ByteBuffer] = []
        out.reserveCapacity(last - first + 1)
        var pos = range.lowerBound
        while pos < range.upperBound {
            let i = pos / blockSize
            guard let b = blocks[i] else { throw BlockCacheError(description: "\(request.object): bytes \(range) run past the object's end") }
            let inBlock = pos - i * blockSize
            let n = min(range.upperBound - pos, b.readableBytes - inBlock)
            guard n > 0 else { throw BlockCacheError(description: "\(request.object): bytes \(range) run past the object's end") }
            out.append(b.getSlice(at: b.readerIndex + inBlock, length: n)!)
            pos += n
        }
        return out
    }

    /// Starts a GET, in the background, of the blocks of `range` of `object` that are neither
    /// cached nor on their way, from the first such block on: the engine asks for the objects
    /// a catch-up reader will read next, so that their GETs overlap its reads of this one.
    /// Nothing when GETs under way and prefetched blocks not read yet hold half the budget.
    public func prefetch(object: String, range: Range<Int>, fetch: @escaping @Sendable (Range<Int>) async throws -> [ByteBuffer]) {
        guard !range.isEmpty else { return }
        let get: Range<Int>? = state.withLockedValue { s in
            var start = range.lowerBound / blockSize
            let end = (range.upperBound + blockSize - 1) / blockSize
            while start < end && s.cachedOrPending(Key(object: object, index: start)) { start += 1 }
            var stop = start
            while stop < end && !s.cachedOrPending(Key(object: object, index: stop)) && !s.pastEnd(Key(object: object, index: stop)) { stop += 1 }
            guard start < stop, s.fetching + s.unreadPrefetched + (stop - start) * blockSize <= capacity / 2 else { return nil }
            s.prefetches += 1
            return take(&s, object: object, blocks: start..<stop)
        }
        guard let get else { return }
        Task {
            _ = try? await fetchRun(object: object, get, needed: nil, reader: nil, fetch: fetch)
        }
    }

    /// Marks `blocks` as on their way and counts the GET; returns its byte range.
    private func take(_ s: inout State, object: String, blocks: Range<Int>) -> Range<Int> {
        for i in blocks { s.pending[Key(object: object, index: i)] = [] }
        s.fetching += blocks.count * blockSize
        evictToBudget(&s)
        let get = blocks.lowerBound * blockSize..<blocks.upperBound * blockSize
        s.gets += partsOf(get).count
        return get
    }

    /// A GET's byte range as parts that end on multiples of `partBytes`, a short first or last
    /// one joined to its neighbour.
    private func partsOf(_ get: Range<Int>) -> [Range<Int>] {
        var cuts = [get.lowerBound]
        var next = (get.lowerBound / partBytes + 1) * partBytes
        while next < get.upperBound {
            cuts.append(next)
            next += partBytes
        }
        var parts = cuts.indices.map { i in cuts[i]..<(i + 1 < cuts.count ? cuts[i + 1] : get.upperBound) }
        if parts.count > 1, parts.last!.count < partBytes / 4 {
            let tail = parts.removeLast()
            parts[parts.count - 1] = parts[parts.count - 1].lowerBound..<tail.upperBound
        }
        if parts.count > 1, parts[0].count < partBytes / 4 {
            let head = parts.removeFirst()
            parts[0] = head.lowerBound..<parts[0].upperBound
        }
        return parts
    }

    /// GETs `get` (taken with `take`) in parallel parts, caches the blocks, and wakes the
    /// reads waiting for them, whatever happens. Parts holding a `needed` block must arrive;
    /// the others (read ahead, maybe past the object's end) may fail.
    private func fetchRun(object: String, _ get: Range<Int>, needed: ClosedRange<Int>?, reader: Int64?,
                          fetch: @escaping @Sendable (Range<Int>) async throws -> [ByteBuffer]) async throws -> [(Int, ByteBuffer, last: Bool)] {
        var fresh: [(Int, ByteBuffer, last: Bool)] = []
        defer { finish(object: object, get, fresh: fresh, requested: needed, reader: reader) }
        fresh = try await withThrowingTaskGroup(of: [(Int, ByteBuffer, last: Bool)].self) { group in
            for part in partsOf(get) {
                let partBlocks = part.lowerBound / blockSize...(part.upperBound - 1) / blockSize
                let must = needed.map { partBlocks.overlaps($0) } ?? false
                group.addTask {
                    guard must else { return (try? await fetch(part)).flatMap { try? self.blocks(of: $0, at: part.lowerBound, asked: part.count) } ?? [] }
                    return try self.blocks(of: try await fetch(part), at: part.lowerBound, asked: part.count)
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        return fresh
    }

    /// A GET's bytes, from object position `at` (block-aligned), as blocks: the pieces of
    /// `blockSize` it came in. Fewer bytes than `asked` (the store clipped the range) make the
    /// last one the object's.
    private func blocks(of pieces: [ByteBuffer], at: Int, asked: Int) throws -> [(Int, ByteBuffer, last: Bool)] {
        let total = pieces.readableBytes
        var fresh: [(Int, ByteBuffer, last: Bool)] = []
        for (i, piece) in pieces.enumerated() {
            guard piece.readableBytes == blockSize || (i == pieces.count - 1 && piece.readableBytes > 0 && piece.readableBytes < blockSize) else {
                throw BlockCacheError(description: "a GET at \(at) came in a piece of \(piece.readableBytes) bytes, not a block of \(blockSize)")
            }
            fresh.append((at / blockSize + i, piece, last: i == pieces.count - 1 && total < asked))
        }
        return fresh
    }

    /// Caches a GET's blocks (`fresh`, maybe fewer than it asked for), ends its pending
    /// marks and wakes their waiters: they look again, and GET what did not come.
    private func finish(object: String, _ get: Range<Int>, fresh: [(Int, ByteBuffer, last: Bool)], requested: ClosedRange<Int>?, reader: Int64?) {
        let waiters: [OneShot<Void>] = state.withLockedValue { s in
            s.fetching -= get.count
            var waiters: [OneShot<Void>] = []
            for i in (get.lowerBound / blockSize)..<(get.upperBound / blockSize) {
                waiters += s.pending.removeValue(forKey: Key(object: object, index: i)) ?? []
            }
            for (i, b, isLast) in fresh where b.readableBytes <= capacity {
                s.tick += 1
                let k = Key(object: object, index: i)
                if let old = s.blocks[k] {
                    s.bytes -= old.buffer.readableBytes
                    if old.prefetched { s.unreadPrefetched -= old.buffer.readableBytes }
                }
                // Read ahead (by a prefetch, or past what a read asked for): unread until a read comes.
                let ahead = !(requested?.contains(i) ?? false)
                s.put(Entry(buffer: b, tick: s.tick, unreadBy: ahead ? reader : nil, last: isLast, prefetched: ahead), at: k)
                s.bytes += b.readableBytes
                if ahead { s.unreadPrefetched += b.readableBytes }
            }
            evictToBudget(&s)
            return waiters
        }
        for w in waiters { w.resume(()) }
    }

    /// Evicts blocks until they and the GETs under way fit in `capacity`: both are memory.
    /// Blocks already read go first, least recently used first: a catch-up reader seldom comes
    /// back, while a block read ahead is evicted only when nothing read is left (read-ahead is
    /// held to half the budget, so that is rare).
    private func evictToBudget(_ s: inout State) {
        while s.bytes + s.fetching > capacity, let victim = s.nextVictim() {
            s.bytes -= victim.entry.buffer.readableBytes
            if victim.entry.prefetched { s.unreadPrefetched -= victim.entry.buffer.readableBytes }
            s.blocks[victim.key] = nil
            // Read ahead for nothing: that reader's window was too large for the cache.
            if let id = victim.entry.unreadBy, var r = s.readers[id] {
                r.window = max(blockSize, r.window / 2)
                s.readers[id] = r
            }
        }
    }

    /// The readahead window of a reader (what its next sequential miss GETs at most).
    public func readahead(reader: Int64) -> Int {
        state.withLockedValue { $0.readers[reader]?.window ?? blockSize }
    }

    /// Forgets a reader (its stream was closed).
    public func forget(reader: Int64) {
        _ = state.withLockedValue { $0.readers.removeValue(forKey: reader) }
    }

    public var stats: Stats {
        state.withLockedValue { Stats(bytes: $0.bytes, blocks: $0.blocks.count, hits: $0.hits, misses: $0.misses, gets: $0.gets, prefetches: $0.prefetches,
                                        sharedTaken: $0.sharedTaken, sharedWindows: $0.sharedWindows, sharedRefused: $0.sharedRefused) }
    }
}

public struct BlockCacheError: Error, CustomStringConvertible {
    public var description: String
}
