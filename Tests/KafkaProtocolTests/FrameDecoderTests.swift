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
