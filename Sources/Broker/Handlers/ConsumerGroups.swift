import KafkaProtocol

/// The `consumer` rebalance protocol (KIP-848): ConsumerGroupHeartbeat, ConsumerGroupDescribe,
/// answered by the group coordinator (`Groups/ConsumerGroupStateMachine.swift`).
///
/// With `group.coordinator.rebalance.protocols` lacking `consumer`, both answer as KafkaApis
/// does when `isConsumerGroupProtocolEnabled()` is false: UNSUPPORTED_VERSION. Clients read
/// it as "use the classic protocol".
extension Broker {
    /// The broker's topics as the coordinator sees them (Kafka's metadata image).
    func consumerGroupTopics() -> [ConsumerGroupTopic] {
        allTopics().map { ConsumerGroupTopic(name: $0.name, id: $0.id, partitions: Int32($0.streamIds.count)) }
    }

    func consumerGroupHeartbeat(_ r: ConsumerGroupHeartbeatRequest, header: RequestHeader, clientHost: String) -> ConsumerGroupHeartbeatResponse {
        guard config.groupCoordinator.consumerProtocolEnabled else {
            var resp = ConsumerGroupHeartbeatResponse()
            resp.errorCode = ErrorCode.unsupportedVersion.rawValue
            return resp
        }
        return groups.consumerHeartbeat(r, version: header.apiVersion, clientId: header.clientId ?? "", clientHost: clientHost,
                                        topics: consumerGroupTopics())
    }

    func consumerGroupDescribe(_ r: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
        var resp = ConsumerGroupDescribeResponse()
        let enabled = config.groupCoordinator.consumerProtocolEnabled
        var names: [KafkaUUID: String] = [:]
        for t in allTopics() { names[t.id] = t.name }
        resp.groups = r.groupIds.map { id in
            guard enabled else {
                var g = ConsumerGroupDescribeResponse.DescribedGroup()
                g.groupId = id
                g.errorCode = ErrorCode.unsupportedVersion.rawValue
                return g
            }
            var g = groups.consumerDescribe(id, topicNames: names)
            if r.includeAuthorizedOperations { g.authorizedOperations = AuthorizedOperations.group }
            return g
        }
        return resp
    }
}
