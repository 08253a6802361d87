import KafkaProtocol
import NIOCore

/// Splits the byte stream from a broker into response frames (int32 size + body), refusing a
/// frame larger than `maxFrameSize` before buffering it and never trusting a negative size.
/// A large response (a fetch's) is gathered into a buffer of its own from `allocator` as it
/// arrives (`FrameGatherer`); a small one is a slice of what was read.
struct ResponseFrameDecoder: NIOSingleStepByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    static let gatherBytes = 64 << 10

    let maxFrameSize: Int
    let allocator: ByteBufferAllocator
    private var gatherer = FrameGatherer(gatherBytes: Self.gatherBytes)

    init(maxFrameSize: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxFrameSize = maxFrameSize
        self.allocator = allocator
    }

    mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        try gatherer.next(from: &buffer, copyWhole: false, check: { [maxFrameSize] size in
            guard size >= 4 else {
                throw KafkaClientError(.protocolViolation, "response frame of \(size) bytes is shorter than a response header")
            }
            guard Int(size) <= maxFrameSize else {
                throw KafkaClientError(.protocolViolation, "response frame of \(size) bytes exceeds the limit of \(maxFrameSize)")
            }
        }, newFrame: { [allocator] size in allocator.buffer(capacity: size) })
    }

    mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        try decode(buffer: &buffer)
    }
}
