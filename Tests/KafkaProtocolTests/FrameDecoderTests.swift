import Broker
import NIOCore
import ObjectStore
import NIOTestUtils
import Testing

@Suite struct FrameDecoderTests {
    func frame(_ body: [UInt8]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(Int32(body.count))
        b.writeBytes(body)
        return b
    }

    @Test func decodesFramesFedOneByteAtATime() throws {
        var input = frame([1, 2, 3])
        var second = frame(Array(repeating: 9, count: 300))
        input.writeBuffer(&second)
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(input, [ByteBuffer(bytes: [1, 2, 3]), ByteBuffer(bytes: Array(repeating: 9, count: 300))])],
            decoderFactory: { KafkaFrameDecoder(maxFrameSize: 1000) })
    }

    /// Big frames are copied out into buffers the server gives back once answered. A frame
    /// given back while something still holds it (an acks=0 append in flight) must never be
    /// written over, and a frame is never a slice of the decoder's buffer.
    @Test func aPooledFrameStillHeldIsNeverWrittenOver() throws {
        let pool = ReusePool<ByteBuffer>(keep: 2)
        var d = KafkaFrameDecoder(maxFrameSize: 1 << 20, frames: pool)
        let big = KafkaFrameDecoder.pooledFrameBytes
        var input = frame(Array(repeating: 1, count: big))
        var second = frame(Array(repeating: 2, count: big))
        input.writeBuffer(&second)
        let first = try #require(try d.decode(buffer: &input))
        #expect(first.readableBytesView.allSatisfy { $0 == 1 } && first.readableBytes == big)
        pool.give(first)  // answered, but `first` is still held here
        let storage = input.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress!)..<(UInt(bitPattern: $0.baseAddress!) + UInt($0.count)) }
        let next = try #require(try d.decode(buffer: &input))
        #expect(next.readableBytesView.allSatisfy { $0 == 2 } && next.readableBytes == big)
        #expect(first.readableBytesView.allSatisfy { $0 == 1 }, "the held frame kept its bytes")
        // Not a slice of the decoder's buffer (a slice would pin it and make it copy itself).
        let at = next.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        #expect(!storage.contains(at), "the frame is a copy, not a slice of the input")
    }

    /// A big frame that arrives in pieces is gathered into its own buffer as they come: the
    /// handler's buffer is emptied by every read instead of growing to hold the whole frame,
    /// which it then copied out again.
    @Test func aBigFrameIsGatheredAsItArrives() throws {
        let pool = ReusePool<ByteBuffer>(keep: 2)
        let poolStorage: UInt = {  // the pool holds the only reference
            var pooled = ByteBuffer()
            pooled.reserveCapacity(1 << 20)
            pool.give(pooled)
            return pooled.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress!) }
        }()
        var d = KafkaFrameDecoder(maxFrameSize: 1 << 20, frames: pool)
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var whole = frame(body)
        whole.writeBytes([0, 0, 0, 2, 7, 7])  // a small frame right behind it
        var got: [ByteBuffer] = []
        var carry = ByteBuffer()
        while whole.readableBytes > 0 {
            var read = carry
            var piece = whole.readSlice(length: min(65_536, whole.readableBytes))!
            read.writeBuffer(&piece)
            while let f = try d.decode(buffer: &read) { got.append(f) }
            carry = read
            #expect(carry.readableBytes == 0, "the handler keeps none of a big frame's bytes")
        }
        try #require(got.count == 2)
        #expect(Array(got[0].readableBytesView) == body)
        #expect(got[0].withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) } == poolStorage, "gathered in the pooled buffer")
        #expect(Array(got[1].readableBytesView) == [7, 7])
    }

    @Test func bigFramesDecodeWhateverTheReadsSizes() throws {
        var input = frame(Array(repeating: 3, count: 70_000))
        var second = frame([1, 2])
        var third = frame((0..<200_000).map { UInt8(truncatingIfNeeded: $0) })
        input.writeBuffer(&second)
        input.writeBuffer(&third)
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(input, [ByteBuffer(bytes: Array(repeating: 3, count: 70_000)), ByteBuffer(bytes: [1, 2]),
                                        ByteBuffer(bytes: (0..<200_000).map { UInt8(truncatingIfNeeded: $0) })])],
            decoderFactory: { KafkaFrameDecoder(maxFrameSize: 1 << 20) })
    }

    @Test func oversizedFrameIsRefusedBeforeItArrives() {
        var d = KafkaFrameDecoder(maxFrameSize: 100)
        var b = ByteBuffer()
        b.writeInteger(Int32(200 << 20))
        #expect(throws: KafkaFrameDecoder.FrameTooLarge.self) { _ = try d.decode(buffer: &b) }
    }

    @Test func negativeSizeIsRefused() {
        var d = KafkaFrameDecoder(maxFrameSize: 100)
        var b = ByteBuffer()
        b.writeInteger(Int32(-5))
        #expect(throws: KafkaFrameDecoder.InvalidFrame.self) { _ = try d.decode(buffer: &b) }
    }
}
