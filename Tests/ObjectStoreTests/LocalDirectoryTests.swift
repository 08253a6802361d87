import Foundation
import NIOCore
import NIOPosix
import ObjectStore
import Testing

/// The embedded bucket: large bodies go through O_DIRECT from aligned memory, padded to the
/// alignment and cut back, in writes of the store's size (2 MiB by default, 256 KiB beside a
/// file WAL); what is read back must be the body, byte for byte, at every size.
@Suite struct LocalDirectoryTests {
    @Test(arguments: [DirectWrites.defaultChunkBytes, 256 << 10, 3 * 4096])
    func bodiesOfEverySizeReadBackExactly(directWriteBytes: Int) async throws {
        let dir = NSTemporaryDirectory() + "tern-localdir-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try LocalDirectoryObjectStore(root: dir, threadPool: NIOThreadPool.singleton, directWriteBytes: directWriteBytes)
        let min = LocalDirectoryObjectStore.directWriteMinimumBytes
        for size in [0, 1, 4095, min - 1, min, min + 1, min + 4096, 3 * min + 123, 8 << 20, 9 << 20, (16 << 20) + 4097] {
            var body = ByteBuffer()
            for i in 0..<size { body.writeInteger(UInt8(truncatingIfNeeded: i &* 31 &+ size)) }
            try await store.put("o/\(size)", body, ifNoneMatch: true)
            #expect(try await store.head("o/\(size)")?.size == size)
            #expect(try await store.get("o/\(size)", range: nil) == body, "size \(size)")
            if size > 10 {
                #expect(try await store.get("o/\(size)", range: (size - 10)..<size) == body.getSlice(at: size - 10, length: 10)!)
            }
            // Read straight into pieces (the block cache's GETs): of 1 MiB, the last shorter, none empty.
            for range in [nil, 7..<(size + 100)] as [Range<Int>?] where size > 7 || range == nil {
                let pieces = try await store.get("o/\(size)", range: range, pieceBytes: 1 << 20)
                var joined = ByteBuffer()
                for p in pieces { joined.writeImmutableBuffer(p) }
                #expect(joined == (range == nil ? body : body.getSlice(at: 7, length: size - 7)!), "size \(size) in pieces")
                #expect(pieces.dropLast().allSatisfy { $0.readableBytes == 1 << 20 } && pieces.allSatisfy { $0.readableBytes > 0 })
            }
            await #expect(throws: ObjectStoreError.self) { try await store.put("o/\(size)", body, ifNoneMatch: true) }
            // The same bytes in buffers cut where neither the alignment nor a chunk ends.
            var pieces = ObjectBody()
            var from = 0
            for cut in [1, size / 3, size / 3 + 4097, size - 5, size] where cut > from && cut <= size {
                pieces.append(body.getSlice(at: from, length: cut - from)!)
                from = cut
            }
            try await store.put("p/\(size)", pieces, ifNoneMatch: true)
            #expect(try await store.get("p/\(size)", range: nil) == body, "size \(size) in \(pieces.parts.count) buffers")
        }
        // The same memory serves the next write: nothing of an earlier, larger body leaks in.
        var small = ByteBuffer()
        small.writeRepeatingByte(7, count: min + 5)
        try await store.put("o/again", small, ifNoneMatch: true)
        #expect(try await store.get("o/again", range: nil) == small)
    }
}
