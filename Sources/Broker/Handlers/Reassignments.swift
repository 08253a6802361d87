import KafkaProtocol
import Metadata

/// Partition reassignment: a partition has one owner (durability comes from the object store,
/// not from replicas), so a target replica list names exactly one broker, which becomes the
/// owner. The assignment is written to the metadata store; the old owner flushes, commits and
/// releases the stream, the new one opens it at the next epoch (ClusterMembership.swift). No
/// data is copied. Kafka forwards these requests to its controller; any Tern broker writes the
/// assignment itself.
extension Broker {
    /// ReplicationControlManager.alterPartitionReassignments, per partition: an unknown topic
    /// or partition is UNKNOWN_TOPIC_OR_PARTITION; a cancellation (null replicas) puts a move in
    /// progress back to its owner, or finds none (NO_REASSIGNMENT_IN_PROGRESS); a target list
    /// must pass validateManualPartitionAssignment (not empty, registered brokers only, no
    /// repeats) and, here, name one broker.
    func alterPartitionReassignments(_ r: AlterPartitionReassignmentsRequest) async -> AlterPartitionReassignmentsResponse {
        typealias PartitionResponse = AlterPartitionReassignmentsResponse.ReassignableTopicResponse.ReassignablePartitionResponse
        var resp = AlterPartitionReassignmentsResponse()
        resp.errorMessage = nil
        let placements: [Int64: StreamPlacement]
        do {
            placements = Dictionary(uniqueKeysWithValues: try await clusterStore.streamPlacements().map { ($0.streamId, $0) })
        } catch {
            resp.errorCode = ErrorCode.unknownServerError.rawValue
            resp.errorMessage = "metadata store: \(error)"
            return resp
        }
        let registered = Set(cluster.withLockedValue { $0.status?.brokers.map(\.nodeId) } ?? [config.nodeId])
        var moves: [(streamId: Int64, node: Int32)] = []
        for t in r.topics {
            var tr = AlterPartitionReassignmentsResponse.ReassignableTopicResponse()
            tr.name = t.name
            for p in t.partitions {
                var pr = PartitionResponse()
                pr.partitionIndex = p.partitionIndex
                pr.errorMessage = nil
                switch reassignment(topic: t.name, partition: p.partitionIndex, replicas: p.replicas,
                                    placements: placements, registered: registered) {
                case .failure(let code, let message):
                    pr.errorCode = code.rawValue
                    pr.errorMessage = message
                case .move(let id, let node):
                    moves.append((id, node))
                case .unchanged:
                    break
                }
                tr.partitions.append(pr)
            }
            resp.responses.append(tr)
        }
        if !moves.isEmpty {
            do {
                try await assignAndRelease(moves)
                logger.info("partitions reassigned", metadata: ["moves": "\(moves.map { "\($0.streamId)->\($0.node)" })"])
            } catch {
                resp.errorCode = ErrorCode.unknownServerError.rawValue
                resp.errorMessage = "metadata store: \(error)"
                return resp
            }
        }
        return resp
    }

    private enum Reassignment {
        case failure(ErrorCode, String?)
        case move(Int64, Int32)
        case unchanged
    }

    private func reassignment(topic name: String, partition: Int32, replicas: [Int32]?,
                              placements: [Int64: StreamPlacement], registered: Set<Int32>) -> Reassignment {
        guard topic(name) != nil else { return .failure(.unknownTopicOrPartition, "Unable to find a topic named \(name).") }
        guard let id = streamId(name, partition), let placed = placements[id] else {
            return .failure(.unknownTopicOrPartition, "Unable to find partition \(name):\(partition).")
        }
        guard let replicas else {
            // A cancellation: the partition stays with its owner. NoReassignmentInProgressException
            // carries the error's own message, which ApiError.fromThrowable leaves out.
            guard let owner = placed.owner, placed.assigned != owner else { return .failure(.noReassignmentInProgress, nil) }
            return .move(id, owner)
        }
        if replicas.isEmpty {
            return .failure(.invalidReplicaAssignment, "The manual partition assignment includes an empty replica list.")
        }
        var previous: Int32?
        for b in replicas.sorted() {
            if !registered.contains(b) {
                return .failure(.invalidReplicaAssignment, "The manual partition assignment includes broker \(b), but no such broker is registered.")
            }
            if b == previous {
                return .failure(.invalidReplicaAssignment, "The manual partition assignment includes the broker \(b) more than once.")
            }
            previous = b
        }
        guard replicas.count == 1 else {
            return .failure(.invalidReplicaAssignment, "A partition has one broker: its data is in the object store, not in replicas.")
        }
        return placed.assigned == replicas[0] ? .unchanged : .move(id, replicas[0])
    }

    /// ReplicationControlManager.listPartitionReassignments: the partitions whose assigned
    /// broker is not (yet) the one serving them, with the target as adding and the current
    /// owner as removing. Named partitions that are not moving are left out, as Kafka does.
    func listPartitionReassignments(_ r: ListPartitionReassignmentsRequest) async -> ListPartitionReassignmentsResponse {
        typealias Topic = ListPartitionReassignmentsResponse.OngoingTopicReassignment
        var resp = ListPartitionReassignmentsResponse()
        resp.errorMessage = nil
        let placements: [StreamPlacement]
        do {
            placements = try await clusterStore.streamPlacements()
        } catch {
            resp.errorCode = ErrorCode.unknownServerError.rawValue
            resp.errorMessage = "metadata store: \(error)"
            return resp
        }
        let wanted: [String: Set<Int32>]? = r.topics.map { ts in
            Dictionary(ts.map { ($0.name, Set($0.partitionIndexes)) }, uniquingKeysWith: { $0.union($1) })
        }
        var byTopic: [String: [Topic.OngoingPartitionReassignment]] = [:]
        for p in placements {
            guard let target = p.assigned, p.owner != target else { continue }
            if let wanted, wanted[p.topic]?.contains(p.partition) != true { continue }
            var o = Topic.OngoingPartitionReassignment()
            o.partitionIndex = p.partition
            o.replicas = [target]
            o.addingReplicas = [target]
            o.removingReplicas = p.owner.map { [$0] } ?? []
            byTopic[p.topic, default: []].append(o)
        }
        resp.topics = byTopic.keys.sorted().map { name in
            var t = Topic()
            t.name = name
            t.partitions = byTopic[name]!.sorted { $0.partitionIndex < $1.partitionIndex }
            return t
        }
        return resp
    }
}
