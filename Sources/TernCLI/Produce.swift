import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import NIOCore
import NIOPosix

/// `tern produce TOPIC`: one record per line of standard input, like kafka-console-producer.sh.
struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Send the lines of standard input to a topic, one record per line.",
        discussion: """
        Lines are sent as they are read: whatever is available is sent at once as one batch \
        per partition, with up to 5 requests in flight, written in input order (a batch retried \
        after a leader change may land after later ones, as with a Kafka producer without \
        idempotence). A record goes to --partition if given, \
        else keyed records to the partition of their key (Kafka's murmur2, as the Java client) \
        and unkeyed records round-robin. The topic is created if the broker auto-creates \
        topics. Exits 1 on the first failed batch, naming the partition and the Kafka error.
        """)

    @OptionGroup var client: ClientOptions
    @Argument(help: "The topic to write to.") var topic: String
    @Option(help: "Write every record to this partition.") var partition: Int32?
    @Option(name: .customLong("key-separator"),
            help: ArgumentHelp("Split each line at the first SEP into key and value; a line without SEP is an error.", valueName: "sep"))
    var keySeparator: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("-1 (or all) and 1: wait for the broker's ack (Tern acks once the write is durable); 0: do not wait.", valueName: "acks"))
    var acks: String = "-1"
    @Option(help: ArgumentHelp("Batch compression: none, gzip, snappy, lz4 or zstd.", valueName: "codec"))
    var compression: String = "none"

    var codec: CompressionCodec { CompressionCodec(configName: compression) ?? .none }

    /// Target size of one batch; the broker's default limit (message.max.bytes) is 1 MiB.
    static let batchBytes = 512 * 1024
    static let maxInFlight = 5

    var requiredAcks: Int16 {
        switch acks {
        case "all", "-1": -1
        case "1": 1
        default: 0
        }
    }

    func validate() throws {
        guard ["all", "-1", "0", "1"].contains(acks) else { throw ValidationError("--acks: expected -1 (all), 0 or 1, got '\(acks)'") }
        guard ["none", "gzip", "snappy", "lz4", "zstd"].contains(compression) else {
            throw ValidationError("--compression: expected none, gzip, snappy, lz4 or zstd, got '\(compression)'")
        }
        if let keySeparator, keySeparator.isEmpty { throw ValidationError("--key-separator must not be empty") }
        if let partition, partition < 0 { throw ValidationError("--partition must be 0 or more") }
    }

    func run() async throws {
        try await client.withClient { client in
            let leaders = LeaderMap(client: client, topic: topic)
            let count = try await leaders.refresh(allowAutoTopicCreation: true)
            if let partition, Int(partition) >= count {
                throw CLIError("topic '\(topic)' has no partition \(partition) (it has \(count))")
            }
            let sender = BatchSender(topic: topic, acks: requiredAcks, leaders: leaders)
            let separator = keySeparator.map { Array($0.utf8) }
            let reader = StdinLines()
            var inFlight: [Task<Void, any Error>] = []
            var lineNumber = 0
            var roundRobin = 0
            do {
                while let lines = try await reader.next() {
                    var batches = PartitionBatches(limit: Self.batchBytes, codec: codec)
                    for line in lines {
                        lineNumber += 1
                        var key: ArraySlice<UInt8>?
                        var value = line
                        if let separator {
                            guard let r = line.firstRange(of: separator) else {
                                throw CLIError("line \(lineNumber) has no key separator '\(keySeparator ?? "")': '\(String(decoding: line, as: UTF8.self))'")
                            }
                            key = line[..<r.lowerBound]
                            value = line[r.upperBound...]
                        }
                        let p: Int32
                        if let partition {
                            p = partition
                        } else if let key {
                            p = Partitioner.partition(forKey: key, partitionCount: count)
                        } else {
                            p = Int32(roundRobin % count)
                            roundRobin &+= 1
                        }
                        batches.append(partition: p, key: key, value: value)
                    }
                    // A produce request carries at most one batch per partition.
                    for round in batches.rounds() {
                        if inFlight.count >= Self.maxInFlight { try await inFlight.removeFirst().value }
                        // Written here, one round after another, so that they reach each
                        // broker in input order; only the waits for answers run concurrently.
                        let written = try await sender.write(round)
                        inFlight.append(Task { try await sender.complete(written) })
                    }
                }
                for t in inFlight { try await t.value }
            } catch {
                for t in inFlight { t.cancel() }
                throw error
            }
        }
    }
}

/// Records of one read, grouped into batches per partition, encoded as they are appended.
struct PartitionBatches {
    let limit: Int
    let codec: CompressionCodec
    private var open: [Int32: RecordBatchEncoder] = [:]
    private var closed: [Int32: [ByteBuffer]] = [:]
    private let timestamp = Int64(Date().timeIntervalSince1970 * 1000)

    init(limit: Int, codec: CompressionCodec) {
        self.limit = limit
        self.codec = codec
    }

    mutating func append(partition: Int32, key: ArraySlice<UInt8>?, value: ArraySlice<UInt8>) {
        let size = RecordBatchEncoder.recordSize(offsetDelta: open[partition]?.count ?? 0, keyLength: key?.count, valueLength: value.count)
        // Tested and finished in place: a copy taken out of the dictionary would share the
        // encoder's buffer and make the next append copy it.
        if open[partition]?.isEmpty == false, open[partition]!.sizeInBytes + size > limit {
            closed[partition, default: []].append(open[partition]!.finish())
        }
        open[partition, default: RecordBatchEncoder(baseTimestamp: timestamp, compression: codec)].append(
            keyLength: key?.count, key: { dst in key?.withUnsafeBytes { dst.copyMemory(from: $0) } },
            valueLength: value.count, value: { dst in value.withUnsafeBytes { dst.copyMemory(from: $0) } })
    }

    /// Requests' worth of batches: the i-th holds the i-th batch of every partition.
    mutating func rounds() -> [[Int32: ByteBuffer]] {
        for p in open.keys where open[p]?.isEmpty == false { closed[p, default: []].append(open[p]!.finish()) }
        open = [:]
        var out: [[Int32: ByteBuffer]] = []
        for (p, batches) in closed {
            for (i, b) in batches.enumerated() {
                if out.count <= i { out.append([:]) }
                out[i][p] = b
            }
        }
        closed = [:]
        return out
    }
}

/// Which broker leads each partition of one topic, refreshed from Metadata on demand.
actor LeaderMap {
    let client: KafkaClient
    let topic: String
    private var leaders: [Int32: Int32] = [:]

    init(client: KafkaClient, topic: String) {
        self.client = client
        self.topic = topic
    }

    /// Fetches the topic's metadata (retrying while a new topic has no leader yet) and
    /// returns its partition count.
    @discardableResult
    func refresh(allowAutoTopicCreation: Bool = false) async throws -> Int {
        var attempt = 0
        while true {
            attempt += 1
            let response = try await client.metadata(topics: [topic], allowAutoTopicCreation: allowAutoTopicCreation)
            do {
                let t = try topicMetadata(response, topic, action: "produce to")
                guard !t.partitions.isEmpty else { throw CLIError("topic '\(topic)' has no partitions") }
                leaders = Dictionary(t.partitions.map { ($0.partitionIndex, $0.leaderId) }, uniquingKeysWith: { a, _ in a })
                return t.partitions.count
            } catch let e as KafkaClientError where attempt < 10 && e.kafkaErrorCode == ErrorCode.leaderNotAvailable.rawValue {
                try await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    func leader(_ partition: Int32) -> Int32? { leaders[partition].flatMap { $0 >= 0 ? $0 : nil } }
}

/// Sends one round of batches, one request per leader, retrying partitions whose error says
/// the batch was not written (no leader, moved leader) after a metadata refresh.
struct BatchSender: Sendable {
    let topic: String
    let acks: Int16
    let leaders: LeaderMap
    static let attempts = 5

    /// A round's requests, written to their connections, and the partitions that had no leader.
    struct Written: Sendable {
        /// Each request's batches and its answer (nil with acks=0, once written).
        var requests: [(parts: [Int32: ByteBuffer], answer: EventLoopFuture<ProduceResponse?>)] = []
        var withoutLeader: [Int32: ByteBuffer] = [:]
    }

    /// Writes the round's requests before returning: rounds written one after another reach
    /// a broker in that order, however their answers are awaited.
    func write(_ batches: [Int32: ByteBuffer]) async throws -> Written {
        var written = Written()
        var byLeader: [Int32: [Int32: ByteBuffer]] = [:]
        for (p, b) in batches {
            if let l = await leaders.leader(p) { byLeader[l, default: [:]][p] = b } else { written.withoutLeader[p] = b }
        }
        for (leader, parts) in byLeader.sorted(by: { $0.key < $1.key }) {
            let conn = try await leaders.client.connection(node: leader)
            var topicData = ProduceRequest.TopicProduceData()
            topicData.name = topic
            topicData.partitionData = parts.keys.sorted().map { p in
                var d = ProduceRequest.TopicProduceData.PartitionProduceData()
                d.index = p
                d.records = parts[p]
                return d
            }
            var request = ProduceRequest()
            request.acks = acks
            request.timeoutMs = 30_000
            request.topicData = [topicData]
            let answer = acks == 0
                ? conn.submitWithoutResponse(request).map { nil }
                : conn.submit(request).map { Optional($0) }
            written.requests.append((parts, answer))
        }
        return written
    }

    /// Waits for the answers of a written round, rewriting what failed retriably.
    func complete(_ first: Written) async throws {
        var written = first
        var attempt = 1
        while true {
            var retry = written.withoutLeader
            var lastError = retry.keys.first.map {
                KafkaClientError(kafka: ErrorCode.leaderNotAvailable.rawValue, "cannot produce to \(topic)-\($0)")
            }
            for (parts, answer) in written.requests {
                guard let response = try await answer.get() else { continue }
                for (p, error) in try failures(response, parts) {
                    guard error.isRetriableWithoutDuplicates, attempt < Self.attempts else { throw error }
                    retry[p] = parts[p]
                    lastError = error
                }
            }
            if retry.isEmpty { return }
            guard attempt < Self.attempts else { throw lastError ?? CLIError("cannot produce to \(topic)") }
            try await Task.sleep(for: .milliseconds(100 * attempt))
            try await leaders.refresh()
            attempt += 1
            written = try await write(retry)
        }
    }

    /// The partitions of `parts` that the response says failed, with their errors.
    private func failures(_ response: ProduceResponse, _ parts: [Int32: ByteBuffer]) throws -> [(Int32, KafkaClientError)] {
        var failed: [(Int32, KafkaClientError)] = []
        var answered = Set<Int32>()
        for t in response.responses where t.name == topic {
            for r in t.partitionResponses {
                answered.insert(r.index)
                if r.errorCode != 0 {
                    failed.append((r.index, KafkaClientError(kafka: r.errorCode, "cannot produce to \(topic)-\(r.index)", brokerMessage: r.errorMessage)))
                }
            }
        }
        if let missing = parts.keys.sorted().first(where: { !answered.contains($0) }) {
            throw CLIError("the broker's Produce response does not mention \(topic)-\(missing)")
        }
        return failed
    }
}

/// Standard input as lines, read as they arrive: each `next()` returns the complete lines
/// available (at least one), or nil at end of input. Reads block, so they run on NIO's
/// thread pool rather than on a Swift concurrency thread.
final class StdinLines {
    private var pending: [UInt8] = []
    private var eof = false

    func next() async throws -> [ArraySlice<UInt8>]? {
        while true {
            if let lines = takeLines() { return lines }
            if eof {
                guard !pending.isEmpty else { return nil }
                let last = pending
                pending = []
                return [Self.trimCR(last[...])]
            }
            let chunk = try await NIOThreadPool.singleton.runIfActive { try Self.readStdin() }
            if chunk.isEmpty { eof = true } else { pending += chunk }
        }
    }

    /// The complete lines in `pending`, leaving the unfinished tail.
    private func takeLines() -> [ArraySlice<UInt8>]? {
        guard let lastNewline = pending.lastIndex(of: UInt8(ascii: "\n")) else { return nil }
        let complete = Array(pending[...lastNewline])
        pending.removeSubrange(...lastNewline)
        return complete.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { Self.trimCR($0) }
    }

    private static func trimCR(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        line.last == UInt8(ascii: "\r") ? line.dropLast() : line
    }

    private static func readStdin() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
            if n >= 0 { return Array(buffer[..<n]) }
            if errno == EINTR { continue }
            throw CLIError("cannot read standard input: \(String(cString: strerror(errno)))")
        }
    }
}
