import NIOCore

/// Kafka's wire primitives on ByteBuffer. Every reader throws `ProtocolError` instead of
/// trusting a length field: a frame can claim anything.
extension ByteBuffer {
    public mutating func readKafka<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        guard let v = readInteger(as: T.self) else { throw ProtocolError.truncated("integer") }
        return v
    }

    public mutating func readKafkaBool() throws -> Bool {
        try readKafka(Int8.self) != 0
    }

    public mutating func readKafkaFloat64() throws -> Double {
        Double(bitPattern: try readKafka(UInt64.self))
    }

    public mutating func readKafkaUUID() throws -> KafkaUUID {
        KafkaUUID(high: try readKafka(), low: try readKafka())
    }

    // MARK: varints

    public mutating func readUnsignedVarint() throws -> UInt32 {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            guard let byte = readInteger(as: UInt8.self) else { throw ProtocolError.truncated("varint") }
            if shift == 28 && byte > 0x0F { throw ProtocolError(.invalidLength, "varint too long") }
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    public mutating func readUnsignedVarlong() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = readInteger(as: UInt8.self) else { throw ProtocolError.truncated("varlong") }
            if shift == 63 && byte > 1 { throw ProtocolError(.invalidLength, "varlong too long") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    public mutating func readVarint() throws -> Int32 {
        let raw = try readUnsignedVarint()
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    public mutating func readVarlong() throws -> Int64 {
        let raw = try readUnsignedVarlong()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    @discardableResult
    public mutating func writeUnsignedVarint(_ value: UInt32) -> Int {
        var v = value
        var n = 0
        while v >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
            n += 1
        }
        writeInteger(UInt8(v))
        return n + 1
    }

    @discardableResult
    public mutating func writeUnsignedVarlong(_ value: UInt64) -> Int {
        var v = value
        var n = 0
        while v >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
            n += 1
        }
        writeInteger(UInt8(v))
        return n + 1
    }

    @discardableResult
    public mutating func writeVarint(_ value: Int32) -> Int {
        writeUnsignedVarint(UInt32(bitPattern: (value << 1) ^ (value >> 31)))
    }

    @discardableResult
    public mutating func writeVarlong(_ value: Int64) -> Int {
        writeUnsignedVarlong(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    // MARK: lengths

    /// Reads a length (int16/int32 classic or unsigned varint + 1 compact) and returns nil for null.
    mutating func readLength(compact: Bool, short: Bool) throws -> Int? {
        if compact {
            let n = try readUnsignedVarint()
            return n == 0 ? nil : Int(n - 1)
        }
        let n = short ? Int(try readKafka(Int16.self)) : Int(try readKafka(Int32.self))
        return n < 0 ? nil : n
    }

    mutating func checkedLength(_ n: Int, minimumElementSize: Int = 1) throws -> Int {
        guard n <= readableBytes / Swift.max(minimumElementSize, 1) || n == 0 else {
            throw ProtocolError(.invalidLength, "length \(n) exceeds the \(readableBytes) bytes left")
        }
        return n
    }

    // MARK: strings and bytes

    public mutating func readKafkaString(compact: Bool) throws -> String {
        guard let s = try readKafkaNullableString(compact: compact) else {
            throw ProtocolError(.invalidString, "null where a string is required")
        }
        return s
    }

    public mutating func readKafkaNullableString(compact: Bool) throws -> String? {
        guard let n = try readLength(compact: compact, short: true) else { return nil }
        guard let s = readString(length: try checkedLength(n)) else { throw ProtocolError.truncated("string") }
        return s
    }

    public mutating func readKafkaBytes(compact: Bool) throws -> ByteBuffer {
        guard let b = try readKafkaNullableBytes(compact: compact) else {
            throw ProtocolError(.invalidLength, "null where bytes are required")
        }
        return b
    }

    public mutating func readKafkaNullableBytes(compact: Bool) throws -> ByteBuffer? {
        guard let n = try readLength(compact: compact, short: false) else { return nil }
        guard let b = readSlice(length: try checkedLength(n)) else { throw ProtocolError.truncated("bytes") }
        return b
    }

    /// Array length; nil for a null array. Checks that the count can fit in what is left.
    public mutating func readKafkaArrayCount(compact: Bool) throws -> Int? {
        guard let n = try readLength(compact: compact, short: false) else { return nil }
        return try checkedLength(n)
    }

    public mutating func writeKafkaString(_ s: String, compact: Bool) {
        let n = s.utf8.count
        if compact { writeUnsignedVarint(UInt32(n + 1)) } else { writeInteger(Int16(n)) }
        writeString(s)
    }

    public mutating func writeKafkaNullableString(_ s: String?, compact: Bool) {
        guard let s else {
            if compact { writeUnsignedVarint(0) } else { writeInteger(Int16(-1)) }
            return
        }
        writeKafkaString(s, compact: compact)
    }

    public mutating func writeKafkaBytes(_ b: ByteBuffer, compact: Bool) {
        writeKafkaBytesLength(b.readableBytes, compact: compact)
        writeImmutableBuffer(b)
    }

    private mutating func writeKafkaBytesLength(_ n: Int, compact: Bool) {
        if compact { writeUnsignedVarint(UInt32(n + 1)) } else { writeInteger(Int32(n)) }
    }

    public mutating func writeKafkaNullableBytes(_ b: ByteBuffer?, compact: Bool) {
        guard let b else {
            if compact { writeUnsignedVarint(0) } else { writeInteger(Int32(-1)) }
            return
        }
        writeKafkaBytes(b, compact: compact)
    }

    /// A record set, `b` and then the parts `continued` (a set read across cache blocks):
    /// copied, or, while a `RecordsSplice` collects, only its length prefix, the parts to
    /// follow at this place in the frame.
    public mutating func writeKafkaRecords(_ b: ByteBuffer, continued: [ByteBuffer] = [], compact: Bool) {
        let total = continued.reduce(b.readableBytes) { $0 + $1.readableBytes }
        writeKafkaBytesLength(total, compact: compact)
        if let splice = RecordsSplice.current, !RecordsSplice.isCopied(bytes: total) {
            if b.readableBytes > 0 { splice.add(b, at: writerIndex) }
            for part in continued where part.readableBytes > 0 { splice.add(part, at: writerIndex) }
        } else {
            writeImmutableBuffer(b)
            for part in continued { writeImmutableBuffer(part) }
        }
    }

    public mutating func writeKafkaNullableRecords(_ b: ByteBuffer?, continued: [ByteBuffer] = [], compact: Bool) {
        guard let b else { return writeKafkaNullableBytes(nil, compact: compact) }
        writeKafkaRecords(b, continued: continued, compact: compact)
    }

    public mutating func writeKafkaArrayCount(_ n: Int?, compact: Bool) {
        guard let n else {
            if compact { writeUnsignedVarint(0) } else { writeInteger(Int32(-1)) }
            return
        }
        if compact { writeUnsignedVarint(UInt32(n + 1)) } else { writeInteger(Int32(n)) }
    }

    public mutating func writeKafkaBool(_ v: Bool) { writeInteger(Int8(v ? 1 : 0)) }
    public mutating func writeKafkaFloat64(_ v: Double) { writeInteger(v.bitPattern) }
    public mutating func writeKafkaUUID(_ v: KafkaUUID) {
        writeInteger(v.high)
        writeInteger(v.low)
    }

    // MARK: tagged fields

    /// Skips a tagged field's value we do not know.
    public mutating func skipTaggedField() throws {
        let size = Int(try readUnsignedVarint())
        guard readableBytes >= size else { throw ProtocolError.truncated("tagged field") }
        moveReaderIndex(forwardBy: size)
    }

    /// Skips a whole tagged-field section (count, then tag/size/value each) of a struct
    /// whose tags we do not model.
    public mutating func skipTaggedFields() throws {
        let count = try readUnsignedVarint()
        for _ in 0..<count {
            _ = try readUnsignedVarint()
            try skipTaggedField()
        }
    }

    /// Writes a tagged field: tag, size, then whatever `body` writes.
    public mutating func writeTaggedField(tag: UInt32, _ body: (inout ByteBuffer) -> Void) {
        writeUnsignedVarint(tag)
        var scratch = ByteBuffer()
        body(&scratch)
        writeUnsignedVarint(UInt32(scratch.readableBytes))
        writeImmutableBuffer(scratch)
    }
}

/// Version ranges and defaults shared by generated code.
public enum KafkaDefaults {
    public static let emptyBuffer = ByteBuffer()
}
