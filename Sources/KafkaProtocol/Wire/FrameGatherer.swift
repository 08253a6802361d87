import NIOCore

/// Kafka's framing, int32 size then that many bytes, for the byte-to-message decoders on
/// either side of a connection (requests into the broker, responses into the client).
///
/// ByteToMessageHandler appends every read to one buffer until a frame is whole. For a frame
/// of many MiB (a fetch response, a produce request) that buffer grew by doubling into
/// fresh pages, and a frame sliced out of it was copied again by the next append while the
/// frame was still held: 40% of `tern perf consume`'s CPU on a catch-up read. So a frame of
/// `gatherBytes` or more that has not all arrived yet is moved into a buffer of its own
/// (`newFrame`, of the frame's size) as its bytes come in: each byte is copied once, and the
/// handler's buffer stays small.
public struct FrameGatherer: Sendable {
    public let gatherBytes: Int
    /// The frame being gathered, and how many of its bytes have yet to arrive.
    private var gathering: ByteBuffer?
    private var missing = 0

    public init(gatherBytes: Int) {
        self.gatherBytes = gatherBytes
    }

    /// The next frame's bytes, or nil until they have all arrived. `check` sees each frame's
    /// size before any of it is kept (and throws to refuse it). A frame that arrived whole is
    /// a slice of `buffer`, unless `copyWhole` (then it too is copied into `newFrame`).
    public mutating func next(from buffer: inout ByteBuffer, copyWhole: Bool, check: (Int32) throws -> Void,
                              newFrame: (Int) -> ByteBuffer) rethrows -> ByteBuffer? {
        if var frame = gathering {
            gathering = nil  // `frame` is then the only reference: appending to it copies nothing else
            let n = min(missing, buffer.readableBytes)
            frame.writeImmutableBuffer(buffer.readSlice(length: n)!)
            missing -= n
            if missing == 0 { return frame }
            gathering = frame
            return nil
        }
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        try check(size)
        let n = Int(size)
        if buffer.readableBytes >= 4 + n {
            buffer.moveReaderIndex(forwardBy: 4)
            let body = buffer.readSlice(length: n)!
            guard copyWhole else { return body }
            var frame = newFrame(n)
            frame.writeImmutableBuffer(body)
            return frame
        }
        guard n >= gatherBytes else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var frame = newFrame(n)
        missing = n - buffer.readableBytes
        frame.writeImmutableBuffer(buffer.readSlice(length: buffer.readableBytes)!)
        gathering = frame
        return nil
    }
}
