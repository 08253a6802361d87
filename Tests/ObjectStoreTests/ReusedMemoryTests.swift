import NIOCore
import ObjectStore
import Testing

/// Reused memory for large buffers (the S3 client's GET bodies, appended batches' slabs), and the multipart ETag it computes
/// only to recognise its own object after a lost CompleteMultipartUpload answer.
@Suite(.serialized) struct ReusedMemoryTests {
    static func pattern(_ n: Int, seed: Int = 7) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }

    @Test func largeBuffersAreReusedAndKeepTheirBytes() {
        let size = 2 << 20
        let before = ReusedMemory.responseBodies.idleBytes
        do {
            var b = ReusedMemory.responseBodies.allocator.buffer(capacity: size)
            b.writeBytes(Self.pattern(size))
            #expect(b.readableBytesView.elementsEqual(Self.pattern(size)))
        }
        // Released: kept for the next body of its size class instead of being freed.
        #expect(ReusedMemory.responseBodies.idleBytes == before + size)
        do {
            var b = ReusedMemory.responseBodies.allocator.buffer(capacity: size)
            #expect(ReusedMemory.responseBodies.idleBytes == before)
            b.writeBytes(Self.pattern(size, seed: 3))
            #expect(b.readableBytesView.elementsEqual(Self.pattern(size, seed: 3)))
        }
        #expect(ReusedMemory.responseBodies.idleBytes == before + size)
    }

    @Test func smallBuffersAreNotKept() {
        let before = ReusedMemory.responseBodies.idleBytes
        do {
            var b = ReusedMemory.responseBodies.allocator.buffer(capacity: 4096)
            b.writeBytes(Self.pattern(4096))
        }
        #expect(ReusedMemory.responseBodies.idleBytes == before)
    }

    @Test func growingPastThePoolSizeKeepsTheBytes() {
        // A body without Content-Length grows from small to pooled sizes: every byte survives.
        var b = ReusedMemory.responseBodies.allocator.buffer(capacity: 1024)
        let chunk = Self.pattern(300_000)
        for _ in 0..<10 { b.writeBytes(chunk) }
        #expect(b.readableBytes == 3_000_000)
        for i in 0..<10 { #expect(b.getBytes(at: i * chunk.count, length: chunk.count) == chunk) }
    }

    @Test func idleMemoryIsBounded() {
        // More released buffers than the bound allows: the surplus is freed, not kept.
        let size = 8 << 20
        var held: [ByteBuffer] = []
        for _ in 0..<(ReusedMemory.responseBodies.maxIdleBytes / size + 4) {
            var b = ReusedMemory.responseBodies.allocator.buffer(capacity: size)
            b.writeInteger(UInt8(1))
            held.append(b)
        }
        held.removeAll()
        #expect(ReusedMemory.responseBodies.idleBytes <= ReusedMemory.responseBodies.maxIdleBytes)
        #expect(ReusedMemory.responseBodies.idleBytes >= ReusedMemory.responseBodies.maxIdleBytes - size)
    }

    @Test func recentSizesDisplaceOlderOnes() {
        // The pool full of 8 MiB blocks: a released 32 MiB block still stays, in their place.
        var held: [ByteBuffer] = (0..<(ReusedMemory.responseBodies.maxIdleBytes / (8 << 20))).map { _ in
            ReusedMemory.responseBodies.allocator.buffer(capacity: 8 << 20)
        }
        held.removeAll()
        #expect(ReusedMemory.responseBodies.idleBytes == ReusedMemory.responseBodies.maxIdleBytes)
        do {
            var big = ReusedMemory.responseBodies.allocator.buffer(capacity: 32 << 20)
            big.writeInteger(UInt8(1))
        }
        #expect(ReusedMemory.responseBodies.idleBytes <= ReusedMemory.responseBodies.maxIdleBytes)
        // The next 32 MiB body takes that block: idle memory drops by its size.
        let before = ReusedMemory.responseBodies.idleBytes
        let again = ReusedMemory.responseBodies.allocator.buffer(capacity: 32 << 20)
        #expect(ReusedMemory.responseBodies.idleBytes == before - (32 << 20))
        _ = again
    }

    @Test func releasedSlabsAreKeptInTheirOwnPool() {
        // Other suites' engines take and release slabs meanwhile and may take the block at
        // once, so a few tries; a pool that frees its blocks never shows one idle.
        let responseIdle = ReusedMemory.responseBodies.idleBytes
        let kept = (0..<5).contains { _ in
            do {
                var slab = ReusedMemory.batchSlabs.allocator.buffer(capacity: 4 << 20)
                slab.writeInteger(UInt8(1))
            }
            return ReusedMemory.batchSlabs.idleBytes >= 4 << 20
        }
        #expect(kept)
        #expect(ReusedMemory.batchSlabs.idleBytes <= ReusedMemory.batchSlabs.maxIdleBytes)
        #expect(ReusedMemory.responseBodies.idleBytes == responseIdle, "not in the GET bodies' pool")
    }

    @Test func multipartETagIsTheMD5OfThePartMD5s() {
        // Expected values from Python's hashlib: md5(md5(part1) + md5(part2) + ...) + "-N".
        let body = ByteBuffer(bytes: Self.pattern(2500))
        #expect(S3ObjectStore.multipartETag(ObjectBody(body), partSize: 1000) == "6b18750f2a7ee644054382f2db0b641a-3")
        let even = ByteBuffer(bytes: Self.pattern(2000))
        #expect(S3ObjectStore.multipartETag(ObjectBody(even), partSize: 1000) == "66168ec47f03f59b1b254f6cb70e4a17-2")
        // A body whose reader index is not 0 is hashed from its readable bytes.
        var shifted = ByteBuffer(bytes: [9, 9, 9] + Self.pattern(2500))
        shifted.moveReaderIndex(forwardBy: 3)
        #expect(S3ObjectStore.multipartETag(ObjectBody(shifted), partSize: 1000) == "6b18750f2a7ee644054382f2db0b641a-3")
        // A body in several buffers whose ends are not the parts' ends hashes the same.
        var pieces = ObjectBody()
        for cut in [(0, 1), (1, 999), (1000, 1), (1001, 1234), (2235, 265)] {
            pieces.append(body.getSlice(at: cut.0, length: cut.1)!)
        }
        #expect(pieces.parts.count == 5)
        #expect(S3ObjectStore.multipartETag(pieces, partSize: 1000) == "6b18750f2a7ee644054382f2db0b641a-3")
    }

    @Test func aBodyInSeveralBuffersHoldsTheirBytesInOrder() {
        let bytes = Self.pattern(5000)
        var pieces = ObjectBody()
        pieces.append(ByteBuffer(bytes: bytes[0..<7]))
        pieces.append(ByteBuffer())  // empty buffers are dropped
        pieces.append(ByteBuffer(bytes: bytes[7..<4096]))
        pieces.append(ByteBuffer(bytes: bytes[4096...]))
        #expect(pieces.parts.count == 3 && pieces.readableBytes == 5000)
        #expect(Array(pieces.joined().readableBytesView) == bytes)
        #expect(Array(pieces.slice(5..<4100).joined().readableBytesView) == Array(bytes[5..<4100]))
        #expect(pieces.slice(5..<4100).parts.count == 3)
        #expect(pieces.slice(7..<4096).parts.count == 1)
        #expect(pieces.slice(4096..<4096).parts.isEmpty)
        #expect(S3ObjectStore.md5Hex(pieces) == S3ObjectStore.md5Hex(ObjectBody(ByteBuffer(bytes: bytes))))
    }
}
