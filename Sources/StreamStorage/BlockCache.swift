import NIOConcurrencyHelpers
import NIOCore

/// LRU cache of object blocks for catch-up reads, bounded in bytes (`block.cache.bytes`).
///
/// Objects are read in aligned blocks of `blockSize` bytes: block `i` of an object holds its
/// bytes `i*blockSize ..< (i+1)*blockSize` (the last one is shorter: the object ends there).
/// A miss is a ranged GET of whole blocks (in parallel parts of `partBytes`), from the first block missing through the
/// reader's readahead window. Each reader (a stream) has its own window: it starts at
/// `blockSize` (512 KiB), doubles with every GET of a read that continues where the reader's
/// previous read ended (or re-reads within it), up to `maxReadahead` (32 MiB), falls back to
/// `blockSize` when the reader jumps, and halves when a block it read ahead is evicted before
/// anyone read it. GETs under way read ahead no further than half of `capacity` in all.
///
/// Every block is copied into its own right-sized buffer, so a cached block never pins a
/// larger GET buffer.
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
    }

    private struct Reader {
        var window: Int
        /// The offsets of the reader's last read.
        var last: Range<Int64>
    }

    private struct State {
        var blocks: [Key: Entry] = [:]
        var readers: [Int64: Reader] = [:]
        var bytes = 0
        var tick: UInt64 = 0
        var hits = 0
        var misses = 0
        var gets = 0
        /// Bytes of GETs under way: their buffers are memory outside the cache's budget.
        var fetching = 0
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

        public init(object: String, range: Range<Int>, reader: Int64? = nil, offsets: Range<Int64> = 0..<0, readaheadEnd: Int = 0) {
            self.object = object
            self.range = range
            self.reader = reader
            self.offsets = offsets
            self.readaheadEnd = readaheadEnd
        }
    }

    public struct Stats: Sendable, Equatable {
        public var bytes: Int
        public var blocks: Int
        public var hits: Int
        public var misses: Int
        /// Ranged GETs made.
        public var gets: Int
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

    public init(capacity: Int, blockSize: Int = 512 << 10, maxReadahead: Int = 32 << 20, partBytes: Int = 8 << 20) {
        self.capacity = capacity
        self.blockSize = max(1, blockSize)
        self.maxReadahead = max(self.blockSize, maxReadahead)
        self.partBytes = max(1, partBytes / self.blockSize) * self.blockSize
    }

    /// The bytes of `request.range`, from cached blocks and at most one miss, fetched with
    /// ranged GETs (`fetch`, called with block-aligned ranges of at most `partBytes`, in
    /// parallel, that may run past the object's end).
    public func read(_ request: Request, fetch: @escaping @Sendable (Range<Int>) async throws -> ByteBuffer) async throws -> ByteBuffer {
        let range = request.range
        guard !range.isEmpty else { return ByteBuffer() }
        let first = range.lowerBound / blockSize
        let last = (range.upperBound - 1) / blockSize
        // Under the lock: take what is cached, decide what to GET.
        let (have, get): ([Int: ByteBuffer], Range<Int>?) = state.withLockedValue { s in
            var window = blockSize
            if let id = request.reader {
                var r = s.readers[id] ?? Reader(window: blockSize, last: -1..<(-1))
                // Sequential: it starts where the last read ended, or within it (a fetch that
                // took only part of a range reads that range again).
                let o = request.offsets.lowerBound
                if o < r.last.lowerBound || o > r.last.upperBound { r.window = blockSize }
                r.last = request.offsets
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
                    s.blocks[k] = e
                    have[i] = e.buffer
                } else if firstMissing == nil {
                    firstMissing = i
                }
            }
            guard let firstMissing else {
                s.hits += 1
                return (have, nil)
            }
            s.misses += 1
            // Whole blocks from the first missing one through the readahead window (within
            // the reader's data), stopping early at a block already cached past the request.
            // Readahead only as far as the GETs under way stay within half the cache's
            // budget: sixteen readers each reading 32 MiB ahead held 214 MB outside it.
            let ahead = min(window, max(0, capacity / 2 - s.fetching))
            let want = max(range.upperBound, min(range.lowerBound + ahead, max(request.readaheadEnd, range.upperBound)))
            var end = (want + blockSize - 1) / blockSize
            var i = last + 1
            while i < end {
                if s.blocks[Key(object: request.object, index: i)] != nil {
                    end = i
                    break
                }
                i += 1
            }
            if let id = request.reader {
                // This read needed a GET: a sequential reader's window grows for the next one.
                s.readers[id]!.window = min(window * 2, maxReadahead)
            }
            s.fetching += (end - firstMissing) * blockSize
            let get = firstMissing * blockSize..<end * blockSize
            s.gets += (get.count + partBytes - 1) / partBytes
            return (have, get)
        }
        var blocks = have
        if let get {
            defer { state.withLockedValue { $0.fetching -= get.count } }
            let parts = stride(from: get.lowerBound, to: get.upperBound, by: partBytes).map { $0..<min($0 + partBytes, get.upperBound) }
            let fresh = try await withThrowingTaskGroup(of: [(Int, ByteBuffer)].self) { group in
                for part in parts {
                    // A part read ahead may start past the object's end (S3 answers 416): only
                    // the parts holding requested bytes must arrive.
                    let needed = part.lowerBound / blockSize <= last
                    group.addTask {
                        guard needed else { return (try? await fetch(part)).map { self.blocks(of: $0, at: part.lowerBound) } ?? [] }
                        return self.blocks(of: try await fetch(part), at: part.lowerBound)
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            for (i, b) in fresh where i <= last { blocks[i] = b }
            insert(fresh, object: request.object, requested: first...last, reader: request.reader)
        }
        // Assemble the requested bytes.
        var out = ByteBufferAllocator().buffer(capacity: range.count)
        var pos = range.lowerBound
        while pos < range.upperBound {
            let i = pos / blockSize
            guard let b = blocks[i] else { throw BlockCacheError(description: "\(request.object): bytes \(range) run past the object's end") }
            let inBlock = pos - i * blockSize
            let n = min(range.upperBound - pos, b.readableBytes - inBlock)
            guard n > 0 else { throw BlockCacheError(description: "\(request.object): bytes \(range) run past the object's end") }
            out.writeImmutableBuffer(b.getSlice(at: b.readerIndex + inBlock, length: n)!)
            pos += n
        }
        return out
    }

    /// A GET's bytes, from object position `at` (block-aligned), as blocks of their own.
    private func blocks(of fetched: ByteBuffer, at: Int) -> [(Int, ByteBuffer)] {
        var fresh: [(Int, ByteBuffer)] = []
        var done = 0
        while done < fetched.readableBytes {
            let n = min(blockSize, fetched.readableBytes - done)
            var own = ByteBufferAllocator().buffer(capacity: n)
            own.writeImmutableBuffer(fetched.getSlice(at: fetched.readerIndex + done, length: n)!)
            fresh.append(((at + done) / blockSize, own))
            done += n
        }
        return fresh
    }

    private func insert(_ fresh: [(Int, ByteBuffer)], object: String, requested: ClosedRange<Int>, reader: Int64?) {
        state.withLockedValue { s in
            for (i, b) in fresh where b.readableBytes <= capacity {
                s.tick += 1
                let k = Key(object: object, index: i)
                if let old = s.blocks[k] { s.bytes -= old.buffer.readableBytes }
                s.blocks[k] = Entry(buffer: b, tick: s.tick, unreadBy: requested.contains(i) ? nil : reader)
                s.bytes += b.readableBytes
            }
            while s.bytes > capacity, let victim = s.blocks.min(by: { $0.value.tick < $1.value.tick }) {
                s.bytes -= victim.value.buffer.readableBytes
                s.blocks[victim.key] = nil
                // Read ahead for nothing: that reader's window was too large for the cache.
                if let id = victim.value.unreadBy, var r = s.readers[id] {
                    r.window = max(blockSize, r.window / 2)
                    s.readers[id] = r
                }
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
        state.withLockedValue { Stats(bytes: $0.bytes, blocks: $0.blocks.count, hits: $0.hits, misses: $0.misses, gets: $0.gets) }
    }
}

public struct BlockCacheError: Error, CustomStringConvertible {
    public var description: String
}
