import KafkaProtocol
import NIOCore
import Testing

@Suite struct CompressionTests {
    static let codecs: [CompressionCodec] = [.gzip, .snappy, .lz4, .zstd]

    /// Half compressible text, half pseudo-random bytes, `n` long.
    static func sample(_ n: Int, seed: UInt64 = 42) -> ByteBuffer {
        var b = ByteBuffer()
        var x = seed
        for i in 0..<n {
            if (i / 1000) % 2 == 0 {
                b.writeInteger(UInt8(ascii: "a") + UInt8(i % 23))
            } else {
                x = x &* 6364136223846793005 &+ 1442695040888963407
                b.writeInteger(UInt8(truncatingIfNeeded: x >> 33))
            }
        }
        return b
    }

    @Test(arguments: codecs, [0, 1, 1000, 70_000, 300_000])
    func roundTrip(codec: CompressionCodec, size: Int) throws {
        let input = Self.sample(size)
        let packed = Compression.compress(input, codec: codec)
        let back = try Compression.decompress(packed, codec: codec, limit: size + 1)
        #expect(back == input)
    }

    @Test(arguments: codecs)
    func compressesRepetitiveData(codec: CompressionCodec) {
        let input = ByteBuffer(repeating: 0x61, count: 100_000)
        #expect(Compression.compress(input, codec: codec).readableBytes < 10_000)
    }

    /// A small input that expands far beyond the limit must be refused before it is all
    /// in memory.
    @Test(arguments: codecs)
    func bombIsRefused(codec: CompressionCodec) {
        let packed = Compression.compress(ByteBuffer(repeating: 0, count: 4 << 20), codec: codec)
        #expect(packed.readableBytes < 300_000)
        #expect(throws: CompressionError.tooLarge(limit: 1 << 20)) {
            try Compression.decompress(packed, codec: codec, limit: 1 << 20)
        }
    }

    @Test(arguments: codecs)
    func exactLimitIsAccepted(codec: CompressionCodec) throws {
        let input = Self.sample(50_000)
        let packed = Compression.compress(input, codec: codec)
        #expect(try Compression.decompress(packed, codec: codec, limit: 50_000) == input)
        #expect(throws: CompressionError.tooLarge(limit: 49_999)) {
            try Compression.decompress(packed, codec: codec, limit: 49_999)
        }
    }

    @Test(arguments: codecs)
    func garbageIsMalformed(codec: CompressionCodec) {
        var garbage = ByteBuffer()
        for i in 0..<200 { garbage.writeInteger(UInt8(truncatingIfNeeded: i &* 97 &+ 13)) }
        #expect(throws: CompressionError.self) { try Compression.decompress(garbage, codec: codec, limit: 1 << 20) }
    }

    @Test(arguments: codecs)
    func truncatedDataIsMalformed(codec: CompressionCodec) {
        let packed = Compression.compress(Self.sample(100_000), codec: codec)
        let cut = packed.getSlice(at: 0, length: packed.readableBytes / 2)!
        #expect(throws: CompressionError.self) { try Compression.decompress(cut, codec: codec, limit: 1 << 20) }
    }

    /// librdkafka sends raw snappy; Java clients send xerial framing. Both decode.
    @Test func rawSnappyIsAccepted() throws {
        let input = Self.sample(20_000)
        let xerial = Compression.compress(input, codec: .snappy)
        #expect(xerial.getBytes(at: 0, length: 8) == [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00])
        // One block (input < 32 KiB): its raw snappy bytes follow the header and length.
        let length = Int(xerial.getInteger(at: 16, as: UInt32.self)!)
        let raw = xerial.getSlice(at: 20, length: length)!
        #expect(20 + length == xerial.readableBytes)
        #expect(try Compression.decompress(raw, codec: .snappy, limit: 1 << 20) == input)
    }

    @Test(arguments: [CompressionCodec.gzip, .lz4, .zstd])
    func concatenatedFramesDecodeAsOne(codec: CompressionCodec) throws {
        var both = Compression.compress(ByteBuffer(string: "first "), codec: codec)
        var second = Compression.compress(ByteBuffer(string: "second"), codec: codec)
        both.writeBuffer(&second)
        #expect(String(buffer: try Compression.decompress(both, codec: codec, limit: 100)) == "first second")
    }

    /// The LZ4 frame must use independent 64 KiB blocks: Kafka's Java reader handles no other.
    @Test func lz4FrameDescriptorIsWhatKafkaReads() {
        let packed = Compression.compress(Self.sample(1000), codec: .lz4)
        #expect(packed.getInteger(at: 0, endianness: .little, as: UInt32.self) == 0x184D2204)
        let flg = packed.getInteger(at: 4, as: UInt8.self)!
        #expect(flg >> 6 == 1)  // version 01
        #expect(flg & 0x20 != 0)  // block independence
        #expect(packed.getInteger(at: 5, as: UInt8.self)! >> 4 & 0x7 == 4)  // 64 KiB blocks
    }

    @Test func configNames() {
        #expect(CompressionCodec(configName: "uncompressed") == CompressionCodec.none)
        #expect(CompressionCodec(configName: "zstd") == .zstd)
        #expect(CompressionCodec(configName: "brotli") == nil)
        #expect(CompressionCodec.allCases.allSatisfy { CompressionCodec(configName: $0.configName) == $0 })
    }
}
