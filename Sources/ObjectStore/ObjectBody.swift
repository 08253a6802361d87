import NIOCore

/// An object's bytes as buffers written one after another. An object assembled from slices
/// of memory held anyway (appended batches in the LogCache, compaction's inputs) is written
/// from those slices, with no copy of the whole object beside them.
public struct ObjectBody: Sendable {
    public private(set) var parts: [ByteBuffer] = []
    public private(set) var readableBytes = 0

    public init() {}

    public init(_ buffer: ByteBuffer) {
        append(buffer)
    }

    public mutating func append(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        parts.append(buffer)
        readableBytes += buffer.readableBytes
    }

    /// The bytes at `range` (counted from the body's start), as slices of the parts.
    public func slice(_ range: Range<Int>) -> ObjectBody {
        precondition(range.lowerBound >= 0 && range.upperBound <= readableBytes, "\(range) of \(readableBytes) bytes")
        var out = ObjectBody()
        var start = 0
        for p in parts {
            let end = start + p.readableBytes
            defer { start = end }
            guard end > range.lowerBound else { continue }
            guard start < range.upperBound else { break }
            let from = max(range.lowerBound, start) - start
            let to = min(range.upperBound, end) - start
            out.append(p.getSlice(at: p.readerIndex + from, length: to - from)!)
        }
        return out
    }

    /// Calls `body` with each part's bytes, in order.
    public func withEachPart(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        for p in parts { try p.withUnsafeReadableBytes(body) }
    }

    /// The bytes as one buffer: the only part itself, or a copy of them all.
    public func joined() -> ByteBuffer {
        if parts.count == 1 { return parts[0] }
        var out = ByteBufferAllocator().buffer(capacity: readableBytes)
        for p in parts { out.writeImmutableBuffer(p) }
        return out
    }
}
