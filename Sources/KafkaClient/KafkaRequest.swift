import KafkaProtocol

/// A request body paired with the body the broker answers it with, so that
/// `KafkaConnection.send(_:)` returns the right type.
public protocol KafkaRequest: KafkaMessage {
    associatedtype Response: KafkaMessage
}

extension AddOffsetsToTxnRequest: KafkaRequest { public typealias Response = AddOffsetsToTxnResponse }
extension AddPartitionsToTxnRequest: KafkaRequest { public typealias Response = AddPartitionsToTxnResponse }
extension AlterConfigsRequest: KafkaRequest { public typealias Response = AlterConfigsResponse }
extension AlterPartitionReassignmentsRequest: KafkaRequest { public typealias Response = AlterPartitionReassignmentsResponse }
extension ApiVersionsRequest: KafkaRequest { public typealias Response = ApiVersionsResponse }
extension ConsumerGroupDescribeRequest: KafkaRequest { public typealias Response = ConsumerGroupDescribeResponse }
extension ConsumerGroupHeartbeatRequest: KafkaRequest { public typealias Response = ConsumerGroupHeartbeatResponse }
extension CreateAclsRequest: KafkaRequest { public typealias Response = CreateAclsResponse }
extension CreatePartitionsRequest: KafkaRequest { public typealias Response = CreatePartitionsResponse }
extension CreateTopicsRequest: KafkaRequest { public typealias Response = CreateTopicsResponse }
extension DeleteAclsRequest: KafkaRequest { public typealias Response = DeleteAclsResponse }
extension DeleteGroupsRequest: KafkaRequest { public typealias Response = DeleteGroupsResponse }
extension DeleteRecordsRequest: KafkaRequest { public typealias Response = DeleteRecordsResponse }
extension DeleteTopicsRequest: KafkaRequest { public typealias Response = DeleteTopicsResponse }
extension DescribeAclsRequest: KafkaRequest { public typealias Response = DescribeAclsResponse }
extension DescribeClusterRequest: KafkaRequest { public typealias Response = DescribeClusterResponse }
extension DescribeConfigsRequest: KafkaRequest { public typealias Response = DescribeConfigsResponse }
extension DescribeGroupsRequest: KafkaRequest { public typealias Response = DescribeGroupsResponse }
extension DescribeLogDirsRequest: KafkaRequest { public typealias Response = DescribeLogDirsResponse }
extension DescribeProducersRequest: KafkaRequest { public typealias Response = DescribeProducersResponse }
extension DescribeTopicPartitionsRequest: KafkaRequest { public typealias Response = DescribeTopicPartitionsResponse }
extension DescribeTransactionsRequest: KafkaRequest { public typealias Response = DescribeTransactionsResponse }
extension EndTxnRequest: KafkaRequest { public typealias Response = EndTxnResponse }
extension FetchRequest: KafkaRequest { public typealias Response = FetchResponse }
extension FindCoordinatorRequest: KafkaRequest { public typealias Response = FindCoordinatorResponse }
extension HeartbeatRequest: KafkaRequest { public typealias Response = HeartbeatResponse }
extension IncrementalAlterConfigsRequest: KafkaRequest { public typealias Response = IncrementalAlterConfigsResponse }
extension InitProducerIdRequest: KafkaRequest { public typealias Response = InitProducerIdResponse }
extension JoinGroupRequest: KafkaRequest { public typealias Response = JoinGroupResponse }
extension LeaveGroupRequest: KafkaRequest { public typealias Response = LeaveGroupResponse }
extension ListGroupsRequest: KafkaRequest { public typealias Response = ListGroupsResponse }
extension ListOffsetsRequest: KafkaRequest { public typealias Response = ListOffsetsResponse }
extension ListPartitionReassignmentsRequest: KafkaRequest { public typealias Response = ListPartitionReassignmentsResponse }
extension ListTransactionsRequest: KafkaRequest { public typealias Response = ListTransactionsResponse }
extension MetadataRequest: KafkaRequest { public typealias Response = MetadataResponse }
extension OffsetCommitRequest: KafkaRequest { public typealias Response = OffsetCommitResponse }
extension OffsetDeleteRequest: KafkaRequest { public typealias Response = OffsetDeleteResponse }
extension OffsetFetchRequest: KafkaRequest { public typealias Response = OffsetFetchResponse }
extension OffsetForLeaderEpochRequest: KafkaRequest { public typealias Response = OffsetForLeaderEpochResponse }
extension ProduceRequest: KafkaRequest { public typealias Response = ProduceResponse }
extension SaslAuthenticateRequest: KafkaRequest { public typealias Response = SaslAuthenticateResponse }
extension SaslHandshakeRequest: KafkaRequest { public typealias Response = SaslHandshakeResponse }
extension SyncGroupRequest: KafkaRequest { public typealias Response = SyncGroupResponse }
extension TxnOffsetCommitRequest: KafkaRequest { public typealias Response = TxnOffsetCommitResponse }
extension ReleaseStreamsRequest: KafkaRequest { public typealias Response = ReleaseStreamsResponse }
extension WriteTxnMarkersRequest: KafkaRequest { public typealias Response = WriteTxnMarkersResponse }
