import ArgumentParser
import KafkaClient
import KafkaProtocol

/// `tern topics …`: topic administration over the Kafka protocol, like kafka-topics.sh.
struct Topics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Create, list, describe, alter and delete topics on a running broker.",
        subcommands: [Create.self, List.self, Describe.self, Alter.self, Delete.self])

    /// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
    static let topicResource: Int8 = 2

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a topic.",
            discussion: "Prints 'Created topic NAME.' Fails with TOPIC_ALREADY_EXISTS if it exists, unless --if-not-exists.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The topic's name.") var name: String
        @Option(help: "Number of partitions (default: the broker's num.partitions).") var partitions: Int32?
        @Option(name: .customLong("replication-factor"), help: "Replication factor (default: the broker's default.replication.factor).")
        var replicationFactor: Int16?
        @Option(name: .customLong("config"), help: ArgumentHelp("A topic config, e.g. retention.ms=3600000 (repeatable).", valueName: "key=value"))
        var configs: [String] = []
        @Flag(name: .customLong("if-not-exists"), help: "Succeed quietly if the topic exists.") var ifNotExists = false

        func validate() throws {
            if let partitions, partitions < 1 { throw ValidationError("--partitions must be at least 1") }
            if let replicationFactor, replicationFactor < 1 { throw ValidationError("--replication-factor must be at least 1") }
            _ = try parseConfigs(configs, flag: "--config")
        }

        func run() async throws {
            var topic = CreateTopicsRequest.CreatableTopic()
            topic.name = name
            topic.numPartitions = partitions ?? -1
            topic.replicationFactor = replicationFactor ?? -1
            topic.configs = try parseConfigs(configs, flag: "--config").map { k, v in
                var c = CreateTopicsRequest.CreatableTopic.CreatableTopicConfig()
                c.name = k
                c.value = v
                return c
            }
            var request = CreateTopicsRequest()
            request.topics = [topic]
            request.timeoutMs = 30_000
            let result = try await client.withClient { client in
                try await client.controller().send(request)
            }
            guard let r = result.topics.first(where: { $0.name == name }) else {
                throw CLIError("the broker's CreateTopics response does not mention topic '\(name)'")
            }
            if r.errorCode == ErrorCode.topicAlreadyExists.rawValue && ifNotExists { return }
            guard r.errorCode == 0 else {
                throw KafkaClientError(kafka: r.errorCode, "cannot create topic '\(name)'", brokerMessage: r.errorMessage)
            }
            print("Created topic \(name).")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List topic names, one per line.")

        @OptionGroup var client: ClientOptions

        func run() async throws {
            let metadata = try await client.withClient { try await $0.metadata(topics: nil) }
            for name in metadata.topics.compactMap(\.name).sorted() { print(name) }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Describe topics: id, partitions, leaders, replicas and configs.",
            discussion: """
            Prints kafka-topics.sh's layout: a line per topic (TopicId, PartitionCount, \
            ReplicationFactor, Configs) and a line per partition (Leader, Replicas, Isr). \
            Configs lists those not at their default, or all with --all-configs.
            """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "Topics to describe (default: all).") var names: [String] = []
        @Flag(name: .customLong("all-configs"), help: "List every config, defaults included.") var allConfigs = false

        func run() async throws {
            let (metadata, configs) = try await client.withClient { client in
                let metadata = try await client.metadata(topics: names.isEmpty ? nil : names)
                let found = metadata.topics.filter { $0.errorCode == 0 }.compactMap(\.name)
                var configs: [String: [DescribeConfigsResponse.DescribeConfigsResult.DescribeConfigsResourceResult]] = [:]
                let conn = try await client.anyConnection()
                if !found.isEmpty && conn.supports(.describeConfigs) {
                    var request = DescribeConfigsRequest()
                    request.resources = found.map {
                        var r = DescribeConfigsRequest.DescribeConfigsResource()
                        r.resourceType = Topics.topicResource
                        r.resourceName = $0
                        r.configurationKeys = nil
                        return r
                    }
                    for r in try await conn.send(request).results where r.errorCode == 0 { configs[r.resourceName] = r.configs }
                }
                return (metadata, configs)
            }
            var errors: [String] = []
            let order = names.isEmpty ? metadata.topics.compactMap(\.name).sorted() : names
            for name in order {
                do {
                    let t = try topicMetadata(metadata, name, action: "describe")
                    let partitions = t.partitions.sorted { $0.partitionIndex < $1.partitionIndex }
                    let shown = (configs[name] ?? []).filter { allConfigs || $0.configSource != 5 }  // 5 = DEFAULT_CONFIG
                    let configText = shown.map { "\($0.name)=\($0.isSensitive ? "<sensitive>" : $0.value ?? "null")" }.joined(separator: ",")
                    print("Topic: \(name)\tTopicId: \(t.topicId)\tPartitionCount: \(partitions.count)\tReplicationFactor: \(partitions.first?.replicaNodes.count ?? 0)\tConfigs: \(configText)")
                    for p in partitions {
                        let leader = p.leaderId < 0 ? "none" : String(p.leaderId)
                        print("\tTopic: \(name)\tPartition: \(p.partitionIndex)\tLeader: \(leader)\tReplicas: \(p.replicaNodes.map(String.init).joined(separator: ","))\tIsr: \(p.isrNodes.map(String.init).joined(separator: ","))")
                    }
                } catch {
                    errors.append("\(error)")
                }
            }
            if !errors.isEmpty { throw CLIError(errors.joined(separator: "\n")) }
        }
    }

    struct Alter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set or delete topic configs (IncrementalAlterConfigs).",
            discussion: "A deleted config returns to its default. Prints 'Updated config for topic NAME.'")

        @OptionGroup var client: ClientOptions
        @Argument(help: "The topic's name.") var name: String
        @Option(name: .customLong("config"), help: ArgumentHelp("Set a config (repeatable).", valueName: "key=value"))
        var set: [String] = []
        @Option(name: .customLong("delete-config"), help: ArgumentHelp("Delete a config override (repeatable).", valueName: "key"))
        var delete: [String] = []

        func validate() throws {
            if set.isEmpty && delete.isEmpty { throw ValidationError("give at least one --config KEY=VALUE or --delete-config KEY") }
            _ = try parseConfigs(set, flag: "--config")
        }

        func run() async throws {
            var resource = IncrementalAlterConfigsRequest.AlterConfigsResource()
            resource.resourceType = Topics.topicResource
            resource.resourceName = name
            for (k, v) in try parseConfigs(set, flag: "--config") {
                var c = IncrementalAlterConfigsRequest.AlterConfigsResource.AlterableConfig()
                c.name = k
                c.configOperation = 0  // SET
                c.value = v
                resource.configs.append(c)
            }
            for k in delete {
                var c = IncrementalAlterConfigsRequest.AlterConfigsResource.AlterableConfig()
                c.name = k
                c.configOperation = 1  // DELETE
                c.value = nil
                resource.configs.append(c)
            }
            var request = IncrementalAlterConfigsRequest()
            request.resources = [resource]
            let response = try await client.withClient { try await $0.anyConnection().send(request) }
            guard let r = response.responses.first(where: { $0.resourceName == name }) else {
                throw CLIError("the broker's IncrementalAlterConfigs response does not mention topic '\(name)'")
            }
            guard r.errorCode == 0 else {
                throw KafkaClientError(kafka: r.errorCode, "cannot alter topic '\(name)'", brokerMessage: r.errorMessage)
            }
            print("Updated config for topic \(name).")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete topics.",
            discussion: "Prints 'Deleted topic NAME.' for each. Fails with UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist, unless --if-exists.")

        @OptionGroup var client: ClientOptions
        @Argument(help: "Topics to delete.") var names: [String]
        @Flag(name: .customLong("if-exists"), help: "Skip topics that do not exist.") var ifExists = false

        func run() async throws {
            let response = try await client.withClient { client in
                let conn = try await client.controller()
                let version = try conn.version(for: .deleteTopics)
                var request = DeleteTopicsRequest()
                request.timeoutMs = 30_000
                if version >= 6 {
                    request.topics = names.map {
                        var t = DeleteTopicsRequest.DeleteTopicState()
                        t.name = $0
                        return t
                    }
                } else {
                    request.topicNames = names
                }
                return try await conn.send(request, version: version)
            }
            var errors: [String] = []
            for name in names {
                guard let r = response.responses.first(where: { $0.name == name }) else {
                    errors.append("the broker's DeleteTopics response does not mention topic '\(name)'")
                    continue
                }
                if r.errorCode == 0 {
                    print("Deleted topic \(name).")
                } else if !(ifExists && r.errorCode == ErrorCode.unknownTopicOrPartition.rawValue) {
                    errors.append("\(KafkaClientError(kafka: r.errorCode, "cannot delete topic '\(name)'", brokerMessage: r.errorMessage))")
                }
            }
            if !errors.isEmpty { throw CLIError(errors.joined(separator: "\n")) }
        }
    }
}
