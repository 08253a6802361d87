import NIOCore

/// Splits the byte stream from a broker into response frames (int32 size + body), refusing a
/// frame larger than `maxFrameSize` before buffering it and never trusting a negative size.
struct ResponseFrameDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    let maxFrameSize: Int

    mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard size >= 4 else {
            throw KafkaClientError(.protocolViolation, "response frame of \(size) bytes is shorter than a response header")
        }
        guard Int(size) <= maxFrameSize else {
            throw KafkaClientError(.protocolViolation, "response frame of \(size) bytes exceeds the limit of \(maxFrameSize)")
        }
        guard buffer.readableBytes >= 4 + Int(size) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(size))
    }

    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        try decode(buffer: &buffer)
    }
}
