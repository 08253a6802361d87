import KafkaProtocol

/// Partition reassignment with one broker (moves between brokers arrive with clusters,
/// issue 9). Kafka forwards these to the KRaft controller; its
/// `ReplicationControlManager` decides, and with one registered broker a reassignment can
/// never be in progress.
extension Broker {
    /// ReplicationControlManager.alterPartitionReassignments, per partition: an unknown topic
    /// or partition is UNKNOWN_TOPIC_OR_PARTITION; a cancellation (null replicas) finds no
    /// reassignment in progress; a target list must pass validateManualPartitionAssignment
    /// (not empty, registered brokers only, no repeats), after which the only possible list,
    /// [this broker], equals the current one and needs no change: success.
    func alterPartitionReassignments(_ r: AlterPartitionReassignmentsRequest) -> AlterPartitionReassignmentsResponse {
        typealias PartitionResponse = AlterPartitionReassignmentsResponse.ReassignableTopicResponse.ReassignablePartitionResponse
        var resp = AlterPartitionReassignmentsResponse()
        resp.errorMessage = nil
        resp.responses = r.topics.map { t in
            var tr = AlterPartitionReassignmentsResponse.ReassignableTopicResponse()
            tr.name = t.name
            tr.partitions = t.partitions.map { p in
                var pr = PartitionResponse()
                pr.partitionIndex = p.partitionIndex
                let (code, message) = reassign(topic: t.name, partition: p.partitionIndex, replicas: p.replicas)
                pr.errorCode = code.rawValue
                pr.errorMessage = message
                return pr
            }
            return tr
        }
        return resp
    }

    private func reassign(topic name: String, partition: Int32, replicas: [Int32]?) -> (ErrorCode, String?) {
        guard topic(name) != nil else { return (.unknownTopicOrPartition, "Unable to find a topic named \(name).") }
        guard streamId(name, partition) != nil else { return (.unknownTopicOrPartition, "Unable to find partition \(name):\(partition).") }
        guard let replicas else {
            // NoReassignmentInProgressException carries the error's own message, which
            // ApiError.fromThrowable leaves out.
            return (.noReassignmentInProgress, nil)
        }
        if replicas.isEmpty {
            return (.invalidReplicaAssignment, "The manual partition assignment includes an empty replica list.")
        }
        var previous: Int32?
        for id in replicas.sorted() {
            if id != config.nodeId {
                return (.invalidReplicaAssignment, "The manual partition assignment includes broker \(id), but no such broker is registered.")
            }
            if id == previous {
                return (.invalidReplicaAssignment, "The manual partition assignment includes the broker \(id) more than once.")
            }
            previous = id
        }
        return (.none, nil)
    }

    /// ReplicationControlManager.listPartitionReassignments: only partitions being reassigned
    /// are listed, and none is.
    func listPartitionReassignments(_ r: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
        var resp = ListPartitionReassignmentsResponse()
        resp.errorMessage = nil
        return resp
    }
}
