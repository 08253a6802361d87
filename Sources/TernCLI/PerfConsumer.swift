import KafkaClient
import KafkaProtocol
import NIOCore
import Synchronization

/// What the fetch loops of one run share.
struct ConsumePlan: Sendable {
    var topic: String
    var layout: TopicLayout
    /// Per request (Kafka's `fetch.max.bytes`) and per partition (`max.partition.fetch.bytes`).
    var fetchMaxBytes: Int
    var partitionMaxBytes: Int
    /// Concurrent fetches per leader, each for its own share of the leader's partitions.
    var fetchesPerLeader: Int = 4
    /// e2e: read each record's creation time from the first 8 bytes of its value. Stamps
    /// outside [notBefore, receive time] are not this run's and are ignored.
    var readStamps: Bool
    var notBefore: UInt64
    var connection: KafkaClientConfiguration
}

/// Set once to stop every loop of a run.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// Records and batch bytes received, and (e2e) produce-to-consume latencies.
final class ConsumeStats: Sendable {
    struct Window {
        var records = 0
        var bytes = 0
        var latency = LatencyHistogram()
    }

    private struct State {
        var interval = Window()
        var total = Window()
        var lastReceive: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Running totals, read by the loop that decides when to stop.
    private let records = Atomic<Int>(0)
    private let stamped = Atomic<Int>(0)

    func add(records n: Int, bytes: Int, latencies: [UInt64], at receive: UInt64) {
        state.withLock { s in
            s.interval.records += n
            s.interval.bytes += bytes
            for l in latencies { s.interval.latency.record(l) }
            if n > 0 && receive > s.lastReceive { s.lastReceive = receive }
        }
        records.add(n, ordering: .relaxed)
        stamped.add(latencies.count, ordering: .relaxed)
    }

    var receivedRecords: Int { records.load(ordering: .relaxed) }
    /// Records that carried this run's creation stamp (e2e).
    var stampedRecords: Int { stamped.load(ordering: .relaxed) }

    func takeInterval() -> Window {
        state.withLock { s in
            let w = s.interval
            s.interval = Window()
            s.total.records += w.records
            s.total.bytes += w.bytes
            s.total.latency.merge(w.latency)
            return w
        }
    }

    /// Everything so far, and when the last record arrived (0: none).
    func totals() -> (Window, UInt64) {
        _ = takeInterval()
        return state.withLock { s in (s.total, s.lastReceive) }
    }
}

/// Reads every partition of a topic from its leader as fast as the broker serves it:
/// `fetchesPerLeader` fetch loops per leader, each with its own connection and share of the
/// partitions, its next fetch sent as soon as the answer to the last arrives. Records are
/// counted from batch headers, never decoded, except that e2e reads each value's stamp.
final class PerfConsumer: Sendable {
    let plan: ConsumePlan
    let stats: ConsumeStats

    init(plan: ConsumePlan, stats: ConsumeStats) {
        self.plan = plan
        self.stats = stats
    }

    /// Reads from `positions` until `stop` is set.
    func run(from positions: [Int32: Int64], stop: StopFlag) async throws {
        let byLeader = Dictionary(grouping: plan.layout.partitions, by: { plan.layout.leaders[$0]! })
        var connections: [KafkaConnection] = []
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (node, partitions) in byLeader.sorted(by: { $0.key < $1.key }) {
                    guard let address = plan.layout.addresses[node] else {
                        throw CLIError("broker \(node), leader of a partition of '\(plan.topic)', is not in the cluster metadata")
                    }
                    let loops = max(1, min(plan.fetchesPerLeader, partitions.count))
                    for i in 0..<loops {
                        // A connection per loop: the broker answers a connection's requests in
                        // order, so a fetch long-polling at the end of its partitions would
                        // hold back the answers of the others behind it.
                        let connection = try await KafkaConnection.connect(to: address, configuration: plan.connection)
                        connections.append(connection)
                        let share = partitions.enumerated().filter { $0.offset % loops == i }.map(\.element)
                        let start = Dictionary(uniqueKeysWithValues: share.map { ($0, positions[$0] ?? 0) })
                        group.addTask { try await self.fetchLoop(connection, start, stop) }
                    }
                }
                // The first failure ends the run.
                while let _ = try await group.next() {}
            }
        } catch {
            stop.set()
            for c in connections { await c.close() }
            throw error
        }
        for c in connections { await c.close() }
    }

    private func fetchLoop(_ connection: KafkaConnection, _ start: [Int32: Int64], _ stop: StopFlag) async throws {
        let topic = plan.topic
        var positions = start
        let partitions = start.keys.sorted()
        let perPartition = Int32(clamping: plan.partitionMaxBytes)
        var latencies: [UInt64] = []
        while !stop.isSet && !Task.isCancelled {
            var t = FetchRequest.FetchTopic()
            t.topic = topic
            t.partitions = partitions.map {
                var p = FetchRequest.FetchTopic.FetchPartition()
                p.partition = $0
                p.fetchOffset = positions[$0]!
                p.partitionMaxBytes = perPartition
                return p
            }
            var request = FetchRequest()
            request.replicaId = -1
            request.maxWaitMs = 500
            request.minBytes = 1
            request.maxBytes = Int32(clamping: plan.fetchMaxBytes)
            request.isolationLevel = 0
            request.sessionId = 0
            request.sessionEpoch = -1
            request.topics = [t]
            // Stamped on the event loop as the response is decoded: the receive time of e2e.
            let (received, response) = try await connection.submit(request).map { (nowNanos(), $0) }.get()
            if stop.isSet { return }
            if response.errorCode != 0 {
                throw KafkaClientError(kafka: response.errorCode, "cannot fetch from topic '\(topic)'")
            }
            var records = 0
            var bytes = 0
            latencies.removeAll(keepingCapacity: true)
            for rt in response.responses where rt.topic == topic {
                for pd in rt.partitions {
                    guard let position = positions[pd.partitionIndex] else { continue }
                    if pd.errorCode != 0 {
                        throw KafkaClientError(kafka: pd.errorCode, "cannot fetch \(topic)-\(pd.partitionIndex) at offset \(position)")
                    }
                    guard let data = pd.records, data.readableBytes > 0 else { continue }
                    var next = position
                    for (h, batch) in RecordBatch.split(data) where h.lastOffset >= position {
                        next = max(next, h.lastOffset + 1)
                        if h.isControl { continue }
                        // A batch that starts before the position (compressed batches are
                        // served whole) counts only its records from the position on.
                        records += h.baseOffset >= position ? Int(h.recordCount) : Int(min(Int64(h.recordCount), h.lastOffset - position + 1))
                        bytes += h.totalSize
                        if plan.readStamps { try readStamps(batch, header: h, from: position, received: received, into: &latencies) }
                    }
                    positions[pd.partitionIndex] = next
                }
            }
            if records > 0 { stats.add(records: records, bytes: bytes, latencies: latencies, at: received) }
        }
    }

    private func readStamps(_ batch: ByteBuffer, header h: RecordBatchHeader, from position: Int64, received: UInt64,
                            into latencies: inout [UInt64]) throws {
        let notBefore = plan.notBefore
        do {
            try Record.forEach(inBatch: batch) { offsetDelta, _, _, value in
                guard h.baseOffset + Int64(offsetDelta) >= position, let value, value.readableBytes >= 8,
                      let sent = value.getInteger(at: value.readerIndex, as: UInt64.self),
                      sent >= notBefore, sent <= received else { return }
                latencies.append((received - sent) / 1000)
            }
        } catch {
            throw KafkaClientError(.protocolViolation, "the batch at offset \(h.baseOffset) of \(plan.topic) cannot be decoded: \(error)")
        }
    }
}

/// The offset of each of `partitions` of `topic` at `timestamp` (-2 earliest, -1 latest),
/// asked of their leaders; a partition's error ends the command.
func partitionOffsets(_ client: KafkaClient, topic: String, partitions: [Int32], timestamp: Int64) async throws -> [Int32: Int64] {
    let listed = try await client.listOffsets(partitions.map { TopicPartition(topic, $0) }, timestamp: timestamp)
    var positions: [Int32: Int64] = [:]
    for p in partitions {
        guard let o = listed[TopicPartition(topic, p)] else {
            throw CLIError("the broker's ListOffsets response does not mention \(topic)-\(p)")
        }
        guard o.errorCode == 0 else {
            throw KafkaClientError(kafka: o.errorCode, "cannot find the \(timestamp == -2 ? "earliest" : "latest") offset of \(topic)-\(p)")
        }
        positions[p] = o.offset
    }
    return positions
}
