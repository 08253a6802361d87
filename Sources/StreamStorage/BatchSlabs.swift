import KafkaProtocol
import NIOCore
import ObjectStore

/// The copies of appended batches (LogCache and WAL buffer), packed one after another into
/// slabs of `slabBytes`. A ByteBuffer of its own rounds its storage up to a power of two, so
/// a full 64 KiB producer batch (64 KiB of records plus the batch's own 61 bytes) took 128
/// KiB, and the LogCache's 256 MiB held about 390 MB. The LogCache evicts in append order,
/// so a slab's batches go at about the same time and a slab is seldom pinned by a few.
/// Batches larger than `maxPacked` get storage of their own.
struct BatchSlabs {
    static let slabBytes = 4 << 20
    static let maxPacked = 1 << 20

    private var slab = ByteBuffer()
    private var used = 0

    /// A copy of `batch` with its base offset and partition leader epoch set.
    mutating func copy(_ batch: ByteBuffer, baseOffset: Int64, leaderEpoch: Int32) -> ByteBuffer {
        let n = batch.readableBytes
        guard n <= Self.maxPacked else {
            var own = ByteBufferAllocator().buffer(capacity: n)
            own.writeImmutableBuffer(batch)
            RecordBatch.stamp(&own, baseOffset: baseOffset, leaderEpoch: leaderEpoch)
            return own
        }
        if slab.writerIndex - used < n {
            // Reused memory: a fresh 4 MiB mapping faulted in page by page cost 10-15% of the
            // broker's CPU at 230 MB/s of produce.
            slab = ReusedMemory.batchSlabs.allocator.buffer(capacity: Self.slabBytes)
            // Written through its pointer below, never through the buffer: the batches already
            // handed out are slices of it, and a write through the buffer would copy it whole.
            slab.moveWriterIndex(to: slab.capacity)
            used = 0
        }
        let at = used
        slab.withVeryUnsafeBytes { whole in
            // Bytes no slice covers yet: nobody reads them while they are written.
            let to = UnsafeMutableRawPointer(mutating: whole.baseAddress!) + at
            batch.withUnsafeReadableBytes { to.copyMemory(from: $0.baseAddress!, byteCount: n) }
            to.storeBytes(of: baseOffset.bigEndian, toByteOffset: 0, as: Int64.self)
            to.storeBytes(of: leaderEpoch.bigEndian, toByteOffset: 12, as: Int32.self)
        }
        used += n
        return slab.getSlice(at: at, length: n)!
    }
}
