import Broker
import KafkaProtocol
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Nothing behind a produce's answer refers to its request frame: the batches are copied
/// into the engine before `handle` returns, so the server can reuse the frame for the next
/// request while the answer waits for the object store (`Answer.readsRequest`).
@Suite struct ProduceFrameTests {
    @Test func aPendingProduceHoldsNoReferenceToItsFrame() async throws {
        // The answer stays pending through the checks: no upload for 10 minutes.
        let broker = try await FetchFrameTests.brokerWithTopic("t", partitions: 1, uploadIntervalMs: 600_000)

        var batch = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
        for i in 0..<200 { batch.append(key: nil, value: ByteBuffer(repeating: UInt8(65 + i % 26), count: 500)) }
        var p = ProduceRequest.TopicProduceData.PartitionProduceData()
        p.index = 0
        p.records = batch.build()
        var td = ProduceRequest.TopicProduceData()
        td.name = "t"
        td.partitionData = [p]
        var r = ProduceRequest()
        r.acks = -1
        r.timeoutMs = 30_000
        r.topicData = [td]
        var frame = FetchFrameTests.frame(r, version: 9, correlationId: 2)
        let before = frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }

        guard case .respond(let answer) = await broker.handle(frame: frame) else {
            Issue.record("no answer to a produce with acks=-1")
            return
        }
        let answered = NIOLockedValueBox(false)
        answer.whenReady { _ in answered.withLockedValue { $0 = true } }
        #expect(!answered.withLockedValue { $0 }, "the produce was answered before its upload")
        #expect(!answer.readsRequest)
        // Writing to the frame copies it first if anything else still holds its storage.
        let after = frame.withUnsafeMutableReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(after == before, "something behind the pending answer still holds the request's bytes")
    }
}
