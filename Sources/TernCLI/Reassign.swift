import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol

/// `tern admin reassign` and `tern admin drain`: move partitions between brokers over the
/// Kafka protocol (AlterPartitionReassignments), like kafka-reassign-partitions.sh. Nothing is
/// copied: the old broker flushes and releases, the new one opens at the next epoch.
extension Admin {
    struct Reassign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move one partition to another broker.",
            discussion: "Waits until the new broker leads the partition and prints how long the move took (--no-wait: only request it).")

        @OptionGroup var client: ClientOptions
        @Option(help: "The topic.") var topic: String
        @Option(help: "The partition.") var partition: Int32
        @Option(name: .customLong("to"), help: "The broker (node id) to move it to.") var to: Int32
        @Flag(name: .customLong("no-wait"), help: "Return once the move is requested.") var noWait = false
        @Option(help: "Seconds to wait for the move.") var timeout: Double = 60

        func run() async throws {
            try await client.withClient { client in
                let started = ContinuousClock.now
                try await requestMoves(client, [(topic, partition, to)])
                if noWait { return }
                try await waitForLeaders(client, timeout: timeout) { leaders in leaders[TopicPartitionKey(topic, partition)] == to }
                let ms = Int((ContinuousClock.now - started) / .milliseconds(1))
                print("Moved \(topic)-\(partition) to broker \(to) in \(ms) ms.")
            }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move every partition off a broker, to the other live brokers (fewest partitions first).",
            discussion: "Waits until the broker leads none (--no-wait: only request the moves). Partitions created later may be placed on it again.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The broker (node id) to drain.") var broker: Int32
        @Flag(name: .customLong("no-wait"), help: "Return once the moves are requested.") var noWait = false
        @Option(help: "Seconds to wait for the moves.") var timeout: Double = 120

        func run() async throws {
            try await client.withClient { client in
                let started = ContinuousClock.now
                let md = try await client.metadata(topics: nil)
                let others = md.brokers.map(\.nodeId).filter { $0 != broker }.sorted()
                guard !others.isEmpty else { throw CLIError("no other live broker to move partitions to") }
                var load = Dictionary(uniqueKeysWithValues: others.map { ($0, 0) })
                var moving: [(String, Int32)] = []
                for t in md.topics {
                    for p in t.partitions {
                        if p.leaderId == broker { moving.append((t.name ?? "", p.partitionIndex)) } else if load[p.leaderId] != nil { load[p.leaderId]! += 1 }
                    }
                }
                var moves: [(String, Int32, Int32)] = []
                for (t, p) in moving.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
                    let target = others.min { (load[$0]!, $0) < (load[$1]!, $1) }!
                    load[target]! += 1
                    moves.append((t, p, target))
                }
                if moves.isEmpty {
                    print("Broker \(broker) leads no partition.")
                    return
                }
                try await requestMoves(client, moves)
                if noWait { return }
                try await waitForLeaders(client, timeout: timeout) { leaders in !leaders.values.contains(broker) }
                let ms = Int((ContinuousClock.now - started) / .milliseconds(1))
                print("Moved \(moves.count) partitions off broker \(broker) in \(ms) ms.")
            }
        }
    }
}

struct TopicPartitionKey: Hashable {
    var topic: String
    var partition: Int32
    init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
}

/// Sends one AlterPartitionReassignments with every move; fails naming the first refused one.
private func requestMoves(_ client: KafkaClient, _ moves: [(topic: String, partition: Int32, to: Int32)]) async throws {
    var request = AlterPartitionReassignmentsRequest()
    request.timeoutMs = 30_000
    request.topics = Dictionary(grouping: moves, by: \.topic).sorted { $0.key < $1.key }.map { name, ms in
        var t = AlterPartitionReassignmentsRequest.ReassignableTopic()
        t.name = name
        t.partitions = ms.map { m in
            var p = AlterPartitionReassignmentsRequest.ReassignableTopic.ReassignablePartition()
            p.partitionIndex = m.partition
            p.replicas = [m.to]
            return p
        }
        return t
    }
    let response = try await client.controller().send(request)
    if response.errorCode != 0 {
        throw KafkaClientError(kafka: response.errorCode, "cannot reassign", brokerMessage: response.errorMessage)
    }
    for t in response.responses {
        for p in t.partitions where p.errorCode != 0 {
            throw KafkaClientError(kafka: p.errorCode, "cannot move \(t.name)-\(p.partitionIndex)", brokerMessage: p.errorMessage)
        }
    }
}

/// Polls metadata until `done` holds for the partition leaders (every topic), or the timeout.
private func waitForLeaders(_ client: KafkaClient, timeout: Double, _ done: ([TopicPartitionKey: Int32]) -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
    while true {
        if let md = try? await client.metadata(topics: nil) {
            var leaders: [TopicPartitionKey: Int32] = [:]
            for t in md.topics { for p in t.partitions { leaders[TopicPartitionKey(t.name ?? "", p.partitionIndex)] = p.leaderId } }
            if done(leaders) { return }
        }
        if ContinuousClock.now >= deadline { throw CLIError("the move did not finish within \(timeout) s") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
