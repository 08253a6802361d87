import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import NIOCore
import NIOPosix
import Synchronization

/// `tern perf produce|consume|e2e`: load generators in the spirit of kafka-producer-perf-test,
/// kafka-consumer-perf-test and OpenMessaging Benchmark, over the Kafka protocol, so they
/// measure any Kafka broker the same way.
struct Perf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perf",
        abstract: "Measure throughput and latency: produce, consume, or both end to end.",
        discussion: """
        Every run prints a progress line each --interval seconds and a summary at the end \
        ('Total: …'); with --json the summary is also one JSON object on standard output and \
        the lines go to standard error. Latencies are counted per record, to 3 significant \
        digits (HdrHistogram's layout), the maximum exactly. MB is 1024*1024 bytes. Errors \
        print one line and exit 1: unknown topic, broker down, a failed request; records the \
        broker refused are counted by Kafka error name, and make the exit status 1.
        """,
        subcommands: [PerfProduce.self, PerfConsume.self, PerfEndToEnd.self])
}

extension KeyMode: ExpressibleByArgument {}

/// `--num-records N | --duration SECONDS`.
struct PerfLength: ParsableArguments {
    @Option(name: .customLong("num-records"), help: ArgumentHelp("Run until this many records.", valueName: "n"))
    var numRecords: Int?
    @Option(help: ArgumentHelp("Run for this many seconds.", valueName: "seconds"))
    var duration: Double?

    func validate() throws {
        switch (numRecords, duration) {
        case (nil, nil): throw ValidationError("give --num-records N or --duration SECONDS")
        case (_?, _?): throw ValidationError("--num-records and --duration exclude each other")
        default: break
        }
        if let numRecords, numRecords < 1 { throw ValidationError("--num-records must be at least 1") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be more than 0 seconds") }
    }
}

struct PerfReportOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Seconds between progress lines.", valueName: "seconds"))
    var interval: Double = 5
    @Flag(help: "Also print the summary as one JSON object on standard output; the progress and summary lines then go to standard error.")
    var json = false

    func validate() throws {
        if !(interval > 0) { throw ValidationError("--interval must be more than 0 seconds") }
    }

    /// Writes a human-readable line: standard output, or standard error with --json.
    func line(_ text: String) {
        if json { writeStderr(text) } else { writeStdout(Array((text + "\n").utf8)) }
    }
}

/// The producer's knobs, named after Kafka's producer configs where one exists.
struct PerfProducerOptions: ParsableArguments {
    @Option(help: "Partitions of the topic if it must be created (default: the broker's num.partitions).")
    var partitions: Int32?
    @Flag(name: .customLong("no-create"), help: "Fail if the topic does not exist, rather than create it.")
    var noCreate = false
    @Option(name: .customLong("record-size"), help: ArgumentHelp("Bytes of each record's value.", valueName: "bytes"))
    var recordSize: Int = 1024
    @Option(parsing: .unconditional, help: ArgumentHelp("Records per second over all producers (token bucket); -1: unlimited.", valueName: "records/s"))
    var throughput: Double = -1
    @Option(parsing: .unconditional, help: ArgumentHelp("-1 (or all): wait for the broker's ack (Tern acks once the write is durable); 1: same on one broker; 0: do not wait (latency then ends when the request is written).", valueName: "acks"))
    var acks: String = "-1"
    @Option(help: ArgumentHelp("Batch compression: none, gzip, snappy, lz4 or zstd.", valueName: "codec"))
    var compression: String = "none"
    @Option(help: "Producers, each with its own connections and an equal share of the records and of --throughput.")
    var producers: Int = 1
    @Option(name: .customLong("batch-bytes"), help: ArgumentHelp("Close a partition's batch at this many uncompressed bytes (batch.size).", valueName: "bytes"))
    var batchBytes: Int = 16384
    @Option(name: .customLong("linger-ms"), help: ArgumentHelp("Send a batch at the latest this long after its first record (linger.ms).", valueName: "ms"))
    var lingerMs: Double = 5
    @Option(name: .customLong("max-in-flight"), help: ArgumentHelp("Requests awaiting an answer per connection (max.in.flight.requests.per.connection).", valueName: "n"))
    var maxInFlight: Int = 5
    @Option(name: .customLong("max-request-bytes"), help: ArgumentHelp("A request takes one batch per partition up to this size (max.request.size).", valueName: "bytes"))
    var maxRequestBytes: Int = 1 << 20
    @Option(help: ArgumentHelp("Record keys: none (sticky partition per batch), random or sequential (of --key-count keys, decimal numbers; partition by murmur2).", valueName: "mode"))
    var keys: KeyMode = .none
    @Option(name: .customLong("key-count"), help: ArgumentHelp("Distinct keys with --keys random|sequential.", valueName: "n"))
    var keyCount: Int = 1000

    var requiredAcks: Int16 {
        switch acks {
        case "all", "-1": -1
        case "1": 1
        default: 0
        }
    }

    func validate() throws {
        if let partitions, partitions < 1 { throw ValidationError("--partitions must be at least 1") }
        if recordSize < 0 { throw ValidationError("--record-size must be 0 or more") }
        if !(throughput == -1 || throughput > 0) { throw ValidationError("--throughput must be more than 0, or -1 for unlimited") }
        guard ["all", "-1", "0", "1"].contains(acks) else { throw ValidationError("--acks: expected -1 (all), 0 or 1, got '\(acks)'") }
        guard CompressionCodec(configName: compression) != nil, compression != "uncompressed" else {
            throw ValidationError("--compression: expected none, gzip, snappy, lz4 or zstd, got '\(compression)'")
        }
        if producers < 1 { throw ValidationError("--producers must be at least 1") }
        if batchBytes < 1 { throw ValidationError("--batch-bytes must be at least 1") }
        if !(lingerMs >= 0) { throw ValidationError("--linger-ms must be 0 or more") }
        if maxInFlight < 1 { throw ValidationError("--max-in-flight must be at least 1") }
        if maxRequestBytes < 1 { throw ValidationError("--max-request-bytes must be at least 1") }
        if keyCount < 1 { throw ValidationError("--key-count must be at least 1") }
    }

    func plan(topic: String, layout: TopicLayout, connection: KafkaClientConfiguration, stampValues: Bool) -> ProducePlan {
        ProducePlan(topic: topic, layout: layout, acks: requiredAcks, codec: CompressionCodec(configName: compression) ?? .none,
                    recordSize: recordSize, batchBytes: batchBytes, lingerNanos: UInt64(lingerMs * 1_000_000),
                    maxInFlight: maxInFlight, maxRequestBytes: maxRequestBytes, keys: keys, keyCount: keyCount,
                    stampValues: stampValues, connection: connection)
    }

    /// Runs `producers` producers to the end of the load.
    func run(plan: ProducePlan, stats: ProduceStats, length: PerfLength, start: UInt64) async throws {
        let deadline = length.duration.map { start + UInt64($0 * 1e9) }
        let count = producers
        let rate = throughput > 0 ? throughput / Double(count) : nil
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                let share = length.numRecords.map { $0 / count + (i < $0 % count ? 1 : 0) }
                if share == 0 { continue }
                let seed = UInt64.random(in: 1...UInt64.max)
                group.addTask {
                    try await PerfProducer(plan: plan, stats: stats, records: share, deadline: deadline, rate: rate, seed: seed).run()
                }
            }
            while try await group.next() != nil {}
        }
    }
}

struct PerfConsumerOptions: ParsableArguments {
    @Option(name: .customLong("fetch-max-bytes"), help: ArgumentHelp("Largest fetch response (fetch.max.bytes).", valueName: "bytes"))
    var fetchMaxBytes: Int = 52_428_800
    @Option(name: .customLong("partition-max-bytes"), help: ArgumentHelp("Largest share of one partition in a fetch response (max.partition.fetch.bytes).", valueName: "bytes"))
    var partitionMaxBytes: Int = 1_048_576
    @Option(help: ArgumentHelp("With --num-records (or e2e), give up when no record has arrived for this long.", valueName: "seconds"))
    var timeout: Double = 10

    func validate() throws {
        if fetchMaxBytes < 1 { throw ValidationError("--fetch-max-bytes must be at least 1") }
        if partitionMaxBytes < 1 { throw ValidationError("--partition-max-bytes must be at least 1") }
        if !(timeout > 0) { throw ValidationError("--timeout must be more than 0 seconds") }
    }

    func plan(topic: String, layout: TopicLayout, connection: KafkaClientConfiguration, readStamps: Bool, notBefore: UInt64) -> ConsumePlan {
        ConsumePlan(topic: topic, layout: layout, fetchMaxBytes: fetchMaxBytes, partitionMaxBytes: partitionMaxBytes,
                    readStamps: readStamps, notBefore: notBefore, connection: connection)
    }
}

struct PerfProduce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Produce records as fast as allowed and report throughput and latency (kafka-producer-perf-test).",
        discussion: """
        Creates the topic if it is missing (--partitions). Each producer appends records to one \
        open batch per partition (unkeyed records stick to one partition per batch, as Kafka's \
        default partitioner; keyed records go to murmur2(key)), closes it at --batch-bytes, and \
        sends a partition's batches to its leader once one is full or --linger-ms old, one batch \
        per partition per request, with at most --max-in-flight requests per connection; up to \
        32 MiB of closed batches wait for a slot, then record creation waits. Latency runs from \
        a record's creation to its ack. --duration stops creating records; the run ends once \
        all are answered. No retries: a partition error counts the batch's records under the \
        error's name. Lines read 'N records sent, X records/sec \
        (Y MB/sec), avg A p50 B p99 C p99.9 D max E ms latency.' MB/sec counts key and value \
        bytes. --json: {records, bytes, seconds, records_per_sec, mb_per_sec, latency_ms: \
        {avg, p50, p99, p999, max}, errors: {NAME: records}}.
        """)

    @OptionGroup var client: ClientOptions
    @Option(help: "The topic to write to.") var topic: String
    @OptionGroup var length: PerfLength
    @OptionGroup var producer: PerfProducerOptions
    @OptionGroup var report: PerfReportOptions

    func run() async throws {
        let layout = try await client.withClient { c in
            try await perfTopic(c, topic: topic, partitions: producer.partitions, create: !producer.noCreate, action: "produce to")
        }
        let plan = producer.plan(topic: topic, layout: layout, connection: client.configuration, stampValues: false)
        let stats = ProduceStats()
        let start = nowNanos()
        let report = self.report
        let ticker = Ticker(every: report.interval) { seconds in
            let w = stats.takeInterval()
            report.line(produceLine(w.records, w.bytes, seconds, w.latency) + ".")
        }
        do {
            try await producer.run(plan: plan, stats: stats, length: length, start: start)
        } catch {
            ticker.stop()
            throw error
        }
        ticker.stop()
        let (total, errors, lastAck) = stats.totals()
        let seconds = Double((lastAck > start ? lastAck : nowNanos()) - start) / 1e9
        report.line("Total: " + produceLine(total.records, total.bytes, seconds, total.latency) + " in \(fixed(seconds, 2)) s" + errorText(errors) + ".")
        if report.json {
            printJSON(ProduceSummary(records: total.records, bytes: total.bytes, seconds: seconds, total.latency, errors: errors))
        }
        try failIfErrors(errors)
    }
}

struct PerfConsume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Read a topic as fast as the broker serves it and report throughput (kafka-consumer-perf-test).",
        discussion: """
        Reads every partition from its leader, from the start (default) or the end, with a few \
        pipelined fetches per leader, each for its own share of the partitions. Records are \
        counted from batch headers, not decoded; MB/sec counts record batches as stored \
        (compressed, if they are). Stops after --num-records (or fails when none arrives for \
        --timeout seconds first) or after --duration. Lines read 'N records received, X \
        records/sec (Y MB/sec).' --json: {records, bytes, seconds, records_per_sec, mb_per_sec}.
        """)

    @OptionGroup var client: ClientOptions
    @Option(help: "The topic to read.") var topic: String
    @OptionGroup var length: PerfLength
    @Flag(name: .customLong("from-beginning"), help: "Start at each partition's earliest offset (the default).") var fromBeginning = false
    @Flag(name: .customLong("from-end"), help: "Start at each partition's end: count only records produced from now on.") var fromEnd = false
    @OptionGroup var consumer: PerfConsumerOptions
    @OptionGroup var report: PerfReportOptions

    func validate() throws {
        if fromBeginning && fromEnd { throw ValidationError("--from-beginning and --from-end exclude each other") }
    }

    func run() async throws {
        let stats = ConsumeStats()
        let stop = StopFlag()
        let report = self.report
        let (layout, positions) = try await client.withClient { c in
            let layout = try await perfTopic(c, topic: topic, partitions: nil, create: false, action: "consume from")
            return (layout, try await partitionOffsets(c, topic: topic, partitions: layout.partitions, timestamp: fromEnd ? -1 : -2))
        }
        let consumer = PerfConsumer(plan: self.consumer.plan(topic: topic, layout: layout, connection: client.configuration,
                                                             readStamps: false, notBefore: 0),
                                    stats: stats)
        let start = nowNanos()
        let ticker = Ticker(every: report.interval) { seconds in
            let w = stats.takeInterval()
            report.line(consumeLine(w.records, w.bytes, seconds) + ".")
        }
        let deadline = length.duration.map { start + UInt64($0 * 1e9) }
        let target = length.numRecords
        let timeout = UInt64(self.consumer.timeout * 1e9)
        var shortfall: String?
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run(from: positions, stop: stop) }
                group.addTask {
                    var seen = 0
                    var lastProgress = nowNanos()
                    while !stop.isSet {
                        try await Task.sleep(for: .milliseconds(10))
                        let now = nowNanos()
                        let received = stats.receivedRecords
                        if received != seen {
                            seen = received
                            lastProgress = now
                        }
                        if let target, received >= target { break }
                        if let deadline, now >= deadline { break }
                        if target != nil && now - lastProgress >= timeout { break }
                    }
                    stop.set()
                }
                while try await group.next() != nil {}
            }
        } catch {
            ticker.stop()
            throw error
        }
        ticker.stop()
        let (total, lastReceive) = stats.totals()
        let end = deadline.map { min($0, nowNanos()) } ?? (lastReceive > start ? lastReceive : nowNanos())
        let seconds = Double(end - start) / 1e9
        if let target, total.records < target {
            shortfall = "only \(total.records) of \(target) records arrived; none for \(fixed(self.consumer.timeout, 1)) s"
        }
        report.line("Total: " + consumeLine(total.records, total.bytes, seconds) + " in \(fixed(seconds, 2)) s.")
        if report.json {
            printJSON(ConsumeSummary(records: total.records, bytes: total.bytes, seconds: seconds))
        }
        if let shortfall { throw CLIError(shortfall) }
    }
}

struct PerfEndToEnd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e",
        abstract: "Produce and consume in one process and report produce-to-consume latency.",
        discussion: """
        A consumer starts at the topic's end, then the producers run as `tern perf produce` \
        does, each record's value starting with its creation time (8 bytes, monotonic \
        nanoseconds); the consumer subtracts it from the time the fetch response holding \
        the record arrived. Ends once the consumer has every record the broker acked (or none \
        has arrived for --timeout seconds: the rest count as missing, exit 1). Lines read \
        'N records sent, … ms produce latency; M records received, avg … max … ms end-to-end \
        latency.' --json: {records_sent, records, bytes, seconds, records_per_sec, mb_per_sec, \
        latency_ms (end to end), produce_latency_ms, errors, missing}.
        """)

    @OptionGroup var client: ClientOptions
    @Option(help: "The topic to write to and read from.") var topic: String
    @OptionGroup var length: PerfLength
    @OptionGroup var producer: PerfProducerOptions
    @OptionGroup var consumer: PerfConsumerOptions
    @OptionGroup var report: PerfReportOptions

    func validate() throws {
        if producer.recordSize < 8 { throw ValidationError("--record-size must be at least 8 for e2e (the value starts with its send time)") }
    }

    func run() async throws {
        let (layout, positions) = try await client.withClient { c in
            let layout = try await perfTopic(c, topic: topic, partitions: producer.partitions, create: !producer.noCreate, action: "produce to")
            return (layout, try await partitionOffsets(c, topic: topic, partitions: layout.partitions, timestamp: -1))
        }
        let pstats = ProduceStats()
        let cstats = ConsumeStats()
        let stop = StopFlag()
        let start = nowNanos()
        let plan = producer.plan(topic: topic, layout: layout, connection: client.configuration, stampValues: true)
        let consumer = PerfConsumer(plan: self.consumer.plan(topic: topic, layout: layout, connection: client.configuration,
                                                             readStamps: true, notBefore: start),
                                    stats: cstats)
        let report = self.report
        let ticker = Ticker(every: report.interval) { seconds in
            let p = pstats.takeInterval()
            let c = cstats.takeInterval()
            report.line(produceLine(p.records, p.bytes, seconds, p.latency, what: "produce latency") + "; "
                        + "\(c.records) records received, \(latencyText(c.latency)) ms end-to-end latency.")
        }
        let options = self.producer
        let length = self.length
        let timeout = UInt64(self.consumer.timeout * 1e9)
        var producedAt: UInt64 = 0
        do {
            producedAt = try await withThrowingTaskGroup(of: UInt64.self) { group in
                group.addTask {
                    try await consumer.run(from: positions, stop: stop)
                    return 0
                }
                group.addTask {
                    defer { stop.set() }
                    try await options.run(plan: plan, stats: pstats, length: length, start: start)
                    let produced = nowNanos()
                    // Wait for the consumer to see every acked record, or to stall.
                    var seen = -1
                    var lastProgress = produced
                    while !stop.isSet {
                        let received = cstats.stampedRecords
                        if received >= pstats.ackedRecords { break }
                        let now = nowNanos()
                        if received != seen {
                            seen = received
                            lastProgress = now
                        }
                        if now - lastProgress >= timeout { break }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    return produced
                }
                var produced: UInt64 = 0
                while let r = try await group.next() { produced = max(produced, r) }
                return produced
            }
        } catch {
            ticker.stop()
            throw error
        }
        ticker.stop()
        let (p, errors, lastAck) = pstats.totals()
        let (c, lastReceive) = cstats.totals()
        let produceSeconds = Double((lastAck > start ? lastAck : producedAt) - start) / 1e9
        let seconds = Double((lastReceive > start ? lastReceive : nowNanos()) - start) / 1e9
        let missing = max(0, p.records - c.latency.count.asInt)
        report.line("Total: " + produceLine(p.records, p.bytes, produceSeconds, p.latency, what: "produce latency") + errorText(errors) + "; "
                    + "\(c.records) records received in \(fixed(seconds, 2)) s, \(latencyText(c.latency)) ms end-to-end latency"
                    + (missing > 0 ? ", \(missing) missing" : "") + ".")
        if report.json {
            printJSON(EndToEndSummary(sent: p, received: c, seconds: seconds, errors: errors, missing: missing))
        }
        if missing > 0 {
            throw CLIError("\(missing) of the \(p.records) acked records did not arrive within \(fixed(self.consumer.timeout, 1)) s")
        }
        try failIfErrors(errors)
    }
}

extension UInt64 {
    var asInt: Int { Int(clamping: self) }
}

// MARK: - Topic

/// The topic's partitions and their leaders, waiting for leaders to be elected; when the
/// topic is missing and `create` is set, creates it with `partitions` (nil: the broker's
/// default) first.
func perfTopic(_ client: KafkaClient, topic: String, partitions: Int32?, create: Bool, action: String) async throws -> TopicLayout {
    var created = false
    var attempt = 0
    while true {
        attempt += 1
        let response = try await client.metadata(topics: [topic])
        let entry = response.topics.first { $0.name == topic }
        let code = entry?.errorCode ?? 0
        if code == ErrorCode.unknownTopicOrPartition.rawValue && create && !created {
            try await createTopic(client, topic: topic, partitions: partitions)
            created = true
            continue
        }
        let settling = code == ErrorCode.leaderNotAvailable.rawValue || (created && code == ErrorCode.unknownTopicOrPartition.rawValue)
            || (code == 0 && (entry?.partitions.isEmpty ?? false || entry?.partitions.contains { $0.leaderId < 0 } ?? false))
        if settling && attempt < 50 {
            try await Task.sleep(for: .milliseconds(100))
            continue
        }
        let t = try topicMetadata(response, topic, action: action)
        guard !t.partitions.isEmpty, !t.partitions.contains(where: { $0.leaderId < 0 }) else {
            throw KafkaClientError(kafka: ErrorCode.leaderNotAvailable.rawValue, "cannot \(action) topic '\(topic)'",
                                   brokerMessage: "a partition has no leader")
        }
        if let partitions, !created, t.partitions.count != Int(partitions) {
            writeStderr("Note: topic '\(topic)' exists with \(t.partitions.count) partitions; --partitions \(partitions) applies only to a new topic.")
        }
        var addresses: [Int32: BrokerAddress] = [:]
        for b in response.brokers { addresses[b.nodeId] = BrokerAddress(host: b.host, port: Int(b.port)) }
        return TopicLayout(partitions: t.partitions.map(\.partitionIndex).sorted(),
                           leaders: Dictionary(t.partitions.map { ($0.partitionIndex, $0.leaderId) }, uniquingKeysWith: { a, _ in a }),
                           addresses: addresses)
    }
}

private func createTopic(_ client: KafkaClient, topic: String, partitions: Int32?) async throws {
    var t = CreateTopicsRequest.CreatableTopic()
    t.name = topic
    t.numPartitions = partitions ?? -1
    t.replicationFactor = -1
    var request = CreateTopicsRequest()
    request.topics = [t]
    request.timeoutMs = 30_000
    let response = try await client.controller().send(request)
    guard let r = response.topics.first(where: { $0.name == topic }) else {
        throw CLIError("the broker's CreateTopics response does not mention topic '\(topic)'")
    }
    guard r.errorCode == 0 || r.errorCode == ErrorCode.topicAlreadyExists.rawValue else {
        throw KafkaClientError(kafka: r.errorCode, "cannot create topic '\(topic)'", brokerMessage: r.errorMessage)
    }
}

// MARK: - Output

/// Calls `tick` with the seconds since the previous tick, every `every` seconds, on an event
/// loop (a busy generator cannot hold it up).
final class Ticker: Sendable {
    private let task: RepeatedTask

    init(every seconds: Double, _ tick: @escaping @Sendable (Double) -> Void) {
        let interval = TimeAmount.nanoseconds(Int64(seconds * 1e9))
        let last = Last(nowNanos())
        task = MultiThreadedEventLoopGroup.singleton.any().scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let now = nowNanos()
            tick(Double(now - last.value.exchange(now, ordering: .relaxed)) / 1e9)
        }
    }

    func stop() { task.cancel() }

    private final class Last: Sendable {
        let value: Atomic<UInt64>
        init(_ v: UInt64) { value = Atomic(v) }
    }
}

func fixed(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

func milliseconds(_ microseconds: UInt64) -> Double { Double(microseconds) / 1000 }

func latencyText(_ h: LatencyHistogram) -> String {
    "avg \(fixed(h.mean / 1000, 2)) p50 \(fixed(milliseconds(h.value(atPercentile: 50)), 2)) "
        + "p99 \(fixed(milliseconds(h.value(atPercentile: 99)), 2)) p99.9 \(fixed(milliseconds(h.value(atPercentile: 99.9)), 2)) "
        + "max \(fixed(milliseconds(h.max), 2))"
}

func rates(_ records: Int, _ bytes: Int, _ seconds: Double) -> (Double, Double) {
    guard seconds > 0 else { return (0, 0) }
    return (Double(records) / seconds, Double(bytes) / seconds / 1_048_576)
}

func produceLine(_ records: Int, _ bytes: Int, _ seconds: Double, _ latency: LatencyHistogram, what: String = "latency") -> String {
    let (rps, mbps) = rates(records, bytes, seconds)
    return "\(records) records sent, \(fixed(rps, 1)) records/sec (\(fixed(mbps, 2)) MB/sec), \(latencyText(latency)) ms \(what)"
}

func consumeLine(_ records: Int, _ bytes: Int, _ seconds: Double) -> String {
    let (rps, mbps) = rates(records, bytes, seconds)
    return "\(records) records received, \(fixed(rps, 1)) records/sec (\(fixed(mbps, 2)) MB/sec)"
}

func errorText(_ errors: [String: Int]) -> String {
    let n = errors.values.reduce(0, +)
    guard n > 0 else { return ", 0 errors" }
    return ", \(n) errors (" + errors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"
}

func failIfErrors(_ errors: [String: Int]) throws {
    let n = errors.values.reduce(0, +)
    if n > 0 {
        throw CLIError("\(n) records were refused: " + errors.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(separator: ", "))
    }
}

struct LatencySummary: Encodable {
    var avg, p50, p99, p999, max: Double

    init(_ h: LatencyHistogram) {
        func ms(_ us: Double) -> Double { us.rounded() / 1000 }
        avg = ms(h.mean)
        p50 = ms(Double(h.value(atPercentile: 50)))
        p99 = ms(Double(h.value(atPercentile: 99)))
        p999 = ms(Double(h.value(atPercentile: 99.9)))
        max = ms(Double(h.max))
    }
}

private func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

struct ProduceSummary: Encodable {
    var records: Int
    var bytes: Int
    var seconds: Double
    var recordsPerSec: Double
    var mbPerSec: Double
    var latencyMs: LatencySummary
    var errors: [String: Int]

    enum CodingKeys: String, CodingKey {
        case records, bytes, seconds, errors
        case recordsPerSec = "records_per_sec", mbPerSec = "mb_per_sec", latencyMs = "latency_ms"
    }

    init(records: Int, bytes: Int, seconds: Double, _ latency: LatencyHistogram, errors: [String: Int]) {
        self.records = records
        self.bytes = bytes
        self.seconds = round3(seconds)
        let (rps, mbps) = rates(records, bytes, seconds)
        recordsPerSec = round3(rps)
        mbPerSec = round3(mbps)
        latencyMs = LatencySummary(latency)
        self.errors = errors
    }
}

struct ConsumeSummary: Encodable {
    var records: Int
    var bytes: Int
    var seconds: Double
    var recordsPerSec: Double
    var mbPerSec: Double

    enum CodingKeys: String, CodingKey {
        case records, bytes, seconds
        case recordsPerSec = "records_per_sec", mbPerSec = "mb_per_sec"
    }

    init(records: Int, bytes: Int, seconds: Double) {
        self.records = records
        self.bytes = bytes
        self.seconds = round3(seconds)
        let (rps, mbps) = rates(records, bytes, seconds)
        recordsPerSec = round3(rps)
        mbPerSec = round3(mbps)
    }
}

struct EndToEndSummary: Encodable {
    var recordsSent: Int
    /// Records received that carried this run's stamp.
    var records: Int
    var bytes: Int
    var seconds: Double
    var recordsPerSec: Double
    var mbPerSec: Double
    var latencyMs: LatencySummary
    var produceLatencyMs: LatencySummary
    var errors: [String: Int]
    var missing: Int

    enum CodingKeys: String, CodingKey {
        case records, bytes, seconds, errors, missing
        case recordsSent = "records_sent", recordsPerSec = "records_per_sec", mbPerSec = "mb_per_sec"
        case latencyMs = "latency_ms", produceLatencyMs = "produce_latency_ms"
    }

    init(sent: ProduceStats.Window, received: ConsumeStats.Window, seconds: Double, errors: [String: Int], missing: Int) {
        recordsSent = sent.records
        records = received.latency.count.asInt
        bytes = received.bytes
        self.seconds = round3(seconds)
        let (rps, mbps) = rates(records, bytes, seconds)
        recordsPerSec = round3(rps)
        mbPerSec = round3(mbps)
        latencyMs = LatencySummary(received.latency)
        produceLatencyMs = LatencySummary(sent.latency)
        self.errors = errors
        self.missing = missing
    }
}

func printJSON(_ value: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    guard let data = try? encoder.encode(value) else { return }
    writeStdout(Array(data) + [UInt8(ascii: "\n")])
}
