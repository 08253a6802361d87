import KafkaProtocol

/// The `consumer` rebalance protocol (KIP-848): ConsumerGroupHeartbeat, ConsumerGroupDescribe.
///
/// Tern does not run that protocol yet (issue 7), so both answer as KafkaApis does when
/// `isConsumerGroupProtocolEnabled()` is false: the request's error response with
/// UNSUPPORTED_VERSION. Clients read it as "use the classic protocol": librdkafka's and the
/// Java admin client's describe of consumer groups fall back to DescribeGroups on it.
extension Broker {
    func consumerGroupHeartbeat(_ r: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
        var resp = ConsumerGroupHeartbeatResponse()
        resp.errorCode = ErrorCode.unsupportedVersion.rawValue
        return resp
    }

    func consumerGroupDescribe(_ r: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
        var resp = ConsumerGroupDescribeResponse()
        resp.groups = r.groupIds.map { id in
            var g = ConsumerGroupDescribeResponse.DescribedGroup()
            g.groupId = id
            g.errorCode = ErrorCode.unsupportedVersion.rawValue
            return g
        }
        return resp
    }
}
