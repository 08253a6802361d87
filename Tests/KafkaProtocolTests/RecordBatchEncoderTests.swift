import KafkaProtocol
import NIOCore
import Testing

@Suite struct RecordBatchEncoderTests {
    /// Appends `value` (and `key`) through the in-place API, as `tern perf` does.
    static func append(_ e: inout RecordBatchEncoder, key: [UInt8]?, value: [UInt8]?, timestampDelta: Int64 = 0) {
        e.append(timestampDelta: timestampDelta,
                 keyLength: key?.count, key: { dst in key!.withUnsafeBytes { dst.copyMemory(from: $0) } },
                 valueLength: value?.count, value: { dst in value!.withUnsafeBytes { dst.copyMemory(from: $0) } })
    }

    /// A batch that real clients produced, rebuilt field by field, gives back the same bytes:
    /// the encoder writes records exactly as kcat (librdkafka), confluent-kafka, kafka-python
    /// and aiokafka do.
    @Test(arguments: [("kcat-fx", Fixture.kcatProduceV7), ("confluent-fx", Fixture.confluentProduceV10),
                      ("kafka-python-fx", Fixture.kafkaPythonProduceV9), ("aiokafka-fx", Fixture.aiokafkaProduceV7)])
    func rebuildsRealClientsBatchesByteForByte(_ client: String, _ fixture: String) throws {
        let (_, request) = try ClientFixtureTests.decode(fixture, as: ProduceRequest.self, clientId: client)
        let original = try #require(request.topicData.first?.partitionData.first?.records)
        let h = try #require(RecordBatchHeader(peeking: original))

        var e = RecordBatchEncoder(baseTimestamp: h.baseTimestamp, compression: CompressionCodec(rawValue: h.compression)!)
        e.baseOffset = h.baseOffset
        e.producerId = h.producerId
        e.producerEpoch = h.producerEpoch
        e.baseSequence = h.baseSequence
        e.attributes = h.attributes
        for r in try Record.decodeAll(batch: original) {
            e.append(key: r.key, value: r.value, timestampDelta: r.timestampDelta, headers: r.headers)
        }
        var rebuilt = e.finish()
        rebuilt.setInteger(h.partitionLeaderEpoch, at: rebuilt.readerIndex + 12)
        #expect(ClientFixtureTests.hex(rebuilt) == ClientFixtureTests.hex(original), "\(client)")
    }

    @Test func inPlaceAppendsMakeAValidBatch() throws {
        var e = RecordBatchEncoder(baseTimestamp: 1_700_000_000_000, capacity: 16)
        let big = [UInt8](repeating: 0x41, count: 300)  // a two-byte varint length
        Self.append(&e, key: Array("k0".utf8), value: Array("v0".utf8), timestampDelta: 0)
        Self.append(&e, key: nil, value: big, timestampDelta: 7)
        Self.append(&e, key: [], value: nil, timestampDelta: 3)
        #expect(e.count == 3)
        let batch = e.finish()
        let h = try RecordBatch.validateSingle(batch)
        #expect(h.recordCount == 3)
        #expect(h.lastOffsetDelta == 2)
        #expect(h.baseTimestamp == 1_700_000_000_000)
        #expect(h.maxTimestamp == 1_700_000_000_007)
        #expect(h.producerId == -1 && h.baseSequence == -1 && h.partitionLeaderEpoch == -1)
        let rs = try Record.decodeAll(batch: batch)
        #expect(rs.map(\.offsetDelta) == [0, 1, 2])
        #expect(rs.map(\.timestampDelta) == [0, 7, 3])
        #expect(rs[0].key == ByteBuffer(string: "k0") && rs[0].value == ByteBuffer(string: "v0"))
        #expect(rs[1].key == nil && rs[1].value == ByteBuffer(bytes: big))
        #expect(rs[2].key == ByteBuffer() && rs[2].value == nil)
    }

    /// The in-place append (one pointer through the whole record) writes the same bytes as the
    /// append of ByteBuffer fields, across varint widths: offset deltas past 63 and 8191,
    /// negative timestamp deltas, lengths of one to three varint bytes, null and empty fields.
    @Test func inPlaceAppendsWriteWhatFieldAppendsWrite() {
        var inPlace = RecordBatchEncoder(baseTimestamp: 5, capacity: 8)
        var fields = RecordBatchEncoder(baseTimestamp: 5, capacity: 8)
        let lengths: [Int?] = [nil, 0, 1, 63, 64, 8191, 8192, 20_000]
        for i in 0..<9000 {
            let key = lengths[i % lengths.count].map { [UInt8](repeating: UInt8(i % 251), count: min($0, 100)) }
            let value = lengths[(i / 3) % lengths.count].map { [UInt8](repeating: UInt8(i % 241), count: i < 60 ? $0 : min($0, 64)) }
            let delta = Int64(i % 7 == 0 ? -i : i * 1000)
            Self.append(&inPlace, key: key, value: value, timestampDelta: delta)
            fields.append(key: key.map { ByteBuffer(bytes: $0) }, value: value.map { ByteBuffer(bytes: $0) }, timestampDelta: delta)
        }
        #expect(inPlace.finish() == fields.finish())
    }

    @Test func recordSizeIsWhatAnAppendAdds() {
        var e = RecordBatchEncoder(baseTimestamp: 0)
        #expect(e.sizeInBytes == RecordBatchHeader.size)
        for (key, value, delta) in [(nil, 0, Int64(0)), (3, 100, 1), (nil, 63, 64), (10, 64, 1000), (0, 20_000, 5), (200, 1, 0)] as [(Int?, Int, Int64)] {
            let expected = RecordBatchEncoder.recordSize(timestampDelta: delta, offsetDelta: e.count, keyLength: key, valueLength: value)
            let before = e.sizeInBytes
            Self.append(&e, key: key.map { [UInt8](repeating: 1, count: $0) }, value: [UInt8](repeating: 2, count: value), timestampDelta: delta)
            #expect(e.sizeInBytes - before == expected, "key \(String(describing: key)) value \(value)")
        }
    }

    @Test(arguments: CompressionCodec.allCases)
    func compressedBatchesHoldTheRecords(_ codec: CompressionCodec) throws {
        var e = RecordBatchEncoder(baseTimestamp: 1000, compression: codec)
        for i in 0..<50 { Self.append(&e, key: Array("key-\(i)".utf8), value: Array("value \(i) ".utf8) + [UInt8](repeating: 65, count: 100)) }
        let batch = e.finish()
        let h = try #require(RecordBatchHeader(peeking: batch))
        #expect(h.compression == codec.rawValue)
        let validated = try RecordBatch.validate(batch, policy: BatchPolicy(), now: 1000)
        #expect(validated.header.recordCount == 50)
        let rs = try Record.decodeAll(batch: batch)
        #expect(rs.count == 50)
        #expect(rs[49].key == ByteBuffer(string: "key-49"))
        if codec != .none { #expect(batch.readableBytes < 50 * 100) }
    }

    @Test func finishLeavesAnEmptyEncoderForTheNextBatch() throws {
        var e = RecordBatchEncoder(baseTimestamp: 5)
        Self.append(&e, key: nil, value: [1, 2, 3], timestampDelta: 9)
        let first = e.finish()
        #expect(e.isEmpty && e.sizeInBytes == RecordBatchHeader.size)
        Self.append(&e, key: nil, value: [4])
        let second = e.finish()
        // The first batch is not disturbed by the second.
        #expect(try RecordBatch.validateSingle(first).maxTimestamp == 14)
        let h = try RecordBatch.validateSingle(second)
        #expect(h.recordCount == 1 && h.maxTimestamp == 5)
        #expect(try Record.decodeAll(batch: first).map(\.value) == [ByteBuffer(bytes: [1, 2, 3])])
        #expect(try Record.decodeAll(batch: second).map(\.value) == [ByteBuffer(bytes: [4])])
    }

    @Test func forEachSeesEveryRecordsKeyAndValue() throws {
        var e = RecordBatchEncoder(baseTimestamp: 0, compression: .lz4)
        for i in 0..<20 { Self.append(&e, key: i % 2 == 0 ? [UInt8(i)] : nil, value: [UInt8](repeating: UInt8(i), count: i), timestampDelta: Int64(i)) }
        var seen: [(Int32, Int64, ByteBuffer?, ByteBuffer?)] = []
        try Record.forEach(inBatch: e.finish()) { seen.append(($0, $1, $2, $3)) }
        #expect(seen.count == 20)
        for (i, s) in seen.enumerated() {
            #expect(s.0 == Int32(i) && s.1 == Int64(i))
            #expect(s.2 == (i % 2 == 0 ? ByteBuffer(bytes: [UInt8(i)]) : nil))
            #expect(s.3 == ByteBuffer(bytes: [UInt8](repeating: UInt8(i), count: i)))
        }
    }
}
