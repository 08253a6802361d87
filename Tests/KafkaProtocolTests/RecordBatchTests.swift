import KafkaProtocol
import NIOCore
import Testing

@Suite struct RecordBatchTests {
    func batch(records: Int = 3) -> ByteBuffer {
        var b = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
        for i in 0..<records {
            b.append(key: ByteBuffer(string: "k\(i)"), value: ByteBuffer(string: "value \(i)"), timestampDelta: Int64(i * 10),
                     headers: [("h", ByteBuffer(string: "x"))])
        }
        return b.build()
    }

    @Test func validBatchPasses() throws {
        let h = try RecordBatch.validateSingle(batch())
        #expect(h.recordCount == 3)
        #expect(h.lastOffsetDelta == 2)
        #expect(h.maxTimestamp == 1_700_000_000_020)
    }

    @Test func flippedPayloadByteIsCorrupt() {
        var b = batch()
        let i = b.readerIndex + b.readableBytes - 3
        b.setInteger(b.getInteger(at: i, as: UInt8.self)! ^ 0xFF, at: i)
        #expect(throws: RecordBatchError.corrupt) { try RecordBatch.validateSingle(b) }
    }

    @Test func oldMagicIsInvalid() {
        var b = batch()
        b.setInteger(Int8(1), at: b.readerIndex + 16)
        #expect(throws: RecordBatchError.self) { try RecordBatch.validateSingle(b) }
    }

    @Test func twoBatchesAreInvalid() {
        var b = batch()
        var second = batch()
        b.writeBuffer(&second)
        do {
            _ = try RecordBatch.validateSingle(b)
            Issue.record("two batches accepted")
        } catch {
            guard case .invalidRecord = error else { Issue.record("wrong error \(error)"); return }
        }
    }

    @Test func countMismatchIsInvalid() {
        var b = batch()
        b.setInteger(Int32(7), at: b.readerIndex + 57)
        #expect(throws: RecordBatchError.self) { try RecordBatch.validateSingle(b) }
    }

    /// Rewrites the CRC so that only the record checks can catch the damage.
    func recrc(_ b: inout ByteBuffer) {
        let covered = b.getSlice(at: b.readerIndex + 21, length: b.readableBytes - 21)!
        b.setInteger(CRC32C.checksum(covered), at: b.readerIndex + 17)
    }

    @Test func recordsThatDoNotMatchTheHeaderAreInvalid() throws {
        // Claims three records but holds two.
        var short = batch(records: 2)
        short.setInteger(Int32(2), at: short.readerIndex + 23)
        short.setInteger(Int32(3), at: short.readerIndex + 57)
        recrc(&short)
        #expect(throws: RecordBatchError.self) { try RecordBatch.validateSingle(short) }
        // Garbage where the records should be.
        var garbage = batch(records: 1)
        for i in 61..<garbage.readableBytes { garbage.setInteger(UInt8(0xFF), at: garbage.readerIndex + i) }
        recrc(&garbage)
        #expect(throws: RecordBatchError.self) { try RecordBatch.validateSingle(garbage) }
        // Offset deltas out of order.
        var b = RecordBatchBuilder(baseTimestamp: 0)
        b.append(key: nil, value: ByteBuffer(string: "a"))
        b.append(key: nil, value: ByteBuffer(string: "b"))
        b.records[1].offsetDelta = 5
        #expect(throws: RecordBatchError.self) { try RecordBatch.validateSingle(b.build()) }
    }

    @Test func stampingKeepsTheCRCValid() throws {
        var b = batch()
        RecordBatch.stamp(&b, baseOffset: 1234, leaderEpoch: 9)
        let h = try RecordBatch.validateSingle(b)
        #expect(h.baseOffset == 1234)
        #expect(h.partitionLeaderEpoch == 9)
    }

    @Test func recordsDecode() throws {
        let records = try Record.decodeAll(batch: batch())
        #expect(records.count == 3)
        #expect(records[2].key == ByteBuffer(string: "k2"))
        #expect(records[2].value == ByteBuffer(string: "value 2"))
        #expect(records[2].timestampDelta == 20)
        #expect(records[1].headers.first?.0 == "h")
    }
}
