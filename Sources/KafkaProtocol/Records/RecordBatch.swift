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

/// Why a produced batch was refused; mapped to Kafka's error codes by the broker.
public enum RecordBatchError: Error, Equatable, Sendable {
    /// magic < 2, lengths that do not add up, more than one batch, bad counts: INVALID_RECORD.
    case invalidRecord(String)
    /// The CRC does not match: CORRUPT_MESSAGE.
    case corrupt
}

public enum RecordBatch {
    /// Validates a produced `records` field: exactly one v2 batch whose length and CRC hold.
    /// Returns its header.
    public static func validateSingle(_ records: ByteBuffer) throws(RecordBatchError) -> RecordBatchHeader {
        // The magic byte sits at the same place in every message format version.
        guard records.readableBytes >= 17 else { throw .invalidRecord("records too short for a batch header") }
        guard let magic = records.getInteger(at: records.readerIndex + 16, as: Int8.self), magic == 2 else {
            throw .invalidRecord("message format v0/v1 is not supported; use magic 2")
        }
        guard let header = RecordBatchHeader(peeking: records) else {
            throw .invalidRecord("records too short for a batch header")
        }
        guard header.batchLength >= Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead) else {
            throw .invalidRecord("batch length \(header.batchLength) is too small")
        }
        if header.totalSize < records.readableBytes {
            throw .invalidRecord("a produce request may carry one record batch per partition")
        }
        guard header.totalSize == records.readableBytes else {
            throw .invalidRecord("batch length \(header.batchLength) exceeds the \(records.readableBytes) bytes sent")
        }
        guard header.recordCount >= 1, header.lastOffsetDelta == header.recordCount - 1 else {
            throw .invalidRecord("record count \(header.recordCount) does not match last offset delta \(header.lastOffsetDelta)")
        }
        let covered = records.getSlice(at: records.readerIndex + RecordBatchHeader.attributesOffset,
                                       length: header.totalSize - RecordBatchHeader.attributesOffset)!
        guard CRC32C.checksum(covered) == header.crc else { throw .corrupt }
        if header.compression == 0 {
            try validateRecords(records, header: header)
        }
        return header
    }

    /// Walks the records of an uncompressed batch without copying them, as Kafka's
    /// LogValidator does: each record's length must hold its fields exactly, offset deltas
    /// must run 0, 1, 2 … and the records must fill the batch to its end. (Compressed
    /// batches are checked once the codecs can open them.)
    static func validateRecords(_ batch: ByteBuffer, header: RecordBatchHeader) throws(RecordBatchError) {
        var b = batch.getSlice(at: batch.readerIndex + RecordBatchHeader.size, length: header.totalSize - RecordBatchHeader.size)!
        do {
            for i in 0..<Int(header.recordCount) {
                let length = Int(try b.readVarint())
                guard length > 0, var r = b.readSlice(length: length) else {
                    throw RecordBatchError.invalidRecord("record \(i) has an invalid length")
                }
                _ = try r.readKafka(Int8.self)
                _ = try r.readVarlong()
                guard try r.readVarint() == Int32(i) else {
                    throw RecordBatchError.invalidRecord("record \(i) has an out-of-order offset delta")
                }
                try skipVarBytes(&r, nullable: true)  // key
                try skipVarBytes(&r, nullable: true)  // value
                let headers = Int(try r.readVarint())
                guard headers >= 0 else { throw RecordBatchError.invalidRecord("record \(i) has a negative header count") }
                for _ in 0..<headers {
                    try skipVarBytes(&r, nullable: false)
                    try skipVarBytes(&r, nullable: true)
                }
                guard r.readableBytes == 0 else { throw RecordBatchError.invalidRecord("record \(i) is longer than its fields") }
            }
        } catch let e as RecordBatchError {
            throw e
        } catch {
            throw .invalidRecord("records do not match the batch header: \(error)")
        }
        guard b.readableBytes == 0 else { throw .invalidRecord("the batch holds more than its \(header.recordCount) records") }
    }

    private static func skipVarBytes(_ b: inout ByteBuffer, nullable: Bool) throws {
        let n = Int(try b.readVarint())
        if n < 0 {
            guard nullable, n == -1 else { throw RecordBatchError.invalidRecord("invalid field length \(n)") }
            return
        }
        guard b.readableBytes >= n else { throw ProtocolError.truncated("record field") }
        b.moveReaderIndex(forwardBy: n)
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
}
