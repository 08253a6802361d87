import Broker
import NIOCore
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
