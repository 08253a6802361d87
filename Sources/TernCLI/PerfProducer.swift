import KafkaClient
import KafkaProtocol
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Monotonic nanoseconds on NIO's clock (CLOCK_MONOTONIC), so that NIO timers can be set
/// to them. Every latency `tern perf` reports is a difference of two of these.
@inline(__always) func nowNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// Milliseconds since the epoch, for record timestamps.
func wallMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// How records get keys: none (sticky partitioning, as Kafka's default partitioner does for
/// unkeyed records), a random key of `keyCount` per record, or the keys in turn.
enum KeyMode: String, CaseIterable, Sendable {
    case none, random, sequential
}

/// What every producer of one run shares: the topic's layout and the load's shape.
struct ProducePlan: Sendable {
    var topic: String
    var layout: TopicLayout
    var acks: Int16
    var codec: CompressionCodec
    var recordSize: Int
    /// Uncompressed bytes at which a partition's batch is closed (Kafka's `batch.size`).
    var batchBytes: Int
    var lingerNanos: UInt64
    var maxInFlight: Int
    /// A request takes at most one batch per partition, and stops adding batches past this
    /// size (Kafka's `max.request.size`).
    var maxRequestBytes: Int
    /// Closed batches not yet sent, above which the generator waits (Kafka's `buffer.memory`).
    var bufferBytes: Int = 32 << 20
    var keys: KeyMode
    var keyCount: Int
    /// e2e: the first 8 bytes of every value are the record's creation time (`nowNanos()`,
    /// big-endian), which the consumer subtracts from its receive time.
    var stampValues: Bool
    var connection: KafkaClientConfiguration
}

/// A topic's partitions, their leaders, and the leaders' addresses.
struct TopicLayout: Sendable {
    /// Partition ids, ascending.
    var partitions: [Int32]
    /// Leader node of each partition, by partition id.
    var leaders: [Int32: Int32]
    var addresses: [Int32: BrokerAddress]
    var partitionCount: Int { partitions.count }
}

/// Counts of acked records, their bytes and latencies, and failures by Kafka error name;
/// shared by the producers and the event loops that complete their requests.
final class ProduceStats: Sendable {
    struct Window {
        var records = 0
        var bytes = 0
        var latency = LatencyHistogram()
    }

    struct State {
        var interval = Window()
        var total = Window()
        var errors: [String: Int] = [:]
        var lastAck: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Records of one batch acked at `ack`: latencies from each record's creation.
    func acked(created: [UInt64], bytes: Int, at ack: UInt64) {
        state.withLock { s in
            s.interval.records += created.count
            s.interval.bytes += bytes
            for c in created { s.interval.latency.record(ack >= c ? (ack - c) / 1000 : 0) }
            if ack > s.lastAck { s.lastAck = ack }
        }
    }

    func failed(_ errorName: String, records: Int) {
        state.withLock { s in s.errors[errorName, default: 0] += records }
    }

    /// The window since the last call; it is folded into the total.
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

    /// Everything so far (the current window folded in), the errors and the last ack time.
    func totals() -> (Window, [String: Int], UInt64) {
        _ = takeInterval()
        return state.withLock { s in (s.total, s.errors, s.lastAck) }
    }

    var ackedRecords: Int { state.withLock { $0.total.records + $0.interval.records } }
    var errorCount: Int { state.withLock { $0.errors.values.reduce(0, +) } }
}

/// In-flight requests of one producer: per-leader counters that the generator reads without
/// a lock, and the generator's wake-up when it waits for a slot, a token or a linger timer.
final class SendWindow: Sendable {
    /// Requests completed per leader slot; the generator compares them with what it sent.
    private let completedPerLeader: [Completions]
    private struct State {
        var completions = 0
        var failure: (any Error)?
        var waiter: CheckedContinuation<Void, Never>?
        var waiterToken = 0
    }
    private let state = Mutex(State())

    final class Completions: Sendable {
        let count = Atomic<Int>(0)
    }

    init(leaders: Int) {
        completedPerLeader = (0..<leaders).map { _ in Completions() }
    }

    func completed(leader: Int) -> Int { completedPerLeader[leader].count.load(ordering: .acquiring) }

    var completions: Int { state.withLock { $0.completions } }
    var failure: (any Error)? { state.withLock { $0.failure } }

    /// Called once per finished request (from an event loop); a failure ends the run.
    func finish(leader: Int, failure: (any Error)?) {
        completedPerLeader[leader].count.add(1, ordering: .releasing)
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.completions += 1
            if let failure, s.failure == nil { s.failure = failure }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Returns when a request completes after the `since`-th completion, or at `deadline`
    /// (NIO uptime nanoseconds), whichever first; at once if that already happened.
    func wait(since: Int, until deadline: UInt64?, on loop: any EventLoop) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let token = state.withLock { s -> Int? in
                if s.completions != since || s.failure != nil { return nil }
                s.waiterToken += 1
                s.waiter = c
                return s.waiterToken
            }
            guard let token else {
                c.resume()
                return
            }
            if let deadline {
                loop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) { self.wake(token) }
            }
        }
    }

    private func wake(_ token: Int) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard s.waiterToken == token else { return nil }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }
}

/// A batch closed for sending, with each record's creation time.
struct ClosedBatch: Sendable {
    var partition: Int32
    var bytes: ByteBuffer
    var created: [UInt64]
    /// Key and value bytes of its records.
    var payloadBytes: Int
}

/// One producer: a generator that creates records (at a token-bucket rate, if given) into
/// per-partition batches, and sends them to the partitions' leaders over its own connections
/// with at most `maxInFlight` requests per connection. Kafka's producer, without retries:
/// a partition error is counted by name, a connection failure ends the run.
///
/// The generator runs in one task and owns its batches; requests complete on NIO's event
/// loops, which record latencies straight into `ProduceStats` (no hop to a Swift concurrency
/// thread that may be busy generating) and free the slot in `SendWindow`.
final class PerfProducer {
    let plan: ProducePlan
    let stats: ProduceStats
    /// Records to create (nil: until `deadline`).
    let records: Int?
    let deadline: UInt64?
    /// Records per second (nil: as fast as the window allows).
    let rate: Double?

    private let loop: any EventLoop = MultiThreadedEventLoopGroup.singleton.any()
    private let window: SendWindow
    /// The partitions' leaders, ascending: a leader's slot (in `Batches` and `SendWindow`) is
    /// its index here, and so is its connection's in `connections`.
    private let leaderNodes: [Int32]
    private var connections: [KafkaConnection] = []
    private var batches: Batches

    init(plan: ProducePlan, stats: ProduceStats, records: Int?, deadline: UInt64?, rate: Double?, seed: UInt64) {
        self.plan = plan
        self.stats = stats
        self.records = records
        self.deadline = deadline
        self.rate = rate
        let nodes = Array(Set(plan.layout.partitions.map { plan.layout.leaders[$0]! })).sorted()
        leaderNodes = nodes
        window = SendWindow(leaders: nodes.count)
        batches = Batches(plan: plan, leaders: nodes, seed: seed)
    }

    /// Runs the load to its end: every record created has been acked or failed.
    func run() async throws {
        do {
            for node in leaderNodes {
                guard let address = plan.layout.addresses[node] else {
                    throw CLIError("broker \(node), leader of a partition of '\(plan.topic)', is not in the cluster metadata")
                }
                connections.append(try await KafkaConnection.connect(to: address, configuration: plan.connection))
            }
            try await generate()
            try await drainAll()
        } catch {
            for c in connections { await c.close() }
            throw error
        }
        for c in connections { await c.close() }
    }

    private func generate() async throws {
        let burst = rate.map { max(1, $0 / 200) } ?? 0  // 5 ms of tokens
        // Out of tokens, it sleeps until 1 ms of them are there, not until the next one: at
        // 230k records/s a wake-up per record or two made the generator's thread switches a
        // third of its CPU, taken from the broker on a shared machine.
        let refill = rate.map { min(burst, max(1, $0 / 1000)) } ?? 0
        var tokens = burst == 0 ? 0 : 1.0
        var lastRefill = nowNanos()
        var made = 0
        while true {
            if let records, made >= records { return }
            let now = nowNanos()
            if let deadline, now >= deadline { return }
            if let rate {
                tokens = min(burst, tokens + Double(now - lastRefill) * rate / 1e9)
                lastRefill = now
                if tokens < 1 {
                    let since = window.completions
                    if let failure = window.failure { throw failure }
                    sendReady(now: now)
                    var wake = now + UInt64(((refill - tokens) / rate * 1e9).rounded(.up))
                    if let deadline { wake = min(wake, deadline) }
                    wake = min(wake, batches.nextLingerDue(after: now, window: window))
                    if wake > now { await window.wait(since: since, until: wake, on: loop) }
                    continue
                }
                tokens -= 1
            }
            batches.append(now: now)
            made += 1
            sendReady(now: now)
            if batches.queuedBytes >= plan.bufferBytes {
                // Kafka's send() blocks when buffer.memory is full; so does the generator.
                while batches.queuedBytes >= plan.bufferBytes {
                    let since = window.completions
                    if let failure = window.failure { throw failure }
                    sendReady(now: nowNanos())
                    guard batches.queuedBytes >= plan.bufferBytes else { break }
                    await window.wait(since: since, until: nil, on: loop)
                }
            } else if made & 1023 == 0 {
                // Let the reporter and other producers' tasks run; stop if another failed.
                if let failure = window.failure { throw failure }
                try Task.checkCancellation()
                await Task.yield()
            }
        }
    }

    /// Sends everything still open or queued, and waits for every answer.
    private func drainAll() async throws {
        batches.lingerAll()
        while true {
            let since = window.completions
            if let failure = window.failure { throw failure }
            sendReady(now: .max)
            if !batches.pending(window: window) { return }
            await window.wait(since: since, until: nil, on: loop)
        }
    }

    /// Sends to each leader that has a full batch or a lingered one, while it has free slots.
    @inline(__always) private func sendReady(now: UInt64) {
        guard batches.anySendable(now: now, window: window) else { return }
        for l in 0..<leaderNodes.count {
            while batches.sendable(l, now: now, window: window) { send(leader: l) }
        }
    }

    /// One produce request to leader `l`: the first batch of each of its partitions (the open
    /// one if none is closed), from where the last request stopped, up to `maxRequestBytes`.
    private func send(leader l: Int) {
        let (done, size) = batches.take(leader: l)
        guard !done.isEmpty else { return }

        var topicData = ProduceRequest.TopicProduceData()
        topicData.name = plan.topic
        topicData.partitionData = done.map { b in
            var d = ProduceRequest.TopicProduceData.PartitionProduceData()
            d.index = b.partition
            d.records = b.bytes
            return d
        }
        var request = ProduceRequest()
        request.acks = plan.acks
        request.timeoutMs = 30_000
        request.topicData = [topicData]
        let capacity = size + 64 + plan.topic.utf8.count + done.count * 16
        let stats = self.stats
        let window = self.window
        let topic = plan.topic
        let connection = connections[l]
        if plan.acks == 0 {
            connection.submitWithoutResponse(request, frameCapacity: capacity).whenComplete { result in
                let ackedAt = nowNanos()
                switch result {
                case .success:
                    for b in done { stats.acked(created: b.created, bytes: b.payloadBytes, at: ackedAt) }
                    window.finish(leader: l, failure: nil)
                case .failure(let error):
                    window.finish(leader: l, failure: error)
                }
            }
            return
        }
        connection.submit(request, frameCapacity: capacity).whenComplete { result in
            let ackedAt = nowNanos()
            switch result {
            case .success(let response):
                var codes: [Int32: Int16] = [:]
                for t in response.responses where t.name == topic {
                    for r in t.partitionResponses { codes[r.index] = r.errorCode }
                }
                var failure: (any Error)?
                for b in done {
                    switch codes[b.partition] {
                    case 0?: stats.acked(created: b.created, bytes: b.payloadBytes, at: ackedAt)
                    case let code?: stats.failed(KafkaErrorCodes.name(code), records: b.created.count)
                    case nil: failure = CLIError("the broker's Produce response does not mention \(topic)-\(b.partition)")
                    }
                }
                window.finish(leader: l, failure: failure)
            case .failure(let error):
                window.finish(leader: l, failure: error)
            }
        }
    }
}

/// A producer's batches, open and closed, and what picks each record's partition and value.
/// In a struct that the generator reaches through one access per record: each access to a
/// class's stored property is checked for exclusivity at run time, and the dozen per record
/// they took were about a tenth of the generator's CPU at 1 GB/s.
private struct Batches {
    let plan: ProducePlan
    /// Leader slot of each partition, and the partitions of each leader slot, by position in
    /// `plan.layout.partitions`.
    let slotOf: [Int]
    let partitionsOf: [[Int]]
    /// Requests sent per leader slot, and where the next one starts among its partitions.
    var sent: [Int]
    var drainStart: [Int]

    // Per partition (by position): the open batch, its records' creation times, when it
    // opened, and the closed batches waiting to be sent.
    var encoders: [RecordBatchEncoder]
    var created: [[UInt64]]
    var payload: [Int]
    var openedAt: [UInt64]
    var queued: [[ClosedBatch]]
    var queuedPerLeader: [Int]
    var queuedBytes = 0
    /// Earliest time an open batch of each leader has lingered enough (UInt64.max: none).
    var lingerDue: [UInt64]

    var rng: UInt64
    let pool: [UInt8]
    var keyScratch = [UInt8](repeating: 0, count: 24)
    var sticky = 0
    var stickyBytes = 0
    var sequence = 0
    let expectedPerBatch: Int

    init(plan: ProducePlan, leaders nodes: [Int32], seed: UInt64) {
        self.plan = plan
        let parts = plan.layout.partitions
        slotOf = parts.map { nodes.firstIndex(of: plan.layout.leaders[$0]!)! }
        var byLeader = [[Int]](repeating: [], count: nodes.count)
        for (i, _) in parts.enumerated() { byLeader[slotOf[i]].append(i) }
        partitionsOf = byLeader
        sent = [Int](repeating: 0, count: nodes.count)
        drainStart = [Int](repeating: 0, count: nodes.count)
        queuedPerLeader = [Int](repeating: 0, count: nodes.count)
        lingerDue = [UInt64](repeating: .max, count: nodes.count)
        let capacity = min(plan.batchBytes, 1 << 20) + 256
        encoders = parts.map { _ in RecordBatchEncoder(baseTimestamp: 0, compression: plan.codec, capacity: capacity) }
        expectedPerBatch = min(plan.batchBytes / max(1, plan.recordSize) + 1, 1 << 16)
        created = parts.map { _ in [] }
        payload = [Int](repeating: 0, count: parts.count)
        openedAt = [UInt64](repeating: 0, count: parts.count)
        queued = parts.map { _ in [] }
        rng = seed | 1
        // Values are windows of a pool of random upper-case letters (kafka-producer-perf-test
        // fills its payload the same way): distinct records that compress about as text does.
        var r = seed ^ 0x9E37_79B9_7F4A_7C15
        pool = (0..<(plan.recordSize + 65536)).map { _ in
            r ^= r << 13
            r ^= r >> 7
            r ^= r << 17
            return UInt8(65 + r % 26)
        }
        sticky = Int(seed % UInt64(parts.count))
    }

    @inline(__always) private mutating func random() -> UInt64 {
        rng ^= rng << 13
        rng ^= rng >> 7
        rng ^= rng << 17
        return rng
    }

    @inline(__always) func inFlight(_ leader: Int, window: SendWindow) -> Int { sent[leader] - window.completed(leader: leader) }

    @inline(__always) func canSend(_ leader: Int, window: SendWindow) -> Bool { inFlight(leader, window: window) < plan.maxInFlight }

    func hasData(_ leader: Int) -> Bool {
        queuedPerLeader[leader] > 0 || partitionsOf[leader].contains { !encoders[$0].isEmpty }
    }

    /// Whether leader `l` has a full batch or a lingered one, and a free slot for it.
    @inline(__always) func sendable(_ l: Int, now: UInt64, window: SendWindow) -> Bool {
        (queuedPerLeader[l] > 0 || now >= lingerDue[l]) && canSend(l, window: window) && hasData(l)
    }

    // Called per record from the class, so `mutating`: an inout access, where a non-mutating
    // call would take a copy of the struct (a retain and release of each of its arrays).
    @inline(__always) mutating func anySendable(now: UInt64, window: SendWindow) -> Bool {
        (0..<sent.count).contains { sendable($0, now: now, window: window) }
    }

    /// Whether anything is still to send or to be answered.
    func pending(window: SendWindow) -> Bool {
        (0..<sent.count).contains { inFlight($0, window: window) > 0 || hasData($0) }
    }

    /// The earliest time after `now` that an open batch of a leader with a free slot has lingered enough.
    func nextLingerDue(after now: UInt64, window: SendWindow) -> UInt64 {
        var due = UInt64.max
        for l in 0..<sent.count where canSend(l, window: window) && lingerDue[l] > now { due = min(due, lingerDue[l]) }
        return due
    }

    /// Every open batch may go now (the load has ended).
    mutating func lingerAll() {
        for l in lingerDue.indices { lingerDue[l] = 0 }
    }

    mutating func append(now: UInt64) {
        var keyLength: Int?
        if plan.keys != .none {
            let k: Int
            if plan.keys == .random {
                k = Int(random() % UInt64(plan.keyCount))
            } else {
                k = sequence % plan.keyCount
                sequence &+= 1
            }
            keyLength = Self.writeDecimal(k, into: &keyScratch)
        }
        let p: Int
        if let keyLength {
            p = Int(keyScratch.withUnsafeBytes {
                Partitioner.partition(forKey: UnsafeRawBufferPointer(rebasing: $0[..<keyLength]), partitionCount: plan.layout.partitionCount)
            })
        } else {
            p = sticky
        }
        let valueLength = plan.recordSize
        let estimate = RecordBatchEncoder.recordSize(offsetDelta: encoders[p].count, keyLength: keyLength, valueLength: valueLength)
        if !encoders[p].isEmpty && encoders[p].sizeInBytes + estimate > plan.batchBytes { close(p) }
        if encoders[p].isEmpty {
            encoders[p].baseTimestamp = wallMillis()
            openedAt[p] = now
            created[p].reserveCapacity(expectedPerBatch)
            let l = slotOf[p]
            lingerDue[l] = min(lingerDue[l], now &+ plan.lingerNanos)
        }
        let delta = Int64((now &- openedAt[p]) / 1_000_000)
        let offset = Int(random() % UInt64(pool.count - valueLength + 1))
        let stamp = plan.stampValues
        keyScratch.withUnsafeBytes { key in
            pool.withUnsafeBytes { source in
                encoders[p].append(timestampDelta: delta, keyLength: keyLength, key: { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: key[..<dst.count]))
                }, valueLength: valueLength, value: { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + dst.count)]))
                    if stamp && dst.count >= 8 { dst.storeBytes(of: now.bigEndian, as: UInt64.self) }
                })
            }
        }
        created[p].append(now)
        let bytes = valueLength + (keyLength ?? 0)
        payload[p] += bytes
        if keyLength == nil {
            stickyBytes += bytes
            if stickyBytes >= plan.batchBytes {
                stickyBytes = 0
                let n = plan.layout.partitionCount
                if n > 1 { sticky = (sticky + 1 + Int(random() % UInt64(n - 1))) % n }
            }
        }
        if encoders[p].sizeInBytes >= plan.batchBytes { close(p) }
    }

    /// Decimal digits of `n` at the start of `buffer`; returns their count.
    private static func writeDecimal(_ n: Int, into buffer: inout [UInt8]) -> Int {
        var v = n
        var digits = 0
        repeat {
            digits += 1
            v /= 10
        } while v > 0
        v = n
        for i in stride(from: digits - 1, through: 0, by: -1) {
            buffer[i] = UInt8(48 + v % 10)
            v /= 10
        }
        return digits
    }

    /// Closes partition `p`'s open batch into its queue.
    private mutating func close(_ p: Int) {
        let bytes = encoders[p].finish()
        queued[p].append(ClosedBatch(partition: plan.layout.partitions[p], bytes: bytes, created: created[p], payloadBytes: payload[p]))
        created[p] = []
        payload[p] = 0
        queuedBytes += bytes.readableBytes
        queuedPerLeader[slotOf[p]] += 1
    }

    /// The batches of the next request to leader `l` (counted as sent if there are any), and
    /// their bytes: the first batch of each of its partitions (the open one if none is
    /// closed), from where the last request stopped, up to `maxRequestBytes`.
    mutating func take(leader l: Int) -> ([ClosedBatch], Int) {
        let parts = partitionsOf[l]
        var batches: [ClosedBatch] = []
        var size = 0
        var taken = 0
        for j in 0..<parts.count {
            let p = parts[(drainStart[l] + j) % parts.count]
            let next = queued[p].first?.bytes.readableBytes ?? encoders[p].sizeInBytes
            if queued[p].isEmpty && encoders[p].isEmpty { continue }
            if !batches.isEmpty && size + next > plan.maxRequestBytes { break }
            if queued[p].isEmpty { close(p) }
            let b = queued[p].removeFirst()
            queuedPerLeader[l] -= 1
            queuedBytes -= b.bytes.readableBytes
            size += b.bytes.readableBytes
            batches.append(b)
            taken = j + 1
        }
        drainStart[l] = (drainStart[l] + taken) % max(1, parts.count)
        var due = UInt64.max
        for p in parts where !encoders[p].isEmpty { due = min(due, openedAt[p] &+ plan.lingerNanos) }
        lingerDue[l] = due
        if !batches.isEmpty { sent[l] += 1 }
        return (batches, size)
    }
}
