import KafkaProtocol
import Metadata

/// CreatePartitions, with the checks and messages of Kafka's controller
/// (`ReplicationControlManager.createPartitions`, `ControllerApis.createPartitions`).
extension Broker {
    /// Kafka's cap on the records of one controller operation: a request that would add more
    /// partitions than this fails as a whole with POLICY_VIOLATION.
    static let maxPartitionsPerRequest = 10_000

    func createPartitions(_ r: CreatePartitionsRequest) async -> CreatePartitionsResponse {
        var resp = CreatePartitionsResponse()
        var counts: [String: Int] = [:]
        for t in r.topics { counts[t.name, default: 0] += 1 }
        var additional = 0
        for t in r.topics where counts[t.name] == 1 {
            if let state = topic(t.name) { additional += max(0, Int(t.count) - state.streamIds.count) }
        }
        var answered = Set<String>()
        for t in r.topics where answered.insert(t.name).inserted {
            var out = CreatePartitionsResponse.CreatePartitionsTopicResult()
            out.name = t.name
            do {
                if counts[t.name, default: 0] > 1 { throw AdminFailure(.invalidRequest, "Duplicate topic name.") }
                if additional > Self.maxPartitionsPerRequest {
                    throw AdminFailure(.policyViolation, "Unable to perform excessively large batch operation.")
                }
                try await addPartitions(t, validateOnly: r.validateOnly)
            } catch let f as AdminFailure {
                out.errorCode = f.code.rawValue
                out.errorMessage = f.message
            } catch {
                logger.error("create partitions failed", metadata: ["topic": "\(t.name)", "error": "\(error)"])
                out.errorCode = ErrorCode.unknownServerError.rawValue
                out.errorMessage = "\(error)"
            }
            resp.results.append(out)
        }
        return resp
    }

    /// Grows a topic: the new partitions' streams are stored, then opened, and only then
    /// published in the topic table, so Metadata lists a partition once it can take produce.
    private func addPartitions(_ t: CreatePartitionsRequest.CreatePartitionsTopic, validateOnly: Bool) async throws {
        try await topicLock.withLock {
            guard let state = self.topic(t.name) else {
                throw AdminFailure(.unknownTopicOrPartition, "This server does not host this topic-partition.")
            }
            let current = state.streamIds.count
            if Int(t.count) == current {
                throw AdminFailure(.invalidPartitions, "Topic already has \(current) partition(s).")
            }
            if Int(t.count) < current {
                throw AdminFailure(.invalidPartitions,
                                    "The topic \(t.name) currently has \(current) partition(s); \(t.count) would not be an increase.")
            }
            let added = Int(t.count) - current
            if let assignments = t.assignments {
                if assignments.count != added {
                    throw AdminFailure(.invalidReplicaAssignment,
                                        "Attempted to add \(added) additional partition(s), but only \(assignments.count) assignment(s) were specified.")
                }
                for a in assignments { try checkAssignment(a.brokerIds) }
            }
            if validateOnly { return }
            let record = try await metadata.addPartitions(name: t.name, count: Int(t.count))
            topicTable.withLockedValue { $0[t.name]?.streamIds = record.streamIds }
            try await place(newStreams: Array(record.streamIds.dropFirst(current).filter { $0 >= 0 }))
            logger.info("added partitions", metadata: ["topic": "\(t.name)", "partitions": "\(record.streamIds.count)"])
        }
    }

    /// Kafka's checks of a manual assignment; this broker is the only one, and every
    /// partition has one replica (itself).
    private func checkAssignment(_ brokerIds: [Int32]) throws {
        if brokerIds.isEmpty {
            throw AdminFailure(.invalidReplicaAssignment, "The manual partition assignment includes an empty replica list.")
        }
        var previous: Int32?
        for id in brokerIds.sorted() {
            if id != config.nodeId {
                throw AdminFailure(.invalidReplicaAssignment,
                                    "The manual partition assignment includes broker \(id), but no such broker is registered.")
            }
            if id == previous {
                throw AdminFailure(.invalidReplicaAssignment, "The manual partition assignment includes the broker \(id) more than once.")
            }
            previous = id
        }
        if brokerIds.count != 1 {
            throw AdminFailure(.invalidReplicaAssignment,
                                "The manual partition assignment includes a partition with \(brokerIds.count) replica(s), but this is not consistent with previous partitions, which have 1 replica(s).")
        }
    }
}
