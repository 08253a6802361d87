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
            abstract: "Move every partition off a broker and keep new ones off it (broker.draining).",
            discussion: """
                Sets the broker's dynamic config broker.draining=true (IncrementalAlterConfigs, sent to that broker): \
                the controller moves its partitions to the other live brokers, fewest partitions first, and places \
                or balances none onto it until the flag is cleared (--undo). The flag outlives the broker's restarts. \
                Waits until the broker leads none (--no-wait: only set the flag).
                """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "The broker (node id) to drain.") var broker: Int32
        @Flag(help: "Clear the flag: the broker takes partitions again (from new topics and the balancer).") var undo = false
        @Flag(name: .customLong("no-wait"), help: "Return once the flag is set.") var noWait = false
        @Option(help: "Seconds to wait for the moves.") var timeout: Double = 120

        func run() async throws {
            try await client.withClient { client in
                let started = ContinuousClock.now
                var entry = IncrementalAlterConfigsRequest.AlterConfigsResource.AlterableConfig()
                entry.name = "broker.draining"
                entry.configOperation = 0  // SET
                entry.value = undo ? "false" : "true"
                var resource = IncrementalAlterConfigsRequest.AlterConfigsResource()
                resource.resourceType = 4  // BROKER
                resource.resourceName = String(broker)
                resource.configs = [entry]
                var request = IncrementalAlterConfigsRequest()
                request.resources = [resource]
                // A broker's own configs are changed through that broker, as Kafka's admin client does.
                _ = try await client.metadata(topics: [])
                let response = try await client.connection(node: broker).send(request)
                for r in response.responses where r.errorCode != 0 {
                    throw KafkaClientError(kafka: r.errorCode, "cannot \(undo ? "undrain" : "drain") broker \(broker)", brokerMessage: r.errorMessage)
                }
                if undo {
                    print("Broker \(broker) is no longer draining.")
                    return
                }
                if noWait { return }
                try await waitForLeaders(client, timeout: timeout) { leaders in !leaders.values.contains(broker) && !leaders.values.contains(-1) }
                let ms = Int((ContinuousClock.now - started) / .milliseconds(1))
                print("Broker \(broker) leads no partition (after \(ms) ms); it stays drained until `tern admin drain \(broker) --undo`.")
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
