import KafkaProtocol
import NIOCore
import ObjectStore

/// Splits the byte stream into request frames (int32 size + body), refusing a frame larger
/// than `socket.request.max.bytes` before buffering it, and never trusting a negative size.
///
/// Each frame is copied out into a buffer of its own, so no frame is a slice of the
/// decoder's buffer: a slice still held while the decoder discards what it read made it copy
/// its multi-MiB buffer into fresh memory, page fault by page fault (92% of the broker's page
/// faults under 4 MiB produce requests). Frames of `pooledFrameBytes` and more come from
/// `frames`, to which the server gives them back once answered, and are gathered there as
/// they arrive (`FrameGatherer`), not first in the handler's buffer.
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

    public static let pooledFrameBytes = 64 << 10

    public let maxFrameSize: Int
    let frames: ReusePool<ByteBuffer>?
    private var gatherer = FrameGatherer(gatherBytes: Self.pooledFrameBytes)

    public init(maxFrameSize: Int, frames: ReusePool<ByteBuffer>? = nil) {
        self.maxFrameSize = maxFrameSize
        self.frames = frames
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        try gatherer.next(from: &buffer, copyWhole: true, check: { [maxFrameSize] size in
            guard size >= 0 else { throw InvalidFrame(size: size) }
            guard Int(size) <= maxFrameSize else { throw FrameTooLarge(size: Int(size), limit: maxFrameSize) }
        }, newFrame: { [frames] size in
            var frame = size >= Self.pooledFrameBytes ? frames?.take() ?? ByteBuffer() : ByteBuffer()
            frame.clear(minimumCapacity: size)
            return frame
        })
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        try decode(buffer: &buffer)
    }
}
