import NIOCore

/// Splits the byte stream into request frames (int32 size + body), refusing a frame larger
/// than `socket.request.max.bytes` before buffering it, and never trusting a negative size.
public struct KafkaFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public struct FrameTooLarge: Error, CustomStringConvertible {
        public var size: Int
        public var limit: Int
        public var description: String { "request frame of \(size) bytes exceeds socket.request.max.bytes \(limit)" }
    }

    public struct InvalidFrame: Error, CustomStringConvertible {
        public var size: Int32
        public var description: String { "invalid request frame size \(size)" }
    }

    public let maxFrameSize: Int

    public init(maxFrameSize: Int) { self.maxFrameSize = maxFrameSize }

    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard size >= 0 else { throw InvalidFrame(size: size) }
        guard Int(size) <= maxFrameSize else { throw FrameTooLarge(size: Int(size), limit: maxFrameSize) }
        guard buffer.readableBytes >= 4 + Int(size) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(size))
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        try decode(buffer: &buffer)
    }
}
