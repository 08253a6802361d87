import NIOCore

/// The 61-byte header of a v2 record batch, read from the front of an opaque batch slice.
///
/// Batches stay as bytes on the hot path: the broker validates this header and the CRC,
/// stamps BaseOffset and PartitionLeaderEpoch (outside the CRC), and stores and serves the
/// same bytes.
public struct RecordBatchHeader: Sendable, Equatable {
    public static let size = 61
    /// Bytes before the length-delimited part (baseOffset + batchLength).
    public static let logOverhead = 12
    public static let crcOffset = 17
    public static let attributesOffset = 21

    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    public var crc: UInt32
    public var attributes: Int16
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordCount: Int32

    /// Total bytes of the batch, header included.
    public var totalSize: Int { Int(batchLength) + Self.logOverhead }
    public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    public var compression: Int { Int(attributes & 0x7) }
    public var isLogAppendTime: Bool { attributes & 0x8 != 0 }
    public var isTransactional: Bool { attributes & 0x10 != 0 }
    public var isControl: Bool { attributes & 0x20 != 0 }
    public var hasProducerId: Bool { producerId >= 0 }
    public var lastSequence: Int32 {
        baseSequence < 0 ? -1 : Int32(truncatingIfNeeded: (Int64(baseSequence) + Int64(lastOffsetDelta)) % (Int64(Int32.max) + 1))
    }

    /// Reads the header at the buffer's reader index without moving it; nil if too short.
    public init?(peeking buffer: ByteBuffer) {
        let i = buffer.readerIndex
        guard buffer.readableBytes >= Self.size,
              let baseOffset = buffer.getInteger(at: i, as: Int64.self),
              let batchLength = buffer.getInteger(at: i + 8, as: Int32.self),
              let ple = buffer.getInteger(at: i + 12, as: Int32.self),
              let magic = buffer.getInteger(at: i + 16, as: Int8.self),
              let crc = buffer.getInteger(at: i + 17, as: UInt32.self),
              let attributes = buffer.getInteger(at: i + 21, as: Int16.self),
              let lastOffsetDelta = buffer.getInteger(at: i + 23, as: Int32.self),
              let baseTimestamp = buffer.getInteger(at: i + 27, as: Int64.self),
              let maxTimestamp = buffer.getInteger(at: i + 35, as: Int64.self),
              let producerId = buffer.getInteger(at: i + 43, as: Int64.self),
              let producerEpoch = buffer.getInteger(at: i + 51, as: Int16.self),
              let baseSequence = buffer.getInteger(at: i + 53, as: Int32.self),
              let recordCount = buffer.getInteger(at: i + 57, as: Int32.self)
        else { return nil }
        self.baseOffset = baseOffset
        self.batchLength = batchLength
        self.partitionLeaderEpoch = ple
        self.magic = magic
        self.crc = crc
        self.attributes = attributes
        self.lastOffsetDelta = lastOffsetDelta
        self.baseTimestamp = baseTimestamp
        self.maxTimestamp = maxTimestamp
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.recordCount = recordCount
    }
}

/// A record-level error of a produced batch (ProduceResponse v8+ `record_errors`).
public struct RecordError: Sendable, Equatable {
    public var batchIndex: Int32
    public var message: String

    public init(batchIndex: Int32, message: String) {
        self.batchIndex = batchIndex
        self.message = message
    }
}

/// Why a produced batch was refused; mapped to Kafka's error codes by the broker.
public enum RecordBatchError: Error, Equatable, Sendable {
    /// magic < 2, lengths that do not add up, more than one batch, bad counts, data that
    /// does not decompress, missing keys on a compacted topic: INVALID_RECORD.
    case invalidRecord(String, [RecordError])
    /// The CRC does not match: CORRUPT_MESSAGE.
    case corrupt
    /// A CreateTime timestamp outside the topic's bounds: INVALID_TIMESTAMP.
    case invalidTimestamp(String, [RecordError])
    /// An unknown codec, or zstd from a client that predates it: UNSUPPORTED_COMPRESSION_TYPE.
    case unsupportedCompression(String)

    static func invalid(_ why: String) -> Self { .invalidRecord(why, []) }
}

/// What a topic asks of produced batches, as Kafka's LogValidator applies it.
public struct BatchPolicy: Sendable {
    /// The codec to store; nil keeps the producer's (`compression.type=producer`).
    public var codec: CompressionCodec?
    public var codecLevel: Int32?
    /// `message.timestamp.type=LogAppendTime`: stamp the broker's time into the batch.
    public var logAppendTime = false
    /// `cleanup.policy` includes `compact`: every record needs a key.
    public var requireKeys = false
    /// `message.timestamp.before.max.ms` / `after.max.ms` (CreateTime only).
    public var timestampBeforeMaxMs = Int64.max
    public var timestampAfterMaxMs = Int64.max
    /// zstd arrived with Produce v7; older requests may not carry it.
    public var allowZstd = true
    /// Largest decompressed batch accepted (a bomb must not eat memory).
    public var maxDecompressedBytes = 64 << 20

    public init() {}
}

/// A batch ready to append: possibly rewritten (timestamps, codec), CRC valid.
public struct ValidatedBatch: Sendable {
    public var bytes: ByteBuffer
    public var header: RecordBatchHeader
    /// The stamped LogAppendTime, or -1.
    public var logAppendTime: Int64
}

public enum RecordBatch {
    /// Validates a produced `records` field: exactly one v2 batch whose length and CRC hold
    /// and whose records fill it as the header says. Compressed records are not opened
    /// here; `validate(_:policy:now:)` does that. Returns the header.
    public static func validateSingle(_ records: ByteBuffer) throws(RecordBatchError) -> RecordBatchHeader {
        let header = try checkFraming(records)
        if header.compression == 0 {
            _ = try walkRecords(payload(records, header: header), header: header, visit: nil)
        }
        return header
    }

    /// The checks that need no record: one v2 batch, lengths and counts that add up, CRC.
    static func checkFraming(_ records: ByteBuffer) throws(RecordBatchError) -> RecordBatchHeader {
        // The magic byte sits at the same place in every message format version.
        guard records.readableBytes >= 17 else { throw .invalid("records too short for a batch header") }
        guard let magic = records.getInteger(at: records.readerIndex + 16, as: Int8.self), magic == 2 else {
            throw .invalid("message format v0/v1 is not supported; use magic 2")
        }
        guard let header = RecordBatchHeader(peeking: records) else {
            throw .invalid("records too short for a batch header")
        }
        guard header.batchLength >= Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead) else {
            throw .invalid("batch length \(header.batchLength) is too small")
        }
        if header.totalSize < records.readableBytes {
            throw .invalid("a produce request may carry one record batch per partition")
        }
        guard header.totalSize == records.readableBytes else {
            throw .invalid("batch length \(header.batchLength) exceeds the \(records.readableBytes) bytes sent")
        }
        guard header.recordCount >= 1, header.lastOffsetDelta == header.recordCount - 1 else {
            throw .invalid("record count \(header.recordCount) does not match last offset delta \(header.lastOffsetDelta)")
        }
        guard checksum(records, header: header) == header.crc else { throw .corrupt }
        return header
    }

    /// Validates a produced batch as Kafka's LogValidator does and applies the topic's
    /// policy: records walked (decompressed first when needed, up to a limit), keys on
    /// compacted topics, CreateTime bounds, the batch's max timestamp corrected to its
    /// records', LogAppendTime stamped, and the batch recompressed when the topic's codec
    /// differs from the producer's. The CRC is recomputed whenever bytes change; an
    /// uncompressed batch that needs no change comes back as the same slice.
    public static func validate(_ records: ByteBuffer, policy: BatchPolicy, now: Int64) throws(RecordBatchError) -> ValidatedBatch {
        var header = try checkFraming(records)
        guard let source = CompressionCodec(rawValue: header.compression) else {
            throw .unsupportedCompression("unknown compression codec id \(header.compression)")
        }
        if source == .zstd && !policy.allowZstd {
            throw .unsupportedCompression("zstd needs Produce v7 or later")
        }
        var body = payload(records, header: header)
        if source != .none {
            do {
                body = try Compression.decompress(body, codec: source, limit: policy.maxDecompressedBytes)
            } catch .tooLarge(let limit) {
                throw .invalid("the batch decompresses to more than \(limit) bytes")
            } catch {
                throw .invalid("the \(source) data of the batch cannot be decompressed: \(error)")
            }
        }
        var keyErrors: [RecordError] = []
        var timeErrors: [RecordError] = []
        let checkTime = !policy.logAppendTime
        let lower = policy.timestampBeforeMaxMs >= now ? Int64.min : now - policy.timestampBeforeMaxMs
        let upper = policy.timestampAfterMaxMs > Int64.max - now ? Int64.max : now + policy.timestampAfterMaxMs
        let recordsMaxTimestamp = try walkRecords(body, header: header) { index, timestampDelta, hasKey in
            if policy.requireKeys && !hasKey {
                keyErrors.append(RecordError(batchIndex: index, message: "Compacted topic cannot accept message without key."))
            }
            let ts = header.baseTimestamp &+ timestampDelta
            if checkTime && header.baseTimestamp != -1 && (ts < lower || ts > upper) {
                timeErrors.append(RecordError(batchIndex: index, message:
                    "Timestamp \(ts) of message with offset \(index) is out of range. The timestamp should be within [\(lower), \(upper)]"))
            }
        }
        if !keyErrors.isEmpty {
            throw .invalidRecord("Compacted topic cannot accept message without key.", keyErrors)
        }
        if !timeErrors.isEmpty {
            throw .invalidTimestamp("One or more records have been rejected due to invalid timestamp", timeErrors)
        }

        let target = policy.codec ?? source
        var attributes = header.attributes
        var maxTimestamp = recordsMaxTimestamp
        var logAppendTime: Int64 = -1
        if policy.logAppendTime {
            attributes |= 0x8
            maxTimestamp = now
            logAppendTime = now
        }
        attributes = (attributes & ~0x7) | Int16(target.rawValue)
        guard target != source || attributes != header.attributes || maxTimestamp != header.maxTimestamp else {
            return ValidatedBatch(bytes: records, header: header, logAppendTime: -1)
        }
        var out: ByteBuffer
        if target != source {
            let stored = target == .none ? body : Compression.compress(body, codec: target, level: policy.codecLevel)
            out = ByteBufferAllocator().buffer(capacity: RecordBatchHeader.size + stored.readableBytes)
            out.writeImmutableBuffer(records.getSlice(at: records.readerIndex, length: RecordBatchHeader.size)!)
            out.writeImmutableBuffer(stored)
            header.batchLength = Int32(out.readableBytes - RecordBatchHeader.logOverhead)
            out.setInteger(header.batchLength, at: 8)
        } else {
            out = ByteBufferAllocator().buffer(capacity: records.readableBytes)
            out.writeImmutableBuffer(records)
        }
        header.attributes = attributes
        header.maxTimestamp = maxTimestamp
        out.setInteger(attributes, at: RecordBatchHeader.attributesOffset)
        out.setInteger(maxTimestamp, at: 35)
        header.crc = checksum(out, header: header)
        out.setInteger(header.crc, at: RecordBatchHeader.crcOffset)
        return ValidatedBatch(bytes: out, header: header, logAppendTime: logAppendTime)
    }

    /// CRC-32C over attributes … end of batch: what `header.crc` must be.
    public static func checksum(_ batch: ByteBuffer, header: RecordBatchHeader) -> UInt32 {
        CRC32C.checksum(batch.getSlice(at: batch.readerIndex + RecordBatchHeader.attributesOffset,
                                       length: header.totalSize - RecordBatchHeader.attributesOffset)!)
    }

    /// The records section of a batch (compressed when the codec bits say so).
    public static func payload(_ batch: ByteBuffer, header: RecordBatchHeader) -> ByteBuffer {
        batch.getSlice(at: batch.readerIndex + RecordBatchHeader.size, length: header.totalSize - RecordBatchHeader.size)!
    }

    /// The records of a batch as plain bytes: the payload itself, or decompressed (up to `limit`).
    public static func records(_ batch: ByteBuffer, header: RecordBatchHeader, limit: Int = 64 << 20) throws -> ByteBuffer {
        guard let codec = CompressionCodec(rawValue: header.compression) else {
            throw ProtocolError(.invalidLength, "unknown compression codec id \(header.compression)")
        }
        return try Compression.decompress(payload(batch, header: header), codec: codec, limit: limit)
    }

    /// Walks decompressed records without copying them, as Kafka's LogValidator does: each
    /// record's length must hold its fields exactly, offset deltas must run 0, 1, 2 … and
    /// the records must fill the section to its end. `visit` sees each record's index,
    /// timestamp delta and whether it has a key. Returns the largest record timestamp.
    static func walkRecords(_ body: ByteBuffer, header: RecordBatchHeader,
                            visit: ((Int32, Int64, Bool) -> Void)?) throws(RecordBatchError) -> Int64 {
        var b = body
        var maxDelta = Int64.min
        do {
            for i in 0..<Int(header.recordCount) {
                let length = Int(try b.readVarint())
                guard length > 0, var r = b.readSlice(length: length) else {
                    throw RecordBatchError.invalid("record \(i) has an invalid length")
                }
                _ = try r.readKafka(Int8.self)
                let timestampDelta = try r.readVarlong()
                guard try r.readVarint() == Int32(i) else {
                    throw RecordBatchError.invalid("record \(i) has an out-of-order offset delta")
                }
                let hasKey = try skipVarBytes(&r, nullable: true)  // key
                _ = try skipVarBytes(&r, nullable: true)  // value
                let headers = Int(try r.readVarint())
                guard headers >= 0 else { throw RecordBatchError.invalid("record \(i) has a negative header count") }
                for _ in 0..<headers {
                    _ = try skipVarBytes(&r, nullable: false)
                    _ = try skipVarBytes(&r, nullable: true)
                }
                guard r.readableBytes == 0 else { throw RecordBatchError.invalid("record \(i) is longer than its fields") }
                maxDelta = max(maxDelta, timestampDelta)
                visit?(Int32(i), timestampDelta, hasKey)
            }
        } catch let e as RecordBatchError {
            throw e
        } catch {
            throw .invalid("records do not match the batch header: \(error)")
        }
        guard b.readableBytes == 0 else { throw .invalid("the batch holds more than its \(header.recordCount) records") }
        // Kafka's batch max timestamp is the largest record timestamp (-1 stays -1).
        return header.baseTimestamp == -1 ? -1 : header.baseTimestamp &+ maxDelta
    }

    /// Skips a varint-length field; returns false for a null one.
    private static func skipVarBytes(_ b: inout ByteBuffer, nullable: Bool) throws -> Bool {
        let n = Int(try b.readVarint())
        if n < 0 {
            guard nullable, n == -1 else { throw RecordBatchError.invalid("invalid field length \(n)") }
            return false
        }
        guard b.readableBytes >= n else { throw ProtocolError.truncated("record field") }
        b.moveReaderIndex(forwardBy: n)
        return true
    }

    /// Stamps the broker-assigned base offset and leader epoch; both lie outside the CRC.
    public static func stamp(_ batch: inout ByteBuffer, baseOffset: Int64, leaderEpoch: Int32) {
        batch.setInteger(baseOffset, at: batch.readerIndex)
        batch.setInteger(leaderEpoch, at: batch.readerIndex + 12)
    }

    /// Splits concatenated batches; stops at a partial trailing batch (as Kafka's fetch may return).
    public static func split(_ buffer: ByteBuffer) -> [(header: RecordBatchHeader, bytes: ByteBuffer)] {
        var out: [(RecordBatchHeader, ByteBuffer)] = []
        var b = buffer
        while let h = RecordBatchHeader(peeking: b), h.batchLength >= 49, b.readableBytes >= h.totalSize {
            out.append((h, b.readSlice(length: h.totalSize)!))
        }
        return out
    }

    /// The same over batches held in `parts`, laid end to end (the cache blocks a read took
    /// them from, a batch maybe running from one into the next): each batch's header and where
    /// it lies in the whole. Only a header split between two parts is copied.
    public static func split(parts: [ByteBuffer]) -> [(header: RecordBatchHeader, range: Range<Int>)] {
        var out: [(RecordBatchHeader, Range<Int>)] = []
        let total = parts.reduce(0) { $0 + $1.readableBytes }
        var pos = 0
        var part = 0, inPart = 0  // where `pos` lies
        while total - pos >= RecordBatchHeader.size {
            while parts[part].readableBytes == inPart {
                part += 1
                inPart = 0
            }
            var header: ByteBuffer
            if parts[part].readableBytes - inPart >= RecordBatchHeader.size {
                header = parts[part].getSlice(at: parts[part].readerIndex + inPart, length: RecordBatchHeader.size)!
            } else {
                header = ByteBuffer()
                header.reserveCapacity(RecordBatchHeader.size)
                var p = part, o = inPart
                while header.readableBytes < RecordBatchHeader.size {
                    let n = min(RecordBatchHeader.size - header.readableBytes, parts[p].readableBytes - o)
                    header.writeImmutableBuffer(parts[p].getSlice(at: parts[p].readerIndex + o, length: n)!)
                    p += 1
                    o = 0
                }
            }
            guard let h = RecordBatchHeader(peeking: header), h.batchLength >= 49, total - pos >= h.totalSize else { break }
            out.append((h, pos..<(pos + h.totalSize)))
            pos += h.totalSize
            var n = h.totalSize
            while n > 0 {
                let left = parts[part].readableBytes - inPart
                if n < left {
                    inPart += n
                    n = 0
                } else {
                    n -= left
                    part += 1
                    inPart = 0
                }
            }
        }
        return out
    }
}
