import KafkaProtocol

/// A group as ListGroups names it.
public struct ListedGroup: Sendable, Equatable {
    public var groupId: String
    public var protocolType: String
    /// nil from a broker older than ListGroups v4, which does not say.
    public var state: String?

    public init(groupId: String, protocolType: String, state: String?) {
        self.groupId = groupId
        self.protocolType = protocolType
        self.state = state
    }
}

/// One partition's answer to ListOffsets.
public struct ListedOffset: Sendable, Equatable {
    public var errorCode: Int16
    /// -1 when no record matches (a timestamp after the last record's).
    public var offset: Int64
    public var timestamp: Int64

    public init(errorCode: Int16, offset: Int64 = -1, timestamp: Int64 = -1) {
        self.errorCode = errorCode
        self.offset = offset
        self.timestamp = timestamp
    }
}

/// Group administration: what kafka-consumer-groups.sh does through Kafka's admin client
/// (coordinator lookup, ListGroups on every broker, DescribeGroups, OffsetFetch,
/// OffsetCommit as an admin, DeleteGroups) and ListOffsets on partition leaders.
extension KafkaClient {
    /// ListOffsets timestamps that ask for the log end and the log start.
    public static let latestTimestamp: Int64 = -1
    public static let earliestTimestamp: Int64 = -2

    /// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: the request
    /// can go again once the coordinator is found anew; Kafka's admin client retries them
    /// until its timeout.
    static let coordinatorErrors: Set<Int16> = [
        ErrorCode.coordinatorLoadInProgress.rawValue, ErrorCode.coordinatorNotAvailable.rawValue, ErrorCode.notCoordinator.rawValue,
    ]
    /// Tries of a coordinator request, 200 ms × attempt apart (3 s in all).
    static let coordinatorAttempts = 6

    /// The broker that coordinates `group` (FindCoordinator, key type group), remembered
    /// until a request to it reports a coordinator error.
    public func groupCoordinator(_ group: String) async throws -> GroupCoordinator {
        if let c = groupCoordinators[group] { return c }
        var attempt = 0
        while true {
            attempt += 1
            let conn = try await anyConnection()
            let version = try conn.version(for: .findCoordinator)
            var request = FindCoordinatorRequest()
            request.keyType = 0
            if version >= 4 { request.coordinatorKeys = [group] } else { request.key = group }
            let r = try await conn.send(request, version: version)
            var code = r.errorCode, message = r.errorMessage, nodeId = r.nodeId, host = r.host, port = r.port
            if version >= 4 {
                guard let c = r.coordinators.first(where: { $0.key == group }) else {
                    throw KafkaClientError(.protocolViolation, "\(conn.address)'s FindCoordinator response does not mention group '\(group)'")
                }
                (code, message, nodeId, host, port) = (c.errorCode, c.errorMessage, c.nodeId, c.host, c.port)
            }
            if code == 0 {
                guard (1...65535).contains(port), !host.isEmpty else {
                    throw KafkaClientError(.protocolViolation, "\(conn.address) names \(host):\(port) as the coordinator of group '\(group)'")
                }
                let coordinator = GroupCoordinator(nodeId: nodeId, address: BrokerAddress(host: host, port: Int(port)))
                groupCoordinators[group] = coordinator
                return coordinator
            }
            if Self.coordinatorErrors.contains(code) && attempt < Self.coordinatorAttempts {
                try await Task.sleep(for: .milliseconds(200 * attempt))
                continue
            }
            throw KafkaClientError(kafka: code, "cannot find the coordinator of group '\(group)'", brokerMessage: message)
        }
    }

    /// Runs a request on the group's coordinator. `body` returns its result and the
    /// response's coordinator-level error code; on a coordinator error the coordinator is
    /// looked up again and the request repeated, a few times, before the result (error
    /// code and all) is handed back.
    private func onCoordinator<T>(of group: String, _ body: (KafkaConnection, GroupCoordinator) async throws -> (T, errorCode: Int16)) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let coordinator = try await groupCoordinator(group)
            let (result, code) = try await body(try await connection(to: coordinator.address), coordinator)
            guard Self.coordinatorErrors.contains(code), attempt < Self.coordinatorAttempts else { return result }
            groupCoordinators[group] = nil
            try await Task.sleep(for: .milliseconds(200 * attempt))
        }
    }

    /// Groups on every broker (ListGroups goes to each, as the admin client sends it: each
    /// broker lists the groups it coordinates). `states` filters by state (ListGroups v4+).
    /// Returns what the brokers answered and, apart, each broker's failure.
    public func listGroups(states: [String] = []) async throws -> (groups: [ListedGroup], errors: [KafkaClientError]) {
        let brokers = try await metadata(topics: []).brokers.sorted { $0.nodeId < $1.nodeId }
        var groups: [String: ListedGroup] = [:]
        var errors: [KafkaClientError] = []
        for b in brokers {
            let address = BrokerAddress(host: b.host, port: Int(b.port))
            do {
                let conn = try await connection(to: address)
                let version = try conn.version(for: .listGroups)
                if !states.isEmpty && version < 4 {
                    throw KafkaClientError(.unsupportedVersion, "the broker at \(address) cannot filter groups by state (it speaks ListGroups v\(version), states need v4)")
                }
                var request = ListGroupsRequest()
                request.statesFilter = states
                let r = try await conn.send(request, version: version)
                if r.errorCode != 0 {
                    throw KafkaClientError(kafka: r.errorCode, "cannot list the groups of broker \(b.nodeId) at \(address)")
                }
                for g in r.groups {
                    groups[g.groupId] = ListedGroup(groupId: g.groupId, protocolType: g.protocolType, state: version >= 4 ? g.groupState : nil)
                }
            } catch let e as KafkaClientError {
                errors.append(e)
            }
        }
        return (groups.keys.sorted().map { groups[$0]! }, errors)
    }

    /// DescribeGroups on the group's coordinator. A group-level error (GROUP_ID_NOT_FOUND
    /// from brokers that report unknown groups so, GROUP_AUTHORIZATION_FAILED, ...) is thrown
    /// as a Kafka error; an unknown group may instead come back in state Dead.
    public func describeGroup(_ group: String) async throws -> GroupDescription {
        let (g, coordinator) = try await onCoordinator(of: group) { conn, coordinator in
            var request = DescribeGroupsRequest()
            request.groups = [group]
            let r = try await conn.send(request)
            guard let g = r.groups.first(where: { $0.groupId == group }) else {
                throw KafkaClientError(.protocolViolation, "\(conn.address)'s DescribeGroups response does not mention group '\(group)'")
            }
            return ((g, coordinator), g.errorCode)
        }
        if g.errorCode != 0 {
            throw KafkaClientError(kafka: g.errorCode, "cannot describe group '\(group)'")
        }
        var d = GroupDescription(g)
        d.coordinator = coordinator
        return d
    }

    /// Every committed offset of the group (OffsetFetch for all topics). Partitions the
    /// coordinator answers with offset -1 have no committed offset and are left out.
    public func committedOffsets(group: String) async throws -> [TopicPartition: CommittedOffset] {
        try await onCoordinator(of: group) { conn, _ in
            let version = try conn.version(for: .offsetFetch)
            guard version >= 2 else {
                throw KafkaClientError(.unsupportedVersion, "the broker at \(conn.address) speaks OffsetFetch v\(version); fetching all of a group's offsets needs v2")
            }
            var request = OffsetFetchRequest()
            if version >= 8 {
                var g = OffsetFetchRequest.OffsetFetchRequestGroup()
                g.groupId = group
                g.topics = nil
                request.groups = [g]
            } else {
                request.groupId = group
                request.topics = nil
            }
            let r = try await conn.send(request, version: version)
            var code = r.errorCode
            var rows: [(String, Int32, Int64, Int32, String?, Int16)] = []
            if version >= 8 {
                guard let g = r.groups.first(where: { $0.groupId == group }) else {
                    throw KafkaClientError(.protocolViolation, "\(conn.address)'s OffsetFetch response does not mention group '\(group)'")
                }
                code = g.errorCode
                for t in g.topics {
                    for p in t.partitions { rows.append((t.name, p.partitionIndex, p.committedOffset, p.committedLeaderEpoch, p.metadata, p.errorCode)) }
                }
            } else {
                for t in r.topics {
                    for p in t.partitions { rows.append((t.name, p.partitionIndex, p.committedOffset, p.committedLeaderEpoch, p.metadata, p.errorCode)) }
                }
            }
            if code != 0 {
                if Self.coordinatorErrors.contains(code) { return ([:], code) }
                throw KafkaClientError(kafka: code, "cannot fetch the committed offsets of group '\(group)'")
            }
            var offsets: [TopicPartition: CommittedOffset] = [:]
            for (topic, partition, offset, epoch, metadata, error) in rows {
                let tp = TopicPartition(topic, partition)
                if error != 0 {
                    if Self.coordinatorErrors.contains(error) { return ([:], error) }
                    throw KafkaClientError(kafka: error, "cannot fetch the committed offset of \(tp) for group '\(group)'")
                }
                if offset >= 0 { offsets[tp] = CommittedOffset(offset: offset, leaderEpoch: epoch >= 0 ? epoch : nil, metadata: metadata) }
            }
            return (offsets, 0)
        }
    }

    /// Commits offsets from outside the group: generation -1, no member id, no metadata —
    /// what Kafka's admin client sends for `alterConsumerGroupOffsets`. Kafka's coordinator
    /// accepts such a commit only while the group has no members (else UNKNOWN_MEMBER_ID, or
    /// REBALANCE_IN_PROGRESS). Returns each partition's error code (0: committed).
    public func commitOffsets(group: String, _ offsets: [TopicPartition: Int64]) async throws -> [TopicPartition: Int16] {
        let byTopic = Dictionary(grouping: offsets.keys, by: \.topic)
        var request = OffsetCommitRequest()
        request.groupId = group
        request.generationIdOrMemberEpoch = -1
        request.memberId = ""
        request.groupInstanceId = nil
        request.topics = byTopic.keys.sorted().map { name in
            var t = OffsetCommitRequest.OffsetCommitRequestTopic()
            t.name = name
            t.partitions = byTopic[name]!.sorted().map { tp in
                var p = OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition()
                p.partitionIndex = tp.partition
                p.committedOffset = offsets[tp]!
                p.committedLeaderEpoch = -1
                p.committedMetadata = ""
                return p
            }
            return t
        }
        return try await onCoordinator(of: group) { conn, _ in
            let r = try await conn.send(request)
            var codes: [TopicPartition: Int16] = [:]
            for t in r.topics {
                for p in t.partitions { codes[TopicPartition(t.name, p.partitionIndex)] = p.errorCode }
            }
            if let missing = offsets.keys.sorted().first(where: { codes[$0] == nil }) {
                throw KafkaClientError(.protocolViolation, "\(conn.address)'s OffsetCommit response does not mention \(missing)")
            }
            // A coordinator error is the whole request's; the commit is safe to repeat.
            return (codes, codes.values.first(where: { Self.coordinatorErrors.contains($0) }) ?? 0)
        }
    }

    /// DeleteGroups, each group on its coordinator. Returns each group's error code (0:
    /// deleted); a group whose coordinator cannot be found gets FindCoordinator's code.
    public func deleteGroups(_ groups: [String]) async throws -> [String: Int16] {
        var results: [String: Int16] = [:]
        for group in groups where results[group] == nil {
            do {
                results[group] = try await onCoordinator(of: group) { conn, _ in
                    var request = DeleteGroupsRequest()
                    request.groupsNames = [group]
                    let r = try await conn.send(request)
                    guard let result = r.results.first(where: { $0.groupId == group }) else {
                        throw KafkaClientError(.protocolViolation, "\(conn.address)'s DeleteGroups response does not mention group '\(group)'")
                    }
                    return (result.errorCode, result.errorCode)
                }
            } catch let e as KafkaClientError where e.code == .kafka {
                results[group] = e.kafkaErrorCode
            }
        }
        return results
    }

    /// The offset of each partition at `timestamp` (`latestTimestamp`, `earliestTimestamp`,
    /// or milliseconds since the epoch: the first offset whose record is that recent) from
    /// its leader. Unknown partitions come back with UNKNOWN_TOPIC_OR_PARTITION, leaderless
    /// ones with LEADER_NOT_AVAILABLE; a leader that moved is looked up again (3 rounds).
    public func listOffsets(_ partitions: [TopicPartition], timestamp: Int64) async throws -> [TopicPartition: ListedOffset] {
        let leaderErrors: Set<Int16> = [
            ErrorCode.leaderNotAvailable.rawValue, ErrorCode.notLeaderOrFollower.rawValue,
            ErrorCode.fencedLeaderEpoch.rawValue, ErrorCode.unknownLeaderEpoch.rawValue,
        ]
        var result: [TopicPartition: ListedOffset] = [:]
        var pending = Set(partitions)
        var round = 0
        while !pending.isEmpty {
            round += 1
            for tp in pending { result[tp] = nil }
            let metadata = try await metadata(topics: Set(pending.map(\.topic)).sorted())
            var byLeader: [Int32: [TopicPartition]] = [:]
            for tp in pending {
                guard let t = metadata.topics.first(where: { $0.name == tp.topic }) else {
                    result[tp] = ListedOffset(errorCode: ErrorCode.unknownTopicOrPartition.rawValue)
                    continue
                }
                if t.errorCode != 0 {
                    result[tp] = ListedOffset(errorCode: t.errorCode)
                } else if let p = t.partitions.first(where: { $0.partitionIndex == tp.partition }) {
                    if p.leaderId < 0 {
                        result[tp] = ListedOffset(errorCode: ErrorCode.leaderNotAvailable.rawValue)
                    } else {
                        byLeader[p.leaderId, default: []].append(tp)
                    }
                } else {
                    result[tp] = ListedOffset(errorCode: ErrorCode.unknownTopicOrPartition.rawValue)
                }
            }
            for (leader, tps) in byLeader.sorted(by: { $0.key < $1.key }) {
                let byTopic = Dictionary(grouping: tps, by: \.topic)
                var request = ListOffsetsRequest()
                request.replicaId = -1
                request.isolationLevel = 0
                request.topics = byTopic.keys.sorted().map { name in
                    var t = ListOffsetsRequest.ListOffsetsTopic()
                    t.name = name
                    t.partitions = byTopic[name]!.sorted().map {
                        var p = ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition()
                        p.partitionIndex = $0.partition
                        p.timestamp = timestamp
                        return p
                    }
                    return t
                }
                let r = try await connection(node: leader).send(request)
                for t in r.topics {
                    for p in t.partitions {
                        result[TopicPartition(t.name, p.partitionIndex)] = ListedOffset(errorCode: p.errorCode, offset: p.offset, timestamp: p.timestamp)
                    }
                }
                for tp in tps where result[tp] == nil {
                    throw KafkaClientError(.protocolViolation, "broker \(leader)'s ListOffsets response does not mention \(tp)")
                }
            }
            pending = Set(pending.filter { leaderErrors.contains(result[$0]?.errorCode ?? 0) })
            if round == 3 { break }
            if !pending.isEmpty { try await Task.sleep(for: .milliseconds(200 * round)) }
        }
        return result
    }
}
