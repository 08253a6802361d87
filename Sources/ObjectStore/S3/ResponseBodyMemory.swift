@_spi(CustomByteBufferAllocator) import NIOCore
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory for large GET bodies, reused instead of handed back to the system.
///
/// A GET collects its body in one buffer of Content-Length bytes. With glibc's malloc a
/// buffer of several MiB comes from `mmap` or from a heap that is trimmed when it is freed,
/// so every GET faulted in (and the kernel zeroed) its whole buffer again: on 4 parallel
/// 8 MiB GETs that was ~1200 page faults per object, half the client's CPU, and 25-30% of
/// its throughput on a 2-core machine. Buffers of at least `minPooled` bytes (ByteBuffer
/// capacities are powers of two, so sizes fall into few classes) go back to a free list when
/// released and the next GET of that class takes one, pages still mapped. At most
/// `maxIdleBytes` stay idle; to keep a released block within that, blocks of other sizes
/// are freed first (recent sizes win), else the block is freed as usual.
public enum ResponseBodyMemory {
    public static let minPooled = 1 << 20
    public static let maxIdleBytes = 64 << 20
    /// Bytes before each block holding its size; 16 keeps malloc's alignment.
    static let header = 16

    struct FreeLists: Sendable {
        var blocks: [Int: [UInt]] = [:]  // size class -> addresses of raw blocks
        var idleBytes = 0
    }

    static let freeLists = NIOLockedValueBox(FreeLists())

    /// The allocator for response bodies: `ByteBufferAllocator` semantics, pooled when large.
    public static let allocator = ByteBufferAllocator(
        allocate: { size in ResponseBodyMemory.allocate(size) },
        reallocate: { ptr, oldSize, newSize in ResponseBodyMemory.reallocate(ptr, oldSize, newSize) },
        deallocate: { ptr in ResponseBodyMemory.deallocate(ptr) },
        copy: { dst, src, count in dst.copyMemory(from: src, byteCount: count) }
    )

    static func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        if size >= minPooled {
            let reused: UInt? = freeLists.withLockedValue { lists in
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

    static func deallocate(_ ptr: UnsafeMutableRawPointer) {
        let raw = ptr - header
        let size = raw.load(as: Int.self)
        if size >= minPooled && size <= maxIdleBytes {
            // Keep it, making room by freeing blocks of other sizes: the sizes of recent
            // bodies win, so a pool full of yesterday's 8 MiB blocks does not turn away
            // every 32 MiB one. Nothing is kept if only blocks of its own size are in the way.
            let evicted: [UInt]? = freeLists.withLockedValue { lists in
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

    static func reallocate(_ ptr: UnsafeMutableRawPointer?, _ oldSize: Int, _ newSize: Int) -> UnsafeMutableRawPointer? {
        guard let ptr else { return allocate(newSize) }
        let raw = ptr - header
        if raw.load(as: Int.self) < minPooled && newSize < minPooled {
            guard let moved = realloc(raw, newSize + header) else { fatalError("out of memory allocating \(newSize) bytes") }
            moved.storeBytes(of: newSize, as: Int.self)
            return moved + header
        }
        guard let fresh = allocate(newSize) else { return nil }
        fresh.copyMemory(from: ptr, byteCount: min(oldSize, newSize))
        deallocate(ptr)
        return fresh
    }

    /// Bytes kept for reuse right now (for tests).
    public static var idleBytes: Int { freeLists.withLockedValue { $0.idleBytes } }
}
