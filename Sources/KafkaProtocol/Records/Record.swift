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

    func encode(into b: inout ByteBuffer) {
        var body = ByteBuffer()
        body.writeInteger(Int8(0))
        body.writeVarlong(timestampDelta)
        body.writeVarint(offsetDelta)
        for f in [key, value] {
            if let f { body.writeVarint(Int32(f.readableBytes)); body.writeImmutableBuffer(f) } else { body.writeVarint(-1) }
        }
        body.writeVarint(Int32(headers.count))
        for (k, v) in headers {
            body.writeVarint(Int32(k.utf8.count))
            body.writeString(k)
            if let v { body.writeVarint(Int32(v.readableBytes)); body.writeImmutableBuffer(v) } else { body.writeVarint(-1) }
        }
        b.writeVarint(Int32(body.readableBytes))
        b.writeImmutableBuffer(body)
    }
}

/// Builds v2 batches (tests, tools, the load generator), compressed with `compression`.
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
        var plain = ByteBuffer()
        for r in records { r.encode(into: &plain) }
        let body = Compression.compress(plain, codec: compression)
        var b = ByteBuffer()
        b.reserveCapacity(RecordBatchHeader.size + body.readableBytes)
        b.writeInteger(baseOffset)
        b.writeInteger(Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead + body.readableBytes))
        b.writeInteger(Int32(-1))
        b.writeInteger(Int8(2))
        b.writeInteger(UInt32(0))
        let crcStart = b.writerIndex
        b.writeInteger(attributes & ~0x7 | Int16(compression.rawValue))
        b.writeInteger(Int32(max(0, records.count - 1)))
        b.writeInteger(baseTimestamp)
        b.writeInteger(baseTimestamp + (records.map(\.timestampDelta).max() ?? 0))
        b.writeInteger(producerId)
        b.writeInteger(producerEpoch)
        b.writeInteger(baseSequence)
        b.writeInteger(Int32(records.count))
        b.writeImmutableBuffer(body)
        let crc = CRC32C.checksum(b.getSlice(at: crcStart, length: b.writerIndex - crcStart)!)
        b.setInteger(crc, at: crcStart - 4)
        return b
    }
}
