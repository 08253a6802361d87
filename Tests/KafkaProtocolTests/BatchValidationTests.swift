import KafkaProtocol
import NIOCore
import Testing

/// `RecordBatch.validate`: Kafka's LogValidator rules and a topic's policy.
@Suite struct BatchValidationTests {
    static let now: Int64 = 1_700_000_000_000

    static func batch(_ codec: CompressionCodec = .none, records: Int = 3, base: Int64 = now - 1000,
                      keys: Bool = true, deltas: [Int64]? = nil) -> ByteBuffer {
        var b = RecordBatchBuilder(baseTimestamp: base)
        b.compression = codec
        for i in 0..<records {
            b.append(key: keys ? ByteBuffer(string: "k\(i)") : nil, value: ByteBuffer(string: String(repeating: "value \(i) ", count: 20)),
                     timestampDelta: deltas?[i] ?? Int64(i * 10))
        }
        return b.build()
    }

    static func values(_ batch: ByteBuffer) throws -> [String] {
        try Record.decodeAll(batch: batch).map { String(buffer: $0.value!) }
    }

    static func recrc(_ b: inout ByteBuffer) {
        let covered = b.getSlice(at: b.readerIndex + 21, length: b.readableBytes - 21)!
        b.setInteger(CRC32C.checksum(covered), at: b.readerIndex + 17)
    }

    @Test(arguments: CompressionCodec.allCases)
    func producerCodecIsKeptAsIs(codec: CompressionCodec) throws {
        let b = Self.batch(codec)
        let v = try RecordBatch.validate(b, policy: BatchPolicy(), now: Self.now)
        #expect(v.bytes == b)
        #expect(v.header.compression == codec.rawValue)
        #expect(v.logAppendTime == -1)
        #expect(try Self.values(v.bytes) == Self.values(Self.batch()))
    }

    @Test(arguments: CompressionCodec.allCases, CompressionCodec.allCases)
    func topicCodecRecompresses(from source: CompressionCodec, to target: CompressionCodec) throws {
        var policy = BatchPolicy()
        policy.codec = target
        let b = Self.batch(source, records: 50)
        let v = try RecordBatch.validate(b, policy: policy, now: Self.now)
        #expect(v.header.compression == target.rawValue)
        // The rewritten batch is a valid batch in its own right (lengths, CRC, records).
        let again = try RecordBatch.validate(v.bytes, policy: BatchPolicy(), now: Self.now)
        #expect(again.header == v.header)
        #expect(v.header.recordCount == 50)
        #expect(try Self.values(v.bytes) == Self.values(Self.batch(records: 50)))
        if source == target { #expect(v.bytes == b) }
    }

    @Test func logAppendTimeIsStampedAndCrcRecomputed() throws {
        var policy = BatchPolicy()
        policy.logAppendTime = true
        let b = Self.batch(.lz4, base: 5)
        let v = try RecordBatch.validate(b, policy: policy, now: Self.now)
        #expect(v.logAppendTime == Self.now)
        #expect(v.header.isLogAppendTime)
        #expect(v.header.maxTimestamp == Self.now)
        #expect(v.header.baseTimestamp == 5)
        let h = try RecordBatch.validateSingle(v.bytes)
        #expect(h.isLogAppendTime && h.maxTimestamp == Self.now && h.compression == 3)
    }

    @Test func futureTimestampIsRejectedWithRecordErrors() throws {
        var policy = BatchPolicy()
        policy.timestampAfterMaxMs = 3_600_000
        let b = Self.batch(.gzip, base: Self.now, deltas: [0, 7_200_000, 10])
        do {
            _ = try RecordBatch.validate(b, policy: policy, now: Self.now)
            Issue.record("accepted")
        } catch {
            guard case .invalidTimestamp(_, let records) = error else { Issue.record("wrong error \(error)"); return }
            #expect(records.map(\.batchIndex) == [1])
        }
        // LogAppendTime topics ignore producer timestamps.
        policy.logAppendTime = true
        _ = try RecordBatch.validate(b, policy: policy, now: Self.now)
    }

    @Test func pastTimestampIsRejectedWhenBounded() throws {
        var policy = BatchPolicy()
        #expect(throws: Never.self) { try RecordBatch.validate(Self.batch(base: 0), policy: policy, now: Self.now) }
        policy.timestampBeforeMaxMs = 60_000
        #expect(throws: RecordBatchError.self) { try RecordBatch.validate(Self.batch(base: 0), policy: policy, now: Self.now) }
        #expect(throws: Never.self) { try RecordBatch.validate(Self.batch(base: Self.now - 59_000), policy: policy, now: Self.now) }
    }

    @Test(arguments: [CompressionCodec.none, .snappy])
    func compactedTopicNeedsKeys(codec: CompressionCodec) throws {
        var policy = BatchPolicy()
        policy.requireKeys = true
        _ = try RecordBatch.validate(Self.batch(codec), policy: policy, now: Self.now)
        do {
            _ = try RecordBatch.validate(Self.batch(codec, keys: false), policy: policy, now: Self.now)
            Issue.record("accepted")
        } catch {
            guard case .invalidRecord(_, let records) = error else { Issue.record("wrong error \(error)"); return }
            #expect(records.map(\.batchIndex) == [0, 1, 2])
        }
    }

    @Test func zstdNeedsProduceV7() {
        var policy = BatchPolicy()
        policy.allowZstd = false
        #expect(throws: RecordBatchError.unsupportedCompression("zstd needs Produce v7 or later")) {
            try RecordBatch.validate(Self.batch(.zstd), policy: policy, now: Self.now)
        }
        #expect(throws: Never.self) { try RecordBatch.validate(Self.batch(.lz4), policy: policy, now: Self.now) }
    }

    @Test func unknownCodecIsUnsupported() {
        var b = Self.batch()
        b.setInteger(Int16(5), at: b.readerIndex + 21)
        Self.recrc(&b)
        #expect(throws: RecordBatchError.self) { try RecordBatch.validate(b, policy: BatchPolicy(), now: Self.now) }
        do {
            _ = try RecordBatch.validate(b, policy: BatchPolicy(), now: Self.now)
        } catch {
            guard case .unsupportedCompression = error else { Issue.record("wrong error \(error)"); return }
        }
    }

    /// Compressed bytes that do not decode, under a valid CRC: INVALID_RECORD, not a crash.
    @Test(arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func undecodableCompressedDataIsInvalid(codec: CompressionCodec) {
        var b = Self.batch(codec, records: 20)
        let mid = b.readerIndex + 61 + (b.readableBytes - 61) / 2
        for i in 0..<8 { b.setInteger(UInt8(0xA5 ^ i), at: mid + i) }
        Self.recrc(&b)
        do {
            _ = try RecordBatch.validate(b, policy: BatchPolicy(), now: Self.now)
            Issue.record("accepted")
        } catch {
            guard case .invalidRecord = error else { Issue.record("wrong error \(error)"); return }
        }
    }

    /// Records inside a compressed batch are walked like uncompressed ones.
    @Test func compressedRecordsThatDoNotMatchTheHeaderAreInvalid() {
        var b = Self.batch(.gzip, records: 3)
        // Claim four records (last offset delta 3, count 4) though three are inside.
        b.setInteger(Int32(3), at: b.readerIndex + 23)
        b.setInteger(Int32(4), at: b.readerIndex + 57)
        Self.recrc(&b)
        #expect(throws: Never.self) { try RecordBatch.validateSingle(b) }
        do {
            _ = try RecordBatch.validate(b, policy: BatchPolicy(), now: Self.now)
            Issue.record("accepted")
        } catch {
            guard case .invalidRecord = error else { Issue.record("wrong error \(error)"); return }
        }
    }

    @Test func decompressionBombIsInvalid() {
        var builder = RecordBatchBuilder(baseTimestamp: Self.now)
        builder.compression = .zstd
        builder.append(key: nil, value: ByteBuffer(repeating: 0, count: 8 << 20))
        let b = builder.build()
        #expect(b.readableBytes < 100_000)
        var policy = BatchPolicy()
        policy.maxDecompressedBytes = 1 << 20
        do {
            _ = try RecordBatch.validate(b, policy: policy, now: Self.now)
            Issue.record("accepted")
        } catch {
            guard case .invalidRecord(let why, _) = error else { Issue.record("wrong error \(error)"); return }
            #expect(why.contains("decompresses to more than"))
        }
    }

    /// Kafka sets a CreateTime batch's max timestamp to its largest record timestamp.
    @Test func wrongMaxTimestampIsCorrected() throws {
        var b = Self.batch(base: Self.now - 100)
        b.setInteger(Int64(1), at: b.readerIndex + 35)
        Self.recrc(&b)
        let v = try RecordBatch.validate(b, policy: BatchPolicy(), now: Self.now)
        #expect(v.header.maxTimestamp == Self.now - 100 + 20)
        #expect(try RecordBatch.validateSingle(v.bytes).maxTimestamp == Self.now - 80)
    }
}
