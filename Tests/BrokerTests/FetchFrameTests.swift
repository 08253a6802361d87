import Broker
import Foundation
import KafkaProtocol
import Logging
import NIOCore
import Testing

/// A Fetch answer's record sets go to the socket as the bytes the broker holds: a part of the
/// frame each, not copied into one buffer (`RecordsSplice`), and the parts make the response.
@Suite struct FetchFrameTests {
    static func frame<M: KafkaMessage>(_ message: M, version: Int16, correlationId: Int32) -> ByteBuffer {
        var b = ByteBuffer()
        RequestHeader(apiKey: M.apiKey, apiVersion: version, correlationId: correlationId, clientId: "test")
            .encode(into: &b, flexible: M.isFlexible(version))
        message.encode(into: &b, version: version)
        return b
    }

    static func answer(_ broker: Broker, _ frame: ByteBuffer) async -> ResponseFrame {
        guard case .respond(let answer) = await broker.handle(frame: frame) else { fatalError("no answer") }
        return await withCheckedContinuation { c in answer.whenReady { c.resume(returning: $0) } }
    }

    /// An in-process broker (in-memory object store) with topic `name` created.
    static func brokerWithTopic(_ name: String, partitions: Int32, uploadIntervalMs: Int, listen: HostPort? = nil) async throws -> Broker {
        var log = Logger(label: "test")
        log.logLevel = .critical
        var config = BrokerConfig()
        config.storage.uploadIntervalMs = uploadIntervalMs
        if let listen { config.listen = listen }
        let broker = try await Broker.inProcess(config: config, metadataPath: NSTemporaryDirectory() + "tern-frame-\(UUID().uuidString).sqlite",
                                                logger: log)
        var create = CreateTopicsRequest()
        var t = CreateTopicsRequest.CreatableTopic()
        t.name = name
        t.numPartitions = partitions
        t.replicationFactor = 1
        create.topics = [t]
        _ = await answer(broker, frame(create, version: 7, correlationId: 1))
        return broker
    }

    @Test(arguments: [Int16(4), 12])
    func largeRecordSetsArePartsOfTheFrame(version: Int16) async throws {
        let broker = try await Self.brokerWithTopic("t", partitions: 2, uploadIntervalMs: 1)

        // Partition 0 gets a batch larger than RecordsSplice.minimumBytes, partition 1 a small one.
        var batches: [ByteBuffer] = []
        for (partition, count) in [(0, 200), (1, 3)] {
            var batch = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
            for i in 0..<count { batch.append(key: nil, value: ByteBuffer(repeating: UInt8(65 + i % 26), count: 500)) }
            batches.append(batch.build())
            let r = ProduceRequest(topic: "t", partition: Int32(partition), records: batches.last!, acks: 1)
            _ = await Self.answer(broker, Self.frame(r, version: 9, correlationId: 2))
        }
        #expect(batches[0].readableBytes >= RecordsSplice.minimumBytes && batches[1].readableBytes < RecordsSplice.minimumBytes)

        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.minBytes = 1
        fetch.maxBytes = 50 << 20
        var ft = FetchRequest.FetchTopic()
        ft.topic = "t"
        ft.partitions = (0..<2).map { i in
            var p = FetchRequest.FetchTopic.FetchPartition()
            p.partition = Int32(i)
            p.partitionMaxBytes = 1 << 20
            return p
        }
        fetch.topics = [ft]
        let answer = await Self.answer(broker, Self.frame(fetch, version: version, correlationId: 3))
        guard case .parts(let parts) = answer else {
            Issue.record("a fetch of \(batches[0].readableBytes) bytes of records answered in one buffer")
            return
        }
        var frame = answer.joined
        #expect(frame.readInteger(as: Int32.self) == Int32(frame.readableBytes))
        #expect(frame.readInteger(as: Int32.self) == 3)  // correlation id
        if version >= 12 { _ = try frame.readUnsignedVarint() }  // the response header's tagged fields
        let response = try FetchResponse(from: &frame, version: version)
        #expect(frame.readableBytes == 0)
        let records = response.responses.first?.partitions.compactMap(\.records) ?? []
        // The batches as sent, but for the partition leader epoch the broker stamps (bytes 12..<16).
        #expect(records.map { $0.getSlice(at: 16, length: $0.readableBytes - 16) } == batches.map { $0.getSlice(at: 16, length: $0.readableBytes - 16) })
        #expect(records.map(\.readableBytes) == batches.map(\.readableBytes))
        // The large record set is a part of its own; the small one was copied.
        #expect(records.count == 2 && parts.contains { $0 == records[0] } && !parts.contains { $0 == records[1] })
    }
}
