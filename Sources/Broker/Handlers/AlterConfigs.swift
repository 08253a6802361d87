import KafkaProtocol
import Logging
import Metadata

/// AlterConfigs (the whole set of a resource's overrides) and IncrementalAlterConfigs (key by
/// key), answered as a Kafka broker in KRaft mode answers them: the broker's checks of
/// `ConfigAdminManager.preprocess` first, then the controller's (`ConfigurationControlManager`).
///
/// Only TOPIC resources can change. A Tern broker has no dynamic broker configs and no
/// runtime log levels, so BROKER and BROKER_LOGGER changes get the errors Kafka gives for a
/// config it cannot change dynamically and for a logger it does not have.
extension Broker {
    static let brokerLoggerResource: Int8 = 8

    /// IncrementalAlterConfigs' operation types (Kafka's `AlterConfigOp.OpType`).
    enum ConfigOperation: Int8, CustomStringConvertible {
        case set = 0, delete = 1, append = 2, subtract = 3

        var description: String {
            switch self {
            case .set: "SET"
            case .delete: "DELETE"
            case .append: "APPEND"
            case .subtract: "SUBTRACT"
            }
        }
    }

    /// One resource of either request: its changes as (name, operation, value), where the
    /// operation is the raw `ConfigOperation` (SET for every entry of a legacy AlterConfigs).
    struct ConfigChange {
        var resourceType: Int8
        var resourceName: String
        var entries: [(name: String, operation: Int8, value: String?)]
    }

    /// A per-resource (per-topic) answer of an admin request that is not success.
    struct AdminFailure: Error {
        var code: ErrorCode
        var message: String
        init(_ code: ErrorCode, _ message: String) {
            self.code = code
            self.message = message
        }
    }

    func alterConfigs(_ r: AlterConfigsRequest) async -> AlterConfigsResponse {
        let changes = r.resources.map { res in
            ConfigChange(resourceType: res.resourceType, resourceName: res.resourceName,
                         entries: res.configs.map { ($0.name, ConfigOperation.set.rawValue, $0.value) })
        }
        var resp = AlterConfigsResponse()
        for (change, failure) in await applyConfigChanges(changes, replace: true, validateOnly: r.validateOnly) {
            var out = AlterConfigsResponse.AlterConfigsResourceResponse()
            out.resourceType = change.resourceType
            out.resourceName = change.resourceName
            out.errorCode = failure?.code.rawValue ?? 0
            out.errorMessage = failure?.message
            resp.responses.append(out)
        }
        return resp
    }

    func incrementalAlterConfigs(_ r: IncrementalAlterConfigsRequest) async -> IncrementalAlterConfigsResponse {
        let changes = r.resources.map { res in
            ConfigChange(resourceType: res.resourceType, resourceName: res.resourceName,
                         entries: res.configs.map { ($0.name, $0.configOperation, $0.value) })
        }
        var resp = IncrementalAlterConfigsResponse()
        for (change, failure) in await applyConfigChanges(changes, replace: false, validateOnly: r.validateOnly) {
            var out = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse()
            out.resourceType = change.resourceType
            out.resourceName = change.resourceName
            out.errorCode = failure?.code.rawValue ?? 0
            out.errorMessage = failure?.message
            resp.responses.append(out)
        }
        return resp
    }

    /// Each resource's outcome (nil: success), in request order. `replace`: legacy
    /// AlterConfigs, whose entries become the resource's whole set of overrides.
    private func applyConfigChanges(_ changes: [ConfigChange], replace: Bool, validateOnly: Bool) async -> [(ConfigChange, AdminFailure?)] {
        var seen: [String: Int] = [:]
        for c in changes { seen["\(c.resourceType):\(c.resourceName)", default: 0] += 1 }
        var out: [(ConfigChange, AdminFailure?)] = []
        for change in changes {
            do {
                if seen["\(change.resourceType):\(change.resourceName)", default: 0] > 1 {
                    throw AdminFailure(.invalidRequest, "Each resource must appear at most once.")
                }
                try await applyConfigChange(change, replace: replace, validateOnly: validateOnly)
                out.append((change, nil))
            } catch let f as AdminFailure {
                out.append((change, f))
            } catch {
                logger.error("alter configs failed", metadata: ["resource": "\(change.resourceName)", "error": "\(error)"])
                out.append((change, AdminFailure(.unknownServerError, "\(error)")))
            }
        }
        return out
    }

    private func applyConfigChange(_ change: ConfigChange, replace: Bool, validateOnly: Bool) async throws {
        var names = Set<String>()
        for e in change.entries where !names.insert(e.name).inserted {
            throw AdminFailure(.invalidRequest, "Error due to duplicate config keys")
        }
        let nulls = change.entries.filter { $0.value == nil && (replace || $0.operation != ConfigOperation.delete.rawValue) }
        if !nulls.isEmpty {
            throw AdminFailure(.invalidRequest, "Null value not supported for : " + nulls.map(\.name).joined(separator: ", "))
        }
        switch change.resourceType {
        case Self.topicResource:
            try await alterTopicConfigs(change, replace: replace, validateOnly: validateOnly)
        case Self.brokerResource:
            try await alterBrokerConfigs(change, validateOnly: validateOnly)
        case Self.brokerLoggerResource where !replace:
            try checkBrokerLoggerChange(change)
        default:
            // Legacy AlterConfigs never took BROKER_LOGGER; CLIENT_METRICS and GROUP configs
            // do not exist here yet.
            throw AdminFailure(.invalidRequest, "Unknown resource type \(change.resourceType)")
        }
    }

    // MARK: topics

    private func alterTopicConfigs(_ change: ConfigChange, replace: Bool, validateOnly: Bool) async throws {
        let name = change.resourceName
        if name.isEmpty { throw AdminFailure(.invalidRequest, "Default topic resources are not allowed.") }
        if !TopicName.isValid(name) { throw AdminFailure(.invalidTopicException, "Topic name \(name) is illegal") }
        // One change at a time: an incremental change reads the overrides it modifies.
        try await topicLock.withLock {
            let current = self.topic(name)?.configs ?? [:]
            var updated: [String: String] = replace ? [:] : current
            for e in change.entries {
                guard let op = ConfigOperation(rawValue: e.operation) else {
                    throw AdminFailure(.invalidRequest, "Unknown operation type \(e.operation)")
                }
                switch op {
                case .set:
                    updated[e.name] = e.value
                case .delete:
                    updated[e.name] = nil
                case .append, .subtract:
                    guard TopicConfigs.listTyped.contains(e.name) else {
                        throw AdminFailure(.invalidConfig, "Can't \(op) to key \(e.name) because its type is not LIST.")
                    }
                    let base = updated[e.name] ?? TopicConfigs.defaults(messageMaxBytes: config.messageMaxBytes, retentionBytes: config.retentionBytes).first { $0.0 == e.name }?.1 ?? ""
                    var parts = base.split(separator: ",").map(String.init)
                    let operands = (e.value ?? "").split(separator: ",").map(String.init)
                    if op == .append {
                        for v in operands where !parts.contains(v) { parts.append(v) }
                    } else {
                        for v in operands { if let i = parts.firstIndex(of: v) { parts.remove(at: i) } }
                    }
                    updated[e.name] = parts.joined(separator: ",")
                }
            }
            // Kafka validates the whole resulting set, then checks that the topic exists.
            for key in updated.keys.sorted() {
                if let problem = TopicConfigs.validate(key, updated[key]) { throw AdminFailure(.invalidConfig, problem) }
            }
            guard self.topic(name) != nil else {
                throw AdminFailure(.unknownTopicOrPartition, "The topic '\(name)' does not exist.")
            }
            if validateOnly || updated == current { return }
            do {
                try await metadata.setTopicConfigs(name: name, configs: updated)
            } catch let e as MetadataError where e.code == .notFound {
                throw AdminFailure(.unknownTopicOrPartition, "The topic '\(name)' does not exist.")
            }
            topicTable.withLockedValue { $0[name]?.configs = updated }
            logger.info("altered topic configs", metadata: ["topic": "\(name)", "configs": "\(updated.sorted { $0.key < $1.key })"])
        }
    }

    // MARK: broker, broker logger

    /// Kafka's check that a BROKER or BROKER_LOGGER resource names this broker.
    private func checkNodeId(_ name: String) throws {
        guard let id = Int32(name) else { throw AdminFailure(.invalidRequest, "Node id must be an integer, but it is: \(name)") }
        guard id == config.nodeId else {
            throw AdminFailure(.invalidRequest, "Unexpected broker id, expected \(config.nodeId), but received \(name)")
        }
    }

    /// The one dynamic broker config: `broker.draining` of the broker named (not the
    /// cluster-wide default), true or false; deleting it is false.
    static let drainingConfig = "broker.draining"

    /// Tern reads its other broker configs once, at start: none is dynamic, so every value
    /// to set is refused as Kafka refuses a config that is not dynamic (INVALID_REQUEST,
    /// KAFKA-13609). Deleting a dynamic value that cannot exist changes nothing, so it
    /// succeeds. `broker.draining` is stored in the metadata store, for the controller.
    private func alterBrokerConfigs(_ change: ConfigChange, validateOnly: Bool) async throws {
        if !change.resourceName.isEmpty { try checkNodeId(change.resourceName) }
        var refused: [String] = []
        var draining: Bool?
        for e in change.entries {
            guard let op = ConfigOperation(rawValue: e.operation) else {
                throw AdminFailure(.invalidRequest, "Unknown operations type \(e.operation)")
            }
            if e.name == Self.drainingConfig && !change.resourceName.isEmpty {
                switch (op, e.value?.lowercased()) {
                case (.delete, _), (.set, "false"): draining = false
                case (.set, "true"): draining = true
                default:
                    throw AdminFailure(.invalidConfig, "Invalid value \(e.value ?? "null") for configuration \(e.name): expected true or false")
                }
            } else if op != .delete {
                refused.append(e.name)
            }
        }
        if !refused.isEmpty {
            throw AdminFailure(.invalidRequest, "Cannot update these configs dynamically: Set(\(refused.joined(separator: ", ")))")
        }
        guard let draining, !validateOnly else { return }
        do {
            _ = try await clusterStore.setDraining(nodeId: config.nodeId, draining)
        } catch {
            throw AdminFailure(.unknownServerError, "metadata store: \(error)")
        }
        logger.notice(draining ? "draining this broker: its partitions move to other brokers" : "no longer draining this broker")
    }

    /// Kafka's checks of a log level change (`RuntimeLoggerManager`); Tern has no loggers
    /// whose level can change at runtime, so every named logger is one that does not exist.
    private func checkBrokerLoggerChange(_ change: ConfigChange) throws {
        try checkNodeId(change.resourceName)
        for e in change.entries {
            switch ConfigOperation(rawValue: e.operation) {
            case .set, .delete:
                throw AdminFailure(.invalidConfig, "Logger \(e.name) does not exist!")
            case .append, .subtract:
                throw AdminFailure(.invalidRequest, "\(ConfigOperation(rawValue: e.operation)!) operation is not allowed for the BROKER_LOGGER resource")
            case nil:
                throw AdminFailure(.invalidRequest, "Unknown operation type \(e.operation) is not allowed for the BROKER_LOGGER resource")
            }
        }
    }
}

extension TopicConfigs {
    /// Topic configs of Kafka's LIST type: the only ones APPEND and SUBTRACT apply to.
    static let listTyped: Set<String> = [
        "cleanup.policy", "leader.replication.throttled.replicas", "follower.replication.throttled.replicas",
    ]
}
