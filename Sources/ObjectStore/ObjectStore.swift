import NIOCore

/// What an object store holds about one object.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int

    public init(key: String, size: Int) {
        self.key = key
        self.size = size
    }
}

/// An object-store failure, mapped by callers to retries or Kafka errors.
public struct ObjectStoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// The key does not exist.
        case notFound
        /// A conditional put found the key already there.
        case alreadyExists
        /// A requested byte range lies outside the object.
        case invalidRange
        /// Transient: worth retrying.
        case unavailable
        /// Anything else (permissions, I/O).
        case failed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "object store \(code): \(message)" }
}

/// The durable store of record data: S3, a local directory, memory.
///
/// Keys are `/`-separated paths. Objects are immutable once written.
public protocol ObjectStore: Sendable {
    /// Writes an object. With `ifNoneMatch` the write fails with `.alreadyExists` when the
    /// key exists (S3 `If-None-Match: *`), which fences WAL writes.
    func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws
    /// Reads an object or a byte range of it.
    func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer
    /// The same bytes as buffers of their own of `pieceBytes` each (the last one shorter
    /// where the bytes end): a cache of fixed-size blocks keeps them as they are, instead of
    /// copying them out of one buffer (a copy of every catch-up byte in the broker).
    func get(_ key: String, range: Range<Int>?, pieceBytes: Int) async throws -> [ByteBuffer]
    /// The object's size, or nil when it does not exist.
    func head(_ key: String) async throws -> ObjectInfo?
    /// All objects whose keys start with `prefix`, in key order.
    func list(prefix: String) async throws -> [ObjectInfo]
    /// Deletes objects; missing keys are not an error.
    func delete(_ keys: [String]) async throws
    /// Whether a GET asks `TransferPacing.current` for each part it receives (so a limiter
    /// can pace it as it arrives instead of before it is sent).
    var pacesDownloads: Bool { get }
}

extension ObjectStore {
    public var pacesDownloads: Bool { false }

    /// In pieces copied out of `get`'s one buffer; stores that can read into the pieces
    /// directly do so instead.
    public func get(_ key: String, range: Range<Int>?, pieceBytes: Int) async throws -> [ByteBuffer] {
        try await get(key, range: range).copiedInPieces(of: pieceBytes)
    }

    /// Writes an object held in one buffer.
    public func put(_ key: String, _ body: ByteBuffer, ifNoneMatch: Bool) async throws {
        try await put(key, ObjectBody(body), ifNoneMatch: ifNoneMatch)
    }
}

/// Request kinds, for metering and fault injection.
public enum ObjectStoreRequest: String, Sendable, CaseIterable {
    case put = "PUT", get = "GET", head = "HEAD", list = "LIST", delete = "DELETE"
}

extension Array where Element == ByteBuffer {
    /// The readable bytes of all the buffers.
    public var readableBytes: Int { reduce(0) { $0 + $1.readableBytes } }

    /// Bytes `range` of the buffers laid end to end, as slices of them (no copy).
    public func slices(_ range: Range<Int>) -> [ByteBuffer] {
        var out: [ByteBuffer] = []
        var start = 0  // where the current buffer starts in the whole
        for b in self {
            let end = start + b.readableBytes
            let lo = Swift.max(range.lowerBound, start), hi = Swift.min(range.upperBound, end)
            if lo < hi { out.append(b.getSlice(at: b.readerIndex + lo - start, length: hi - lo)!) }
            if end >= range.upperBound { break }
            start = end
        }
        return out
    }

    /// The buffers' bytes in one buffer: the only one as it is, else copied together.
    public func joined() -> ByteBuffer {
        if count == 1 { return self[0] }
        var out = ByteBufferAllocator().buffer(capacity: readableBytes)
        for b in self { out.writeImmutableBuffer(b) }
        return out
    }
}

extension ByteBuffer {
    /// The readable bytes as buffers of their own of `pieceBytes` each, the last one shorter.
    public func copiedInPieces(of pieceBytes: Int) -> [ByteBuffer] {
        var pieces: [ByteBuffer] = []
        var done = 0
        while done < readableBytes {
            let n = Swift.min(pieceBytes, readableBytes - done)
            var piece = ByteBufferAllocator().buffer(capacity: n)
            piece.writeImmutableBuffer(getSlice(at: readerIndex + done, length: n)!)
            pieces.append(piece)
            done += n
        }
        return pieces
    }
}
