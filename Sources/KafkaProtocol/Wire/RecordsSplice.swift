import NIOCore

/// The record sets of a message being encoded, kept out of its buffer: a Fetch response's
/// records go to the socket as the slices the cache holds (NIO writes the parts with one
/// writev), not copied into a frame of their own. Copying them cost a catch-up read a fifth
/// of the broker's CPU, most of it faulting in the fresh pages of each large frame.
///
///     let splice = RecordsSplice()
///     RecordsSplice.$current.withValue(splice) { response.encode(into: &buffer, version: v) }
///     let parts = splice.parts(of: buffer)
public final class RecordsSplice: @unchecked Sendable {
    /// The collector `writeKafkaRecords` adds to, while one is set.
    @TaskLocal public static var current: RecordsSplice?

    /// Smaller record sets are copied: a part of their own would cost more than the copy.
    public static let minimumBytes = 16 << 10

    /// Whether a record set of `bytes` is copied into the buffer even while a splice collects.
    public static func isCopied(bytes: Int) -> Bool { bytes < minimumBytes }

    // Filled by the one encoder that runs with it (hence @unchecked).
    private var spans: [(at: Int, records: ByteBuffer)] = []

    /// Bytes of the record sets kept out of the buffer.
    public private(set) var bytes = 0

    public init() {}

    func add(_ records: ByteBuffer, at writerIndex: Int) {
        spans.append((writerIndex, records))
        bytes += records.readableBytes
    }

    /// The frame in order: `buffer`'s bytes (what the encoder wrote) with the record sets
    /// put back where they were left out.
    public func parts(of buffer: ByteBuffer) -> [ByteBuffer] {
        var parts: [ByteBuffer] = []
        parts.reserveCapacity(spans.count * 2 + 1)
        var from = buffer.readerIndex
        for (at, records) in spans {
            if at > from { parts.append(buffer.getSlice(at: from, length: at - from)!) }
            parts.append(records)
            from = at
        }
        if buffer.writerIndex > from { parts.append(buffer.getSlice(at: from, length: buffer.writerIndex - from)!) }
        return parts
    }
}
