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
