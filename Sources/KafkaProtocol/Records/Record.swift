import NIOCore

/// One record of a v2 batch. Decoded only where a feature needs it (time lookups, tools,
/// tests); the broker's hot path never decodes records.
public struct Record: Sendable, Equatable {
    public var offsetDelta: Int32
    public var timestampDelta: Int64
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [(String, ByteBuffer?)]

    public init(offsetDelta: Int32 = 0, timestampDelta: Int64 = 0, key: ByteBuffer?, value: ByteBuffer?, headers: [(String, ByteBuffer?)] = []) {
        self.offsetDelta = offsetDelta
        self.timestampDelta = timestampDelta
        self.key = key
        self.value = value
        self.headers = headers
    }

    public static func == (a: Record, b: Record) -> Bool {
        a.offsetDelta == b.offsetDelta && a.timestampDelta == b.timestampDelta && a.key == b.key && a.value == b.value
            && a.headers.map(\.0) == b.headers.map(\.0) && a.headers.map(\.1) == b.headers.map(\.1)
    }

    /// Decodes the records of a batch, decompressing them first (up to `limit` bytes).
    public static func decodeAll(batch: ByteBuffer, limit: Int = 64 << 20) throws -> [Record] {
        guard let h = RecordBatchHeader(peeking: batch), h.batchLength >= 49, batch.readableBytes >= h.totalSize else {
            throw ProtocolError.truncated("batch header")
        }
        var b = try RecordBatch.records(batch, header: h, limit: limit)
        var out: [Record] = []
        for _ in 0..<max(0, Int(h.recordCount)) {
            let length = Int(try b.readVarint())
            guard length >= 0, var r = b.readSlice(length: length) else { throw ProtocolError.truncated("record") }
            _ = try r.readKafka(Int8.self)
            let ts = try r.readVarlong()
            let od = try r.readVarint()
            let key = try readVarBytes(&r)
            let value = try readVarBytes(&r)
            let hc = Int(try r.readVarint())
            var headers: [(String, ByteBuffer?)] = []
            for _ in 0..<max(0, hc) {
                guard let nameBytes = try readVarBytes(&r) else { throw ProtocolError(.invalidString, "null header key") }
                headers.append((String(buffer: nameBytes), try readVarBytes(&r)))
            }
            out.append(Record(offsetDelta: od, timestampDelta: ts, key: key, value: value, headers: headers))
        }
        return out
    }

    private static func readVarBytes(_ b: inout ByteBuffer) throws -> ByteBuffer? {
        let n = Int(try b.readVarint())
        if n < 0 { return nil }
        guard let s = b.readSlice(length: n) else { throw ProtocolError.truncated("record field") }
        return s
    }

    /// Visits the records of a batch without building `Record` values: key and value are
    /// slices of the (decompressed) batch, headers are skipped. For readers that look at
    /// every record on a hot path (the e2e load generator reads a timestamp from each value).
    public static func forEach(inBatch batch: ByteBuffer, limit: Int = 64 << 20,
                               _ visit: (_ offsetDelta: Int32, _ timestampDelta: Int64, _ key: ByteBuffer?, _ value: ByteBuffer?) throws -> Void) throws {
        guard let h = RecordBatchHeader(peeking: batch), h.batchLength >= 49, batch.readableBytes >= h.totalSize else {
            throw ProtocolError.truncated("batch header")
        }
        var b = try RecordBatch.records(batch, header: h, limit: limit)
        for _ in 0..<max(0, Int(h.recordCount)) {
            let length = Int(try b.readVarint())
            guard length >= 0, var r = b.readSlice(length: length) else { throw ProtocolError.truncated("record") }
            _ = try r.readKafka(Int8.self)
            let ts = try r.readVarlong()
            let od = try r.readVarint()
            let key = try readVarBytes(&r)
            let value = try readVarBytes(&r)
            try visit(od, ts, key, value)
        }
    }
}

/// Encodes a v2 batch as records are appended: each record goes straight into the batch's
/// buffer behind 61 reserved header bytes, so appending costs no allocation per record (the
/// buffer grows by doubling). `finish()` fills the header and CRC in place, or compresses
/// the records behind a fresh header.
///
/// The load generator (`tern perf`) and `tern produce` append raw bytes; `RecordBatchBuilder`
/// wraps this for callers that want `Record` values they can inspect and alter.
public struct RecordBatchEncoder: Sendable {
    public var baseOffset: Int64 = 0
    public var baseTimestamp: Int64
    public var producerId: Int64 = -1
    public var producerEpoch: Int16 = -1
    public var baseSequence: Int32 = -1
    /// Attribute bits other than the codec (timestamp type, transactional, control).
    public var attributes: Int16 = 0
    public let compression: CompressionCodec
    /// Records appended so far.
    public private(set) var count: Int32 = 0
    private var maxTimestampDelta: Int64 = 0
    private var buffer: ByteBuffer

    public init(baseTimestamp: Int64, compression: CompressionCodec = .none, capacity: Int = 1024,
                allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.baseTimestamp = baseTimestamp
        self.compression = compression
        buffer = allocator.buffer(capacity: RecordBatchHeader.size + max(0, capacity))
        buffer.writeRepeatingByte(0, count: RecordBatchHeader.size)
    }

    public var isEmpty: Bool { count == 0 }
    /// Size of the batch so far, uncompressed, header included.
    public var sizeInBytes: Int { buffer.readableBytes }

    /// Bytes of a varint / varlong (zigzag) holding `v`.
    @inlinable
    public static func varlongSize(_ v: Int64) -> Int {
        let z = UInt64(bitPattern: (v << 1) ^ (v >> 63))
        return z == 0 ? 1 : (70 - z.leadingZeroBitCount) / 7
    }

    /// Bytes one record takes in a batch (its length prefix included), with no headers.
    public static func recordSize(timestampDelta: Int64 = 0, offsetDelta: Int32, keyLength: Int?, valueLength: Int?) -> Int {
        let body = bodySize(timestampDelta: timestampDelta, offsetDelta: offsetDelta, keyLength: keyLength, valueLength: valueLength)
        return varlongSize(Int64(body)) + body
    }

    private static func bodySize(timestampDelta: Int64, offsetDelta: Int32, keyLength: Int?, valueLength: Int?) -> Int {
        // attributes, timestamp delta, offset delta, key, value, header count 0
        1 + varlongSize(timestampDelta) + varlongSize(Int64(offsetDelta)) + fieldSize(keyLength) + fieldSize(valueLength) + 1
    }

    @inline(__always) private static func fieldSize(_ length: Int?) -> Int {
        guard let length else { return 1 }
        return varlongSize(Int64(length)) + length
    }

    /// Appends a record whose key (nil: null) and value (nil: null) the closures write in
    /// place: `key` gets exactly `keyLength` bytes to fill, `value` `valueLength`. No headers.
    /// The record is written through one pointer: a ByteBuffer write per field (a dozen with
    /// the varints' bytes) each checked the capacity and the storage's exclusive access, about
    /// a tenth of `tern perf produce`'s CPU.
    public mutating func append(timestampDelta: Int64 = 0,
                                keyLength: Int?, key: (UnsafeMutableRawBufferPointer) -> Void,
                                valueLength: Int?, value: (UnsafeMutableRawBufferPointer) -> Void) {
        precondition((keyLength ?? 0) >= 0 && (valueLength ?? 0) >= 0, "negative field length")
        let body = Self.bodySize(timestampDelta: timestampDelta, offsetDelta: count, keyLength: keyLength, valueLength: valueLength)
        let total = Self.varlongSize(Int64(body)) + body
        let offsetDelta = count
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { raw in
            var at = 0
            @inline(__always) func varlong(_ v: Int64) {
                var z = UInt64(bitPattern: (v << 1) ^ (v >> 63))
                while z >= 0x80 {
                    raw[at] = UInt8(truncatingIfNeeded: z) | 0x80
                    z >>= 7
                    at += 1
                }
                raw[at] = UInt8(z)
                at += 1
            }
            @inline(__always) func field(_ length: Int?, _ fill: (UnsafeMutableRawBufferPointer) -> Void) {
                guard let length else { return varlong(-1) }
                varlong(Int64(length))
                fill(UnsafeMutableRawBufferPointer(rebasing: raw[at..<(at + length)]))
                at += length
            }
            varlong(Int64(body))
            raw[at] = 0  // attributes
            at += 1
            varlong(timestampDelta)
            varlong(Int64(offsetDelta))
            field(keyLength, key)
            field(valueLength, value)
            raw[at] = 0  // header count
            at += 1
            precondition(at == total, "record of \(at) bytes, \(total) expected")
            return total
        }
        noteAppended(timestampDelta: timestampDelta)
    }

    private mutating func noteAppended(timestampDelta: Int64) {
        maxTimestampDelta = count == 0 ? timestampDelta : max(maxTimestampDelta, timestampDelta)
        count += 1
    }

    /// Appends a record with the given fields; `offsetDelta` defaults to its position (a
    /// test may give another to build a broken batch).
    public mutating func append(key: ByteBuffer?, value: ByteBuffer?, timestampDelta: Int64 = 0,
                                headers: [(String, ByteBuffer?)] = [], offsetDelta: Int32? = nil) {
        var body = 1 + Self.varlongSize(timestampDelta) + Self.varlongSize(Int64(offsetDelta ?? count))
            + Self.fieldSize(key?.readableBytes) + Self.fieldSize(value?.readableBytes) + Self.varlongSize(Int64(headers.count))
        for (k, v) in headers { body += Self.fieldSize(k.utf8.count) + Self.fieldSize(v?.readableBytes) }
        buffer.reserveCapacity(minimumWritableBytes: Self.varlongSize(Int64(body)) + body)
        buffer.writeVarint(Int32(body))
        buffer.writeInteger(Int8(0))
        buffer.writeVarlong(timestampDelta)
        buffer.writeVarint(offsetDelta ?? count)
        writeField(key)
        writeField(value)
        buffer.writeVarint(Int32(headers.count))
        for (k, v) in headers {
            buffer.writeVarint(Int32(k.utf8.count))
            buffer.writeString(k)
            writeField(v)
        }
        noteAppended(timestampDelta: timestampDelta)
    }

    private mutating func writeField(_ field: ByteBuffer?) {
        if let field {
            buffer.writeVarint(Int32(field.readableBytes))
            buffer.writeImmutableBuffer(field)
        } else {
            buffer.writeVarint(-1)
        }
    }

    /// The finished batch (header, CRC, records compressed with `compression`). The encoder
    /// is left empty, its buffer handed over, ready for the next batch.
    public mutating func finish() -> ByteBuffer {
        var out = buffer
        let allocator = ByteBufferAllocator()
        buffer = allocator.buffer(capacity: max(RecordBatchHeader.size, min(out.capacity, 1 << 20)))
        buffer.writeRepeatingByte(0, count: RecordBatchHeader.size)
        if compression != .none {
            let plain = out.getSlice(at: out.readerIndex + RecordBatchHeader.size, length: out.readableBytes - RecordBatchHeader.size)!
            let body = Compression.compress(plain, codec: compression)
            out = allocator.buffer(capacity: RecordBatchHeader.size + body.readableBytes)
            out.writeRepeatingByte(0, count: RecordBatchHeader.size)
            out.writeImmutableBuffer(body)
        }
        let i = out.readerIndex
        out.setInteger(baseOffset, at: i)
        out.setInteger(Int32(out.readableBytes - RecordBatchHeader.logOverhead), at: i + 8)
        out.setInteger(Int32(-1), at: i + 12)
        out.setInteger(Int8(2), at: i + 16)
        out.setInteger(attributes & ~0x7 | Int16(compression.rawValue), at: i + RecordBatchHeader.attributesOffset)
        out.setInteger(max(0, count - 1), at: i + 23)
        out.setInteger(baseTimestamp, at: i + 27)
        out.setInteger(baseTimestamp + maxTimestampDelta, at: i + 35)
        out.setInteger(producerId, at: i + 43)
        out.setInteger(producerEpoch, at: i + 51)
        out.setInteger(baseSequence, at: i + 53)
        out.setInteger(count, at: i + 57)
        let crc = CRC32C.checksum(out.getSlice(at: i + RecordBatchHeader.attributesOffset,
                                               length: out.readableBytes - RecordBatchHeader.attributesOffset)!)
        out.setInteger(crc, at: i + RecordBatchHeader.crcOffset)
        count = 0
        maxTimestampDelta = 0
        return out
    }
}

/// Builds v2 batches from `Record` values that a caller can still inspect or alter before
/// `build()` (tests make broken batches this way), compressed with `compression`. Hot paths
/// append to a `RecordBatchEncoder` instead, which costs no allocation per record.
public struct RecordBatchBuilder: Sendable {
    public var baseOffset: Int64 = 0
    public var baseTimestamp: Int64
    public var producerId: Int64 = -1
    public var producerEpoch: Int16 = -1
    public var baseSequence: Int32 = -1
    public var attributes: Int16 = 0
    public var compression: CompressionCodec = .none
    public var records: [Record] = []

    public init(baseTimestamp: Int64, compression: CompressionCodec = .none) {
        self.baseTimestamp = baseTimestamp
        self.compression = compression
    }

    public mutating func append(key: ByteBuffer?, value: ByteBuffer?, timestampDelta: Int64 = 0, headers: [(String, ByteBuffer?)] = []) {
        records.append(Record(offsetDelta: Int32(records.count), timestampDelta: timestampDelta, key: key, value: value, headers: headers))
    }

    public func build() -> ByteBuffer {
        var e = RecordBatchEncoder(baseTimestamp: baseTimestamp, compression: compression)
        e.baseOffset = baseOffset
        e.producerId = producerId
        e.producerEpoch = producerEpoch
        e.baseSequence = baseSequence
        e.attributes = attributes
        for r in records {
            e.append(key: r.key, value: r.value, timestampDelta: r.timestampDelta, headers: r.headers, offsetDelta: r.offsetDelta)
        }
        return e.finish()
    }
}
