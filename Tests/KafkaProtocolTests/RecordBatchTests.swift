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

    /// Batches over parts cut anywhere (within headers too) are the batches of the whole:
    /// same headers, at the same places, and a partial trailing batch is left out.
    @Test func splittingPartsFindsTheBatchesOfTheWhole() {
        var whole = ByteBuffer()
        for (i, n) in [3, 1, 7, 2].enumerated() {
            var b = batch(records: n)
            RecordBatch.stamp(&b, baseOffset: Int64(i * 10), leaderEpoch: 0)
            whole.writeImmutableBuffer(b)
        }
        let full = whole.readableBytes
        whole.writeBytes([0, 0, 0, 0, 0, 0, 0, 40, 0, 0])  // the start of a batch that did not fit
        var expected: [(RecordBatchHeader, Range<Int>)] = []
        var at = 0
        for (h, b) in RecordBatch.split(whole) {
            expected.append((h, at..<(at + b.readableBytes)))
            at += b.readableBytes
        }
        #expect(expected.count == 4 && at == full)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var cuts = (0..<Int.random(in: 0...6, using: &rng)).map { _ in Int.random(in: 0...whole.readableBytes, using: &rng) }
            cuts = ([0] + cuts + [whole.readableBytes]).sorted()
            let parts = zip(cuts, cuts.dropFirst()).map { whole.getSlice(at: $0, length: $1 - $0)! }
            let got = RecordBatch.split(parts: parts)
            #expect(got.map(\.range) == expected.map(\.1), "cuts \(cuts)")
            #expect(got.map(\.header.baseOffset) == expected.map(\.0.baseOffset))
            #expect(got.map(\.header.lastOffsetDelta) == expected.map(\.0.lastOffsetDelta))
        }
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
