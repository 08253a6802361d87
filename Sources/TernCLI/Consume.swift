import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import NIOCore

/// `tern consume TOPIC`: record values to standard output, like kafka-console-consumer.sh
/// with assigned partitions (no consumer group, no committed offsets).
struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print the records of a topic to standard output, one value per line.",
        discussion: """
        Reads every partition (or --partition) from the end of the log, or from the start with \
        --from-beginning, or from --offset. Runs until interrupted, --max-messages records, or \
        --timeout-ms without a record (both end with status 0). With --print-partition, \
        --print-offset and --print-key a line reads 'Partition:P<TAB>Offset:N<TAB>KEY<TAB>VALUE', \
        as kafka-console-consumer prints it; a null key or value prints as 'null'.
        """)

    @OptionGroup var client: ClientOptions
    @Argument(help: "The topic to read.") var topic: String
    @Option(help: "Read only this partition.") var partition: Int32?
    @Flag(name: .customLong("from-beginning"), help: "Start at the earliest offset (default: the end).") var fromBeginning = false
    @Option(help: ArgumentHelp("Start at this offset (needs --partition), or 'earliest' or 'latest'.", valueName: "offset"))
    var offset: String?
    @Option(name: .customLong("max-messages"), help: "Exit after this many records.") var maxMessages: Int?
    @Option(name: .customLong("timeout-ms"), help: "Exit when no record has arrived for this long.") var timeoutMs: Int?
    @Flag(name: .customLong("print-key"), help: "Print each record's key before its value.") var printKey = false
    @Flag(name: .customLong("print-offset"), help: "Print each record's offset first.") var printOffset = false
    @Flag(name: .customLong("print-partition"), help: "Print each record's partition first.") var printPartition = false
    @Option(name: .customLong("key-separator"), help: ArgumentHelp("Between key and value with --print-key (default: a tab).", valueName: "sep"))
    var keySeparator: String = "\t"

    /// Where each partition starts.
    enum Start {
        case earliest, latest, at(Int64)
    }

    var start: Start {
        if fromBeginning { return .earliest }
        switch offset {
        case nil, "latest": return .latest
        case "earliest": return .earliest
        case let s?: return .at(Int64(s) ?? 0)
        }
    }

    func validate() throws {
        if let offset {
            if fromBeginning { throw ValidationError("--from-beginning and --offset exclude each other") }
            if offset != "earliest" && offset != "latest" {
                guard let n = Int64(offset), n >= 0 else { throw ValidationError("--offset: expected a number, 'earliest' or 'latest', got '\(offset)'") }
                if partition == nil { throw ValidationError("--offset \(n) needs --partition") }
            }
        }
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more") }
        if let maxMessages, maxMessages < 1 { throw ValidationError("--max-messages must be at least 1") }
        if let timeoutMs, timeoutMs < 0 { throw ValidationError("--timeout-ms must be 0 or more") }
    }

    func run() async throws {
        let consumed = try await client.withClient { client in try await consume(client) }
        writeStderr("Processed a total of \(consumed) messages")
    }

    /// Returns the number of records printed.
    private func consume(_ client: KafkaClient) async throws -> Int {
        var leaders = try await partitionLeaders(client)
        var positions = try await startOffsets(client, leaders)
        let separator = Array(keySeparator.utf8)
        var printed = 0
        var lastRecord = ContinuousClock.now
        var refreshes = 0
        while true {
            var waitMs = 500
            if let timeoutMs {
                let idle = Int((ContinuousClock.now - lastRecord) / .milliseconds(1))
                if idle >= timeoutMs { return printed }
                waitMs = min(waitMs, timeoutMs - idle)
            }
            let responses = try await fetchAll(client, leaders, positions, waitMs: waitMs)
            var out: [UInt8] = []
            var needRefresh = false
            for response in responses {
                if response.errorCode != 0 {
                    throw KafkaClientError(kafka: response.errorCode, "cannot fetch from topic '\(topic)'")
                }
                for t in response.responses where t.topic == topic {
                    for p in t.partitions {
                        guard let position = positions[p.partitionIndex] else { continue }
                        if p.errorCode != 0 {
                            let e = KafkaClientError(kafka: p.errorCode, "cannot fetch \(topic)-\(p.partitionIndex) at offset \(position)")
                            guard e.isRetriableWithoutDuplicates, refreshes < 20 else { throw e }
                            needRefresh = true
                            continue
                        }
                        guard let records = p.records, records.readableBytes > 0 else { continue }
                        let (decoded, next) = try FetchedRecords.decode(records, partition: p.partitionIndex, fetchOffset: position)
                        positions[p.partitionIndex] = next
                        for r in decoded {
                            format(r, separator: separator, into: &out)
                            printed += 1
                            if let maxMessages, printed >= maxMessages {
                                writeStdout(out)
                                return printed
                            }
                        }
                        if !decoded.isEmpty { lastRecord = .now }
                    }
                }
            }
            writeStdout(out)
            if needRefresh {
                refreshes += 1
                try await Task.sleep(for: .milliseconds(200))
                leaders = try await partitionLeaders(client)
            } else {
                refreshes = 0
            }
        }
    }

    private func format(_ r: ConsumerRecord, separator: [UInt8], into out: inout [UInt8]) {
        if printPartition { out += Array("Partition:\(r.partition)\t".utf8) }
        if printOffset { out += Array("Offset:\(r.offset)\t".utf8) }
        if printKey {
            if let k = r.key { out += k.readableBytesView } else { out += Array("null".utf8) }
            out += separator
        }
        if let v = r.value { out += v.readableBytesView } else { out += Array("null".utf8) }
        out.append(UInt8(ascii: "\n"))
    }

    /// Partition → leader for the partitions to read; waits a little for partitions without
    /// a leader (one moving between brokers).
    private func partitionLeaders(_ client: KafkaClient) async throws -> [Int32: Int32] {
        var attempt = 0
        while true {
            attempt += 1
            let t = try topicMetadata(try await client.metadata(topics: [topic]), topic, action: "consume from")
            var leaders: [Int32: Int32] = [:]
            for p in t.partitions where partition == nil || p.partitionIndex == partition { leaders[p.partitionIndex] = p.leaderId }
            if let partition, leaders[partition] == nil {
                throw CLIError("topic '\(topic)' has no partition \(partition) (it has \(t.partitions.count))")
            }
            guard let leaderless = leaders.keys.sorted().first(where: { leaders[$0]! < 0 }) else { return leaders }
            if attempt == 10 {
                throw KafkaClientError(kafka: ErrorCode.leaderNotAvailable.rawValue, "cannot consume from \(topic)-\(leaderless)")
            }
            try await Task.sleep(for: .milliseconds(200 * attempt))
        }
    }

    private func startOffsets(_ client: KafkaClient, _ leaders: [Int32: Int32]) async throws -> [Int32: Int64] {
        let timestamp: Int64
        switch start {
        case .at(let n): return Dictionary(uniqueKeysWithValues: leaders.keys.map { ($0, n) })
        case .earliest: timestamp = -2
        case .latest: timestamp = -1
        }
        return try await partitionOffsets(client, topic: topic, partitions: leaders.keys.sorted(), timestamp: timestamp)
    }

    /// One Fetch per leader, concurrently; a leader with data answers at once, the others
    /// after `waitMs`.
    private func fetchAll(_ client: KafkaClient, _ leaders: [Int32: Int32], _ positions: [Int32: Int64], waitMs: Int) async throws -> [FetchResponse] {
        let topic = self.topic
        let byLeader = Dictionary(grouping: leaders.keys, by: { leaders[$0]! })
        return try await withThrowingTaskGroup(of: FetchResponse.self) { group in
            for (leader, partitions) in byLeader {
                var t = FetchRequest.FetchTopic()
                t.topic = topic
                t.partitions = partitions.sorted().map {
                    var p = FetchRequest.FetchTopic.FetchPartition()
                    p.partition = $0
                    p.fetchOffset = positions[$0] ?? 0
                    p.partitionMaxBytes = 1 << 20
                    return p
                }
                var request = FetchRequest()
                request.replicaId = -1
                request.maxWaitMs = Int32(waitMs)
                request.minBytes = 1
                request.maxBytes = 50 << 20
                request.isolationLevel = 0
                request.sessionId = 0
                request.sessionEpoch = -1
                request.topics = [t]
                group.addTask { try await client.connection(node: leader).send(request) }
            }
            var out: [FetchResponse] = []
            for try await r in group { out.append(r) }
            return out
        }
    }
}
