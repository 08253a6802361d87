import KafkaProtocol
import Metadata
import NIOCore
import ObjectStore

/// The self-describing object layout shared by WAL objects (stream set objects) and,
/// later, stream objects:
///
///     [data block]* [index entry]* [superseded key]* [footer]
///
/// A data block holds contiguous record batches of one stream range (at most about
/// `blockSize` bytes). Each index entry is fixed width; the footer is the last 22 bytes,
/// so any object can be parsed alone by reading its tail.
public enum ObjectFormat {
    public static let magic: UInt32 = 0x5445_524E  // "TERN"
    public static let version: Int16 = 1
    public static let footerSize = 22
    public static let indexEntrySize = 64
    public static let blockSize = 1 << 20

    /// One index entry: where a stream range sits in the object.
    public struct Entry: Sendable, Equatable {
        public var streamId: Int64
        public var epoch: Int64
        public var startOffset: Int64
        public var endOffset: Int64
        public var recordCount: Int32
        public var minTimestamp: Int64
        public var maxTimestamp: Int64
        public var position: Int
        public var size: Int

        public init(streamId: Int64, epoch: Int64, startOffset: Int64, endOffset: Int64, recordCount: Int32,
                    minTimestamp: Int64, maxTimestamp: Int64, position: Int, size: Int) {
            self.streamId = streamId
            self.epoch = epoch
            self.startOffset = startOffset
            self.endOffset = endOffset
            self.recordCount = recordCount
            self.minTimestamp = minTimestamp
            self.maxTimestamp = maxTimestamp
            self.position = position
            self.size = size
        }
    }

    public struct Parsed: Sendable, Equatable {
        public var entries: [Entry]
        public var superseded: [String]

        public init(entries: [Entry], superseded: [String]) {
            self.entries = entries
            self.superseded = superseded
        }
    }

    /// A batch to place in an object, with the stream it belongs to.
    public struct Batch: Sendable {
        public var streamId: Int64
        public var epoch: Int64
        public var header: RecordBatchHeader
        public var bytes: ByteBuffer

        public init(streamId: Int64, epoch: Int64, header: RecordBatchHeader, bytes: ByteBuffer) {
            self.streamId = streamId
            self.epoch = epoch
            self.header = header
            self.bytes = bytes
        }
    }

    /// Builds an object from batches in append order. Batches are grouped by stream (sorted
    /// by stream id), each stream's batches kept in order and cut into blocks.
    public static func build(_ batches: [Batch], superseded: [String] = []) -> (bytes: ByteBuffer, entries: [Entry]) {
        let (body, entries) = body(batches, superseded: superseded)
        return (body.joined(), entries)
    }

    /// `build` as the batches themselves followed by the index and footer: the object is
    /// written from the memory that holds the batches, with no copy of it.
    public static func body(_ batches: [Batch], superseded: [String] = []) -> (body: ObjectBody, entries: [Entry]) {
        var byStream: [Int64: [Batch]] = [:]
        for b in batches { byStream[b.streamId, default: []].append(b) }
        var body = ObjectBody()
        var entries: [Entry] = []
        for id in byStream.keys.sorted() {
            var current: Entry?
            for b in byStream[id]! {
                // A block is one contiguous range of one epoch: compaction may hand over a stream's
                // batches with gaps where its other ranges live in objects it did not pick.
                if let c = current, c.size + b.bytes.readableBytes > blockSize || c.epoch != b.epoch || c.endOffset != b.header.baseOffset {
                    entries.append(c)
                    current = nil
                }
                if current == nil {
                    current = Entry(streamId: id, epoch: b.epoch, startOffset: b.header.baseOffset, endOffset: b.header.baseOffset,
                                    recordCount: 0, minTimestamp: .max, maxTimestamp: .min, position: body.readableBytes, size: 0)
                }
                body.append(b.bytes)
                current!.size += b.bytes.readableBytes
                current!.endOffset = b.header.lastOffset + 1
                current!.recordCount += b.header.recordCount
                current!.minTimestamp = min(current!.minTimestamp, b.header.baseTimestamp)
                current!.maxTimestamp = max(current!.maxTimestamp, b.header.maxTimestamp)
            }
            if let c = current { entries.append(c) }
        }
        let indexPosition = body.readableBytes
        var out = ByteBufferAllocator().buffer(capacity: entries.count * indexEntrySize + footerSize + superseded.reduce(0) { $0 + 2 + $1.utf8.count })
        for e in entries {
            out.writeInteger(e.streamId)
            out.writeInteger(e.epoch)
            out.writeInteger(e.startOffset)
            out.writeInteger(e.endOffset)
            out.writeInteger(e.recordCount)
            out.writeInteger(e.minTimestamp)
            out.writeInteger(e.maxTimestamp)
            out.writeInteger(Int64(e.position))
            out.writeInteger(Int32(e.size))
        }
        let supersededStart = out.writerIndex
        for key in superseded {
            out.writeInteger(UInt16(key.utf8.count))
            out.writeString(key)
        }
        out.writeInteger(Int64(indexPosition))
        out.writeInteger(Int32(entries.count))
        out.writeInteger(Int32(out.writerIndex - 12 - supersededStart))
        out.writeInteger(version)
        out.writeInteger(magic)
        body.append(out)
        return (body, entries)
    }

    public struct FormatError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses a whole object's index and footer.
    public static func parse(_ object: ByteBuffer) throws -> Parsed {
        try parse(tail: object, objectSize: object.readableBytes)
    }

    /// Reads an object's index and footer from the store: its last 64 KiB, and the rest of a
    /// larger index in a second ranged GET.
    public static func readIndex(_ store: any ObjectStore, key: String, size: Int) async throws -> Parsed {
        guard size >= footerSize else { throw FormatError(description: "not a Tern object (\(size) bytes)") }
        let tailStart = max(0, size - 65536)
        let tail = try await store.get(key, range: tailStart..<size)
        guard tail.readableBytes == size - tailStart,
              let indexPosition = tail.getInteger(at: tail.readerIndex + tail.readableBytes - 22, as: Int64.self) else {
            throw FormatError(description: "short read of the object's tail")
        }
        if indexPosition >= tailStart || indexPosition < 0 || indexPosition >= size { return try parse(tail: tail, objectSize: size) }
        return try parse(tail: try await store.get(key, range: Int(indexPosition)..<size), objectSize: size)
    }

    /// Parses the index and footer from the object's last bytes (`tail`, which must hold the
    /// index onwards) of an object of `objectSize` bytes.
    static func parse(tail object: ByteBuffer, objectSize: Int) throws -> Parsed {
        let n = object.readableBytes
        let base = object.readerIndex - (objectSize - n)  // where byte 0 of the object would sit
        guard n >= footerSize,
              let indexPosition = object.getInteger(at: base + objectSize - 22, as: Int64.self),
              let count = object.getInteger(at: base + objectSize - 14, as: Int32.self),
              let supersededSize = object.getInteger(at: base + objectSize - 10, as: Int32.self),
              let v = object.getInteger(at: base + objectSize - 6, as: Int16.self),
              let m = object.getInteger(at: base + objectSize - 4, as: UInt32.self),
              m == magic, v == version else {
            throw FormatError(description: "not a Tern object (bad footer)")
        }
        let indexEnd = Int(indexPosition) + Int(count) * indexEntrySize
        guard indexPosition >= 0, count >= 0, supersededSize >= 0, indexEnd + Int(supersededSize) + footerSize == objectSize,
              Int(indexPosition) >= objectSize - n else {
            throw FormatError(description: "object index does not fit the object")
        }
        var index = object.getSlice(at: base + Int(indexPosition), length: indexEnd - Int(indexPosition))!
        var entries: [Entry] = []
        for _ in 0..<count {
            let e = Entry(streamId: index.readInteger()!, epoch: index.readInteger()!, startOffset: index.readInteger()!,
                          endOffset: index.readInteger()!, recordCount: index.readInteger()!, minTimestamp: index.readInteger()!,
                          maxTimestamp: index.readInteger()!, position: Int(index.readInteger(as: Int64.self)!),
                          size: Int(index.readInteger(as: Int32.self)!))
            guard e.position >= 0, e.size >= 0, e.position + e.size <= Int(indexPosition) else {
                throw FormatError(description: "index entry points outside the data")
            }
            entries.append(e)
        }
        var sup = object.getSlice(at: base + indexEnd, length: Int(supersededSize))!
        var superseded: [String] = []
        while sup.readableBytes > 0 {
            guard let len = sup.readInteger(as: UInt16.self), let s = sup.readString(length: Int(len)) else {
                throw FormatError(description: "bad superseded list")
            }
            superseded.append(s)
        }
        return Parsed(entries: entries, superseded: superseded)
    }

    /// The ranges an object's entries make durable, for the metadata store: one per run of
    /// a stream's entries that follow each other in offsets and in the object, with one
    /// epoch (a run spans many blocks; readers find a block in the object's index).
    public static func ranges(of entries: [Entry], key: String, objectSize: Int = 0) -> [StreamRange] {
        var out: [StreamRange] = []
        for e in entries {
            if var last = out.last, last.streamId == e.streamId, last.epoch == e.epoch, last.endOffset == e.startOffset,
               last.position + last.size == e.position {
                last.endOffset = e.endOffset
                last.size += e.size
                last.minTimestamp = min(last.minTimestamp, e.minTimestamp)
                last.maxTimestamp = max(last.maxTimestamp, e.maxTimestamp)
                out[out.count - 1] = last
                continue
            }
            out.append(StreamRange(streamId: e.streamId, epoch: e.epoch, startOffset: e.startOffset, endOffset: e.endOffset,
                                   objectKey: key, position: e.position, size: e.size,
                                   minTimestamp: e.minTimestamp, maxTimestamp: e.maxTimestamp, objectSize: objectSize))
        }
        return out
    }
}

