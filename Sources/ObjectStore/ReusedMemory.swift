@_spi(CustomByteBufferAllocator) import NIOCore
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Large buffers reused instead of handed back to the system, in pools of their own.
///
/// With glibc's malloc a buffer of several MiB comes from `mmap` or from a heap that is
/// trimmed when it is freed, so every such buffer faulted in (and the kernel zeroed) all its
/// pages again:
/// - `responseBodies`: a GET collects its body in one buffer of Content-Length bytes. On 4
///   parallel 8 MiB GETs that was ~1200 page faults per object, half the client's CPU, and
///   25-30% of its throughput on a 2-core machine. The CLI's Kafka connections gather large
///   responses (fetches of many MiB) in the same pool.
/// - `batchSlabs`: the 4 MiB slabs appended batches are copied into (`BatchSlabs`). At 230
///   MB/s of produce their page faults were 10-15% of the broker's CPU.
///
/// Buffers of at least `minPooled` bytes (ByteBuffer capacities are powers of two, so sizes
/// fall into few classes) go back to their pool's free list when released, and the next
/// buffer of that class takes one, pages still mapped. At most `maxIdleBytes` stay idle; to
/// keep a released block within that, blocks of other sizes are freed first (recent sizes
/// win), else the block is freed as usual.
public struct ReusedMemory: Sendable {
    public let minPooled: Int
    public let maxIdleBytes: Int
    /// `ByteBufferAllocator` semantics, pooled when large.
    public let allocator: ByteBufferAllocator
    let pool: Int

    public static let responseBodies = ReusedMemory(pool: 0, allocator: ByteBufferAllocator(
        allocate: { size in ReusedMemory.allocate(size, pool: 0) },
        reallocate: { ptr, oldSize, newSize in ReusedMemory.reallocate(ptr, oldSize, newSize, pool: 0) },
        deallocate: { ptr in ReusedMemory.deallocate(ptr, pool: 0) },
        copy: { dst, src, count in dst.copyMemory(from: src, byteCount: count) }))
    public static let batchSlabs = ReusedMemory(pool: 1, allocator: ByteBufferAllocator(
        allocate: { size in ReusedMemory.allocate(size, pool: 1) },
        reallocate: { ptr, oldSize, newSize in ReusedMemory.reallocate(ptr, oldSize, newSize, pool: 1) },
        deallocate: { ptr in ReusedMemory.deallocate(ptr, pool: 1) },
        copy: { dst, src, count in dst.copyMemory(from: src, byteCount: count) }))

    /// Per pool: (minPooled, maxIdleBytes). Slabs turn over one for one (the LogCache evicts
    /// one as the next fills), so a few idle ones are enough.
    static let limits = [(1 << 20, 64 << 20), (4 << 20, 16 << 20)]

    /// Bytes before each block holding its size; 16 keeps malloc's alignment.
    static let header = 16

    struct FreeLists: Sendable {
        var blocks: [Int: [UInt]] = [:]  // size class -> addresses of raw blocks
        var idleBytes = 0
    }

    static let freeLists = [NIOLockedValueBox(FreeLists()), NIOLockedValueBox(FreeLists())]

    private init(pool: Int, allocator: ByteBufferAllocator) {
        self.pool = pool
        (minPooled, maxIdleBytes) = Self.limits[pool]
        self.allocator = allocator
    }

    /// Bytes kept for reuse right now (for tests).
    public var idleBytes: Int { Self.freeLists[pool].withLockedValue { $0.idleBytes } }

    static func allocate(_ size: Int, pool: Int) -> UnsafeMutableRawPointer? {
        if size >= limits[pool].0 {
            let reused: UInt? = freeLists[pool].withLockedValue { lists in
                guard let address = lists.blocks[size]?.popLast() else { return nil }
                lists.idleBytes -= size
                return address
            }
            if let reused, let raw = UnsafeMutableRawPointer(bitPattern: reused) { return raw + header }
        }
        guard let raw = malloc(size + header) else { fatalError("out of memory allocating \(size) bytes") }
        raw.storeBytes(of: size, as: Int.self)
        return raw + header
    }

    static func deallocate(_ ptr: UnsafeMutableRawPointer, pool: Int) {
        let raw = ptr - header
        let size = raw.load(as: Int.self)
        let (minPooled, maxIdleBytes) = limits[pool]
        if size >= minPooled && size <= maxIdleBytes {
            // Keep it, making room by freeing blocks of other sizes: the sizes of recent
            // buffers win, so a pool full of yesterday's 8 MiB blocks does not turn away
            // every 32 MiB one. Nothing is kept if only blocks of its own size are in the way.
            let evicted: [UInt]? = freeLists[pool].withLockedValue { lists in
                let sameSize = (lists.blocks[size]?.count ?? 0) * size
                guard sameSize + size <= maxIdleBytes else { return nil }
                var evicted: [UInt] = []
                while lists.idleBytes + size > maxIdleBytes {
                    let victim = lists.blocks.first { $0.key != size && !$0.value.isEmpty }!.key
                    evicted.append(lists.blocks[victim]!.removeLast())
                    lists.idleBytes -= victim
                }
                lists.blocks[size, default: []].append(UInt(bitPattern: raw))
                lists.idleBytes += size
                return evicted
            }
            if let evicted {
                for address in evicted { free(UnsafeMutableRawPointer(bitPattern: address)) }
                return
            }
        }
        free(raw)
    }

    static func reallocate(_ ptr: UnsafeMutableRawPointer?, _ oldSize: Int, _ newSize: Int, pool: Int) -> UnsafeMutableRawPointer? {
        guard let ptr else { return allocate(newSize, pool: pool) }
        let raw = ptr - header
        let minPooled = limits[pool].0
        if raw.load(as: Int.self) < minPooled && newSize < minPooled {
            guard let moved = realloc(raw, newSize + header) else { fatalError("out of memory allocating \(newSize) bytes") }
            moved.storeBytes(of: newSize, as: Int.self)
            return moved + header
        }
        guard let fresh = allocate(newSize, pool: pool) else { return nil }
        fresh.copyMemory(from: ptr, byteCount: min(oldSize, newSize))
        deallocate(ptr, pool: pool)
        return fresh
    }
}
