import Benchmark
import Broker
import Foundation
import KafkaProtocol
import Logging
import NIOCore

// Allocations on the broker's hot paths, counted by the malloc interposer and checked against
// `Thresholds/` by `tools/bench-allocs.sh` (run by the test suite): a change that adds a
// per-record or per-batch allocation fails CI. Each iteration sends one request frame through
// `Broker.handle` (dispatch, handler, storage engine, response encoding; no socket) and waits
// for its answer (a produce with acks=0 has none).

/// Records per produced batch: a per-record allocation would multiply the count by this.
let recordsPerBatch = 100

let benchmarks: @Sendable () -> Void = {
    func allocations(tolerance: BenchmarkThresholds) -> Benchmark.Configuration {
        .init(metrics: [.mallocCountTotal], warmupIterations: 200, scalingFactor: .one,
              maxDuration: .seconds(10), maxIterations: 2000, thresholds: [.mallocCountTotal: tolerance])
    }

    // acks=0 with flushes held off: decode, validation, offset assignment and the WAL buffer,
    // the same count every time. (With acks=all an iteration would also hold zero, one or two
    // flushes' commits, which run beside the next request: too noisy for a threshold.)
    Benchmark("produce-100-records-acks0", configuration: allocations(tolerance: .init(absolute: [.p90: 2]))) { (benchmark: Benchmark, fixture: HotPathFixture) async in
        for _ in benchmark.scaledIterations {
            guard case .noResponse = await fixture.broker.handle(frame: fixture.produceFrame) else { fatalError("acks=0 answered") }
        }
    } setup: {
        try await HotPathFixture.make(acks: 0, flushIntervalMs: 600_000)
    }

    // Deterministic: any new allocation per fetch shows.
    Benchmark("fetch-100-records-from-log-cache", configuration: allocations(tolerance: .init(absolute: [.p90: 2]))) { (benchmark: Benchmark, fixture: HotPathFixture) async in
        for _ in benchmark.scaledIterations {
            await fixture.answer(fixture.fetchFrame)
        }
    } setup: {
        let fixture = try await HotPathFixture.make(acks: -1, flushIntervalMs: 1)
        await fixture.answer(fixture.produceFrame)
        return fixture
    }
}

struct HotPathFixture: Sendable {
    let broker: Broker
    let produceFrame: ByteBuffer
    let fetchFrame: ByteBuffer

    static let topic = "hot"

    static func make(acks: Int16, flushIntervalMs: Int) async throws -> HotPathFixture {
        var log = Logger(label: "tern-bench")
        log.logLevel = .critical
        var config = BrokerConfig()
        config.storage.uploadIntervalMs = flushIntervalMs
        config.storage.uploadBytes = 1 << 30
        config.storage.maxUnflushedBytes = 1 << 30
        let path = NSTemporaryDirectory() + "tern-bench-\(UUID().uuidString).sqlite"
        let broker = try await Broker.inProcess(config: config, metadataPath: path, logger: log)

        var create = CreateTopicsRequest()
        var t = CreateTopicsRequest.CreatableTopic()
        t.name = topic
        t.numPartitions = 1
        t.replicationFactor = 1
        create.topics = [t]
        let fixture = HotPathFixture(broker: broker, produceFrame: produce(acks: acks), fetchFrame: fetch())
        await fixture.answer(frame(create, version: 7))
        return fixture
    }

    /// Sends one frame and waits for its answer.
    func answer(_ frame: ByteBuffer) async {
        guard case .respond(let answer) = await broker.handle(frame: frame) else { fatalError("no answer") }
        blackHole(await answer.frame)
    }

    static func produce(acks: Int16) -> ByteBuffer {
        var batch = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
        let value = ByteBuffer(repeating: 0x61, count: 100)
        for i in 0..<recordsPerBatch { batch.append(key: nil, value: value, timestampDelta: Int64(i)) }
        return frame(ProduceRequest(topic: topic, partition: 0, records: batch.build(), acks: acks), version: 9)
    }

    static func fetch() -> ByteBuffer {
        var p = FetchRequest.FetchTopic.FetchPartition()
        p.partition = 0
        p.fetchOffset = 0
        p.partitionMaxBytes = 1 << 20
        var ft = FetchRequest.FetchTopic()
        ft.topic = topic
        ft.partitions = [p]
        var r = FetchRequest()
        r.maxWaitMs = 0
        r.minBytes = 1
        r.topics = [ft]
        return frame(r, version: 12)
    }

    static func frame<M: KafkaMessage>(_ message: M, version: Int16) -> ByteBuffer {
        var b = ByteBuffer()
        RequestHeader(apiKey: M.apiKey, apiVersion: version, correlationId: 1, clientId: "bench")
            .encode(into: &b, flexible: M.isFlexible(version))
        message.encode(into: &b, version: version)
        return b
    }
}
