import KafkaProtocol
import NIOCore

/// The `consumer` rebalance protocol (KIP-848) in the coordinator state machine, after Apache
/// Kafka's GroupMetadataManager.consumerGroupHeartbeat: every heartbeat (1) creates or updates
/// the member and bumps the group epoch when subscriptions or the subscribed topics changed,
/// (2) recomputes the target assignment with the server-side assignor when the group epoch is
/// ahead of it, (3) moves the member one step towards its target (revoke before assign).
/// Time is a parameter; the broker's topics come in with each heartbeat.
///
/// Differences from Kafka, because membership here lives only in memory: a heartbeat with a
/// non-zero epoch for a group not held here is UNKNOWN_MEMBER_ID (so a client rejoins after a
/// broker restart) rather than GROUP_ID_NOT_FOUND; a known member rejoining with epoch 0 (as
/// clients do after FENCED_MEMBER_EPOCH, owning nothing) restarts from an empty assignment.
extension GroupCoordinatorStateMachine {
    public static let leaveGroupMemberEpoch: Int32 = -1
    public static let leaveGroupStaticMemberEpoch: Int32 = -2

    /// The facts a heartbeat needs besides its body.
    public struct HeartbeatContext: Sendable {
        public var apiVersion: Int16
        public var clientId: String
        public var clientHost: String
        /// A fresh UUID string: the member id a v0 member without one is given.
        public var uniqueId: String
        public var topics: [ConsumerGroupTopic]

        public init(apiVersion: Int16, clientId: String, clientHost: String, uniqueId: String, topics: [ConsumerGroupTopic]) {
            self.apiVersion = apiVersion
            self.clientId = clientId
            self.clientHost = clientHost
            self.uniqueId = uniqueId
            self.topics = topics
        }
    }

    static func heartbeatError(_ code: ErrorCode, _ message: String) -> ConsumerGroupHeartbeatResponse {
        var r = ConsumerGroupHeartbeatResponse()
        r.errorCode = code.rawValue
        r.errorMessage = message
        return r
    }

    /// GroupMetadataManager.throwIfConsumerGroupHeartbeatRequestIsInvalid.
    static func validate(_ r: ConsumerGroupHeartbeatRequest, apiVersion: Int16) -> ConsumerGroupHeartbeatResponse? {
        func invalid(_ m: String) -> ConsumerGroupHeartbeatResponse { heartbeatError(.invalidRequest, m) }
        if r.groupId.isEmpty { return invalid("GroupId can't be empty.") }
        if apiVersion >= 1 && r.memberId.isEmpty { return invalid("MemberId can't be empty.") }
        if r.memberEpoch != 0 && r.memberId.isEmpty { return invalid("MemberId can't be empty.") }
        if r.instanceId == "" { return invalid("InstanceId can't be empty.") }
        if r.rackId == "" { return invalid("RackId can't be empty.") }
        if r.memberEpoch == 0 {
            if r.rebalanceTimeoutMs == -1 { return invalid("RebalanceTimeoutMs must be provided in first request.") }
            if r.topicPartitions == nil || !(r.topicPartitions!.isEmpty) { return invalid("TopicPartitions must be empty when (re-)joining.") }
            if r.subscribedTopicNames == nil && r.subscribedTopicRegex == nil {
                return invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.")
            }
        } else if r.memberEpoch == leaveGroupStaticMemberEpoch {
            if r.instanceId == nil { return invalid("InstanceId can't be null.") }
        } else if r.memberEpoch < leaveGroupStaticMemberEpoch {
            return invalid("MemberEpoch is invalid.")
        }
        if let re = r.subscribedTopicRegex, !ConsumerGroup.isValidRegex(re) {
            return heartbeatError(.invalidRegularExpression, "SubscribedTopicRegex \(re) is not a valid regular expression.")
        }
        if let a = r.serverAssignor, !ConsumerGroupAssignor.names.contains(a) {
            return heartbeatError(.unsupportedAssignor, "ServerAssignor \(a) is not supported. Supported assignors: \(ConsumerGroupAssignor.names.joined(separator: ", ")).")
        }
        return nil
    }

    /// GroupMetadataManager.consumerGroupHeartbeat: answers at once (nothing parks).
    public mutating func consumerGroupHeartbeat(_ r: ConsumerGroupHeartbeatRequest, _ ctx: HeartbeatContext,
                                                now: Int64) -> (ConsumerGroupHeartbeatResponse, [GroupOutput]) {
        var fx = GroupEffects(now: now, config: config)
        if let bad = Self.validate(r, apiVersion: ctx.apiVersion) { return (bad, []) }
        let resp: ConsumerGroupHeartbeatResponse
        if r.memberEpoch == Self.leaveGroupMemberEpoch || r.memberEpoch == Self.leaveGroupStaticMemberEpoch {
            resp = consumerGroupLeave(r, &fx)
        } else {
            resp = consumerGroupJoinOrHeartbeat(r, ctx, &fx)
        }
        return (resp, fx.outputs)
    }

    /// getOrMaybeCreateConsumerGroup, with the upgrade of an empty classic group.
    mutating func consumerGroupFor(_ groupId: String, create: Bool, _ fx: inout GroupEffects) -> ErrorCode? {
        if consumerGroups[groupId] != nil { return nil }
        if let classic = groups[groupId] {
            guard classic.isIdleEmpty || (classic.state == .empty && classic.members.isEmpty) else {
                return .groupIdNotFound
            }
            guard create else { return .groupIdNotFound }
            groups[groupId] = nil
            fx.log("empty classic group \(groupId) converted to a consumer group")
        }
        guard create else { return .unknownMemberId }
        consumerGroups[groupId] = ConsumerGroup(groupId: groupId, now: fx.now)
        return nil
    }

    mutating func consumerGroupLeave(_ r: ConsumerGroupHeartbeatRequest, _ fx: inout GroupEffects) -> ConsumerGroupHeartbeatResponse {
        if let e = consumerGroupFor(r.groupId, create: false, &fx) {
            return Self.heartbeatError(e, e == .groupIdNotFound ? "Group \(r.groupId) is not a consumer group." : "Unknown member \(r.memberId).")
        }
        var g = consumerGroups[r.groupId]!
        defer { consumerGroups[r.groupId] = g }
        var resp = ConsumerGroupHeartbeatResponse()
        resp.memberId = r.memberId
        resp.memberEpoch = r.memberEpoch
        if let instanceId = r.instanceId {
            guard let m = g.staticMember(instanceId) else {
                return Self.heartbeatError(.unknownMemberId, "Instance id \(instanceId) is unknown.")
            }
            guard m.memberId == r.memberId else {
                return Self.heartbeatError(.fencedInstanceId, "Static member \(r.memberId) with instance id \(instanceId) was fenced by member \(m.memberId).")
            }
            if r.memberEpoch == Self.leaveGroupStaticMemberEpoch {
                // Temporarily gone: keeps its assignment until its session expires.
                var left = m
                left.memberEpoch = Self.leaveGroupStaticMemberEpoch
                left.pendingRevocation = [:]
                g.members[m.memberId] = left
                g.rebalanceDeadlines[m.memberId] = nil
                fx.log("static member \(m.memberId) (instance \(instanceId)) temporarily left consumer group \(g.groupId)")
            } else {
                g.fence(m.memberId, &fx, reason: "left the group")
            }
        } else {
            guard g.members[r.memberId] != nil else {
                return Self.heartbeatError(.unknownMemberId, "Member \(r.memberId) is not a member of group \(r.groupId).")
            }
            g.fence(r.memberId, &fx, reason: "left the group")
        }
        return resp
    }

    mutating func consumerGroupJoinOrHeartbeat(_ r: ConsumerGroupHeartbeatRequest, _ ctx: HeartbeatContext,
                                               _ fx: inout GroupEffects) -> ConsumerGroupHeartbeatResponse {
        let joining = r.memberEpoch == 0
        if let e = consumerGroupFor(r.groupId, create: joining, &fx) {
            return Self.heartbeatError(e, e == .groupIdNotFound ? "Group \(r.groupId) is not a consumer group." : "Unknown member \(r.memberId).")
        }
        var g = consumerGroups[r.groupId]!
        let memberId = r.memberId.isEmpty ? ctx.uniqueId : r.memberId
        let owned = r.topicPartitions.map { tps -> TopicAssignment in
            var a: TopicAssignment = [:]
            for tp in tps where !tp.partitions.isEmpty { a[tp.topicId, default: []].formUnion(tp.partitions) }
            return a
        }
        // throwIfConsumerGroupIsFull.
        if g.members.count >= config.maxSize && g.members[memberId] == nil
            && !(r.instanceId.map { g.staticMember($0) != nil } ?? false) {
            if g.members.isEmpty { consumerGroups[r.groupId] = nil }
            return Self.heartbeatError(.groupMaxSizeReached, "The consumer group has reached its maximum capacity of \(config.maxSize) members.")
        }
        var member: ConsumerGroupMember
        var replacedStatic: ConsumerGroupMember?
        var existed = true
        if let instanceId = r.instanceId {
            let current = g.staticMember(instanceId)
            if joining {
                if let current, current.memberId != memberId {
                    // Only a member whose predecessor left with epoch -2 may take its place.
                    guard current.memberEpoch == Self.leaveGroupStaticMemberEpoch else {
                        return Self.heartbeatError(.unreleasedInstanceId, "Static member \(memberId) with instance id \(instanceId) cannot join the group because the instance id is owned by \(current.memberId) member.")
                    }
                    replacedStatic = current
                    member = ConsumerGroupMember(memberId: memberId)
                    member.assigned = current.assigned
                    existed = false
                } else if let current {
                    member = current.resetForRejoin()
                } else {
                    member = ConsumerGroupMember(memberId: memberId)
                    existed = false
                }
            } else {
                guard let current else { return Self.heartbeatError(.unknownMemberId, "Instance id \(instanceId) is unknown.") }
                guard current.memberId == memberId else {
                    return Self.heartbeatError(.fencedInstanceId, "Static member \(memberId) with instance id \(instanceId) was fenced by member \(current.memberId).")
                }
                if let e = Self.checkEpoch(current, r.memberEpoch, owned) { return e }
                member = current
            }
        } else if let current = g.members[memberId] {
            if joining {
                member = current.resetForRejoin()
            } else {
                if let e = Self.checkEpoch(current, r.memberEpoch, owned) { return e }
                member = current
            }
        } else {
            guard joining else {
                return Self.heartbeatError(.unknownMemberId, "Member \(memberId) is not a member of group \(r.groupId).")
            }
            member = ConsumerGroupMember(memberId: memberId)
            existed = false
        }
        let before = member

        // 1. The member, and the group epoch.
        if let i = r.instanceId { member.instanceId = i }
        if let k = r.rackId { member.rackId = k }
        if r.rebalanceTimeoutMs != -1 { member.rebalanceTimeoutMs = r.rebalanceTimeoutMs }
        if let a = r.serverAssignor { member.serverAssignor = a }
        if let names = r.subscribedTopicNames { member.subscribedTopicNames = names }
        if let re = r.subscribedTopicRegex { member.subscribedTopicRegex = re.isEmpty ? nil : re }
        member.clientId = ctx.clientId
        member.clientHost = ctx.clientHost
        if let old = replacedStatic {
            g.members[old.memberId] = nil
            g.sessionDeadlines[old.memberId] = nil
            g.rebalanceDeadlines[old.memberId] = nil
            g.targetAssignment[member.memberId] = g.targetAssignment.removeValue(forKey: old.memberId)
            fx.log("static member \(memberId) (instance \(r.instanceId ?? "")) replaces \(old.memberId) in consumer group \(g.groupId)")
        } else if !existed {
            fx.log("member \(memberId) joins consumer group \(g.groupId)")
        }
        var bump = !existed && replacedStatic == nil
        if existed && (before.subscribedTopicNames != member.subscribedTopicNames
                       || before.subscribedTopicRegex != member.subscribedTopicRegex
                       || before.serverAssignor != member.serverAssignor) {
            bump = true
        }
        g.members[memberId] = member
        // Subscription metadata: recomputed on every heartbeat (Kafka refreshes it periodically
        // and on metadata changes), so a topic created later that matches a regex, or new
        // partitions, bump the epoch at the next heartbeat.
        let metadata = g.computeSubscriptionMetadata(ctx.topics)
        if metadata != g.subscriptionMetadata {
            g.subscriptionMetadata = metadata
            bump = true
        }
        if bump {
            g.groupEpoch += 1
            fx.log("consumer group \(g.groupId) epoch bumped to \(g.groupEpoch)")
        }

        // 2. The target assignment.
        if g.groupEpoch > g.assignmentEpoch || replacedStatic != nil {
            g.computeTargetAssignment()
            fx.log("consumer group \(g.groupId) target assignment for epoch \(g.assignmentEpoch) with '\(g.assignorName)': \(g.describeTarget())")
        }

        // 3. Reconciliation.
        let current = g.members[memberId]!
        var updated = current
        if !current.isReconciled(to: g.assignmentEpoch) {
            updated = current.reconciled(targetEpoch: g.assignmentEpoch, target: g.targetAssignment[memberId] ?? [:], owned: owned) { t, p in
                g.currentPartitionEpoch(t, p, except: memberId)
            }
            if updated != current {
                fx.log("consumer group \(g.groupId) member \(memberId): epoch \(updated.memberEpoch), state \(updated.state.rawValue), assigned \(Self.render(updated.assigned)), revoking \(Self.render(updated.pendingRevocation))")
                if updated.state == .unrevokedPartitions {
                    if g.rebalanceDeadlines[memberId]?.epoch != updated.memberEpoch || current.state != .unrevokedPartitions {
                        g.rebalanceDeadlines[memberId] = (fx.now + Int64(max(updated.rebalanceTimeoutMs, 1)), updated.memberEpoch)
                    }
                } else {
                    g.rebalanceDeadlines[memberId] = nil
                }
            }
            g.members[memberId] = updated
        }
        g.sessionDeadlines[memberId] = fx.now + Int64(config.consumerSessionTimeoutMs)
        consumerGroups[r.groupId] = g

        var resp = ConsumerGroupHeartbeatResponse()
        resp.memberId = memberId
        resp.memberEpoch = updated.memberEpoch
        resp.heartbeatIntervalMs = config.consumerHeartbeatIntervalMs
        if r.topicPartitions != nil || joining || updated.assigned != before.assigned {
            var a = ConsumerGroupHeartbeatResponse.Assignment()
            a.topicPartitions = updated.assigned.keys.sorted { $0.description < $1.description }.map { t in
                var tp = ConsumerGroupHeartbeatResponse.Assignment.TopicPartitions()
                tp.topicId = t
                tp.partitions = updated.assigned[t]!.sorted()
                return tp
            }
            resp.assignment = a
        }
        return resp
    }

    /// GroupMetadataManager.throwIfMemberEpochIsInvalid.
    static func checkEpoch(_ m: ConsumerGroupMember, _ received: Int32, _ owned: TopicAssignment?) -> ConsumerGroupHeartbeatResponse? {
        if received > m.memberEpoch {
            return heartbeatError(.fencedMemberEpoch, "The consumer group member has a greater member epoch (\(received)) than the one known by the group coordinator (\(m.memberEpoch)). The member must abandon all its partitions and rejoin.")
        }
        if received < m.memberEpoch {
            // The previous epoch with a subset of the assignment: the response that bumped it was lost.
            if received != m.previousMemberEpoch || !ConsumerGroupMember.isSubset(owned, of: m.assigned) {
                return heartbeatError(.fencedMemberEpoch, "The consumer group member has a smaller member epoch (\(received)) than the one known by the group coordinator (\(m.memberEpoch)). The member must abandon all its partitions and rejoin.")
            }
        }
        return nil
    }

    static func render(_ a: TopicAssignment) -> String {
        "[" + a.keys.sorted { $0.description < $1.description }.map { t in "\(t):\(a[t]!.sorted())" }.joined(separator: ", ") + "]"
    }

    // MARK: describe

    /// ConsumerGroupDescribe for one group id (GroupMetadataManager.consumerGroupDescribe).
    public func consumerGroupDescribe(_ groupId: String, topicNames: [KafkaUUID: String]) -> ConsumerGroupDescribeResponse.DescribedGroup {
        var d = ConsumerGroupDescribeResponse.DescribedGroup()
        d.groupId = groupId
        guard let g = consumerGroups[groupId] else {
            d.errorCode = ErrorCode.groupIdNotFound.rawValue
            d.errorMessage = groups[groupId] != nil ? "Group \(groupId) is not a consumer group." : "Group \(groupId) not found."
            return d
        }
        func encode(_ a: TopicAssignment) -> ConsumerGroupDescribeResponse.DescribedGroup.Member.Assignment {
            var out = ConsumerGroupDescribeResponse.DescribedGroup.Member.Assignment()
            out.topicPartitions = a.keys.sorted { $0.description < $1.description }.map { t in
                var tp = ConsumerGroupDescribeResponse.DescribedGroup.Member.Assignment.TopicPartitions()
                tp.topicId = t
                tp.topicName = topicNames[t] ?? ""
                tp.partitions = a[t]!.sorted()
                return tp
            }
            return out
        }
        d.groupState = g.state.rawValue
        d.groupEpoch = g.groupEpoch
        d.assignmentEpoch = g.assignmentEpoch
        d.assignorName = g.assignorName.isEmpty ? ConsumerGroupAssignor.defaultName : g.assignorName
        d.members = g.members.keys.sorted().map { id in
            let m = g.members[id]!
            var dm = ConsumerGroupDescribeResponse.DescribedGroup.Member()
            dm.memberId = m.memberId
            dm.instanceId = m.instanceId
            dm.rackId = m.rackId
            dm.memberEpoch = m.memberEpoch
            dm.clientId = m.clientId
            dm.clientHost = m.clientHost
            dm.subscribedTopicNames = m.subscribedTopicNames
            dm.subscribedTopicRegex = m.subscribedTopicRegex
            dm.assignment = encode(m.assigned)
            dm.targetAssignment = encode(g.targetAssignment[id] ?? [:])
            dm.memberType = 1  // consumer protocol (KIP-1099)
            return dm
        }
        return d
    }

    /// ConsumerGroup.validateOffsetFetch for OffsetFetch v9 with a member id: nil when allowed.
    public func validateOffsetFetch(groupId: String, memberId: String?, memberEpoch: Int32) -> ErrorCode? {
        guard let g = consumerGroups[groupId] else { return nil }
        if memberEpoch < 0 && memberId == nil { return nil }
        guard let id = memberId, let m = g.members[id] else { return .unknownMemberId }
        return memberEpoch == m.memberEpoch ? nil : .staleMemberEpoch
    }
}

extension ConsumerGroupMember {
    /// A known member joining again with epoch 0: it owns nothing any more.
    func resetForRejoin() -> ConsumerGroupMember {
        var m = self
        m.previousMemberEpoch = 0
        m.memberEpoch = 0
        m.assigned = [:]
        m.pendingRevocation = [:]
        m.state = .stable
        return m
    }
}

extension ConsumerGroup {
    /// The subscribed topics (names and regexes resolved) as they are now.
    func computeSubscriptionMetadata(_ topics: [ConsumerGroupTopic]) -> [String: ConsumerGroupTopic] {
        let names = subscribedTopics(topics)
        var out: [String: ConsumerGroupTopic] = [:]
        for t in topics where names.contains(t.name) { out[t.name] = t }
        return out
    }

    /// The topic names OffsetDelete must keep (GROUP_SUBSCRIBED_TO_TOPIC).
    var subscribedTopicNamesForDelete: Set<String> {
        var s = Set(subscriptionMetadata.keys)
        for m in members.values { s.formUnion(m.subscribedTopicNames) }
        return s
    }

    /// TargetAssignmentBuilder with the group's preferred assignor
    /// (ConsumerGroup.computePreferredServerAssignor: the one most members ask for).
    mutating func computeTargetAssignment() {
        var votes: [String: Int] = [:]
        for m in members.values { if let a = m.serverAssignor { votes[a, default: 0] += 1 } }
        let assignor = votes.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }?.key ?? ConsumerGroupAssignor.defaultName
        let byName = subscriptionMetadata
        let subscribers = members.values.map { m in
            ConsumerGroupAssignor.Subscriber(memberId: m.memberId,
                                             topics: Set(Self.topics(of: m, in: Array(byName.values)).compactMap { byName[$0]?.id }))
        }
        var partitions: [KafkaUUID: Int32] = [:]
        for t in byName.values { partitions[t.id] = t.partitions }
        targetAssignment = ConsumerGroupAssignor.assign(assignor, members: subscribers, partitions: partitions, previous: targetAssignment)
        assignorName = assignor
        assignmentEpoch = groupEpoch
    }

    func describeTarget() -> String {
        members.keys.sorted().map { "\($0)=\(GroupCoordinatorStateMachine.render(targetAssignment[$0] ?? [:]))" }.joined(separator: " ")
    }

    /// consumerGroupFenceMember: the member goes, the group epoch is bumped (the next
    /// heartbeat computes a new target).
    mutating func fence(_ memberId: String, _ fx: inout GroupEffects, reason: String) {
        guard members.removeValue(forKey: memberId) != nil else { return }
        targetAssignment[memberId] = nil
        sessionDeadlines[memberId] = nil
        rebalanceDeadlines[memberId] = nil
        groupEpoch += 1
        if members.isEmpty { emptySince = fx.now }
        fx.log("member \(memberId) removed from consumer group \(groupId) (\(reason)); group epoch \(groupEpoch)")
    }

    /// ConsumerGroup.validateOffsetCommit: simple commits only into an empty group; members
    /// of the consumer protocol must use v9+ and their current epoch.
    func validateOffsetCommit(memberId: String, memberEpoch: Int32, apiVersion: Int16) -> ErrorCode? {
        if memberEpoch < 0 && members.isEmpty { return nil }
        guard let m = members[memberId] else { return .unknownMemberId }
        if apiVersion < 9 { return .unsupportedVersion }
        return memberEpoch == m.memberEpoch ? nil : .staleMemberEpoch
    }

    func nextDeadline(emptyRetentionMs: Int64) -> Int64? {
        var d = sessionDeadlines.values.min()
        if let r = rebalanceDeadlines.values.map(\.deadline).min() { d = min(d ?? r, r) }
        if d == nil && members.isEmpty { d = emptySince + emptyRetentionMs }
        return d
    }

    /// Session expiry and rebalance (revocation) timeouts: the member is fenced.
    mutating func fireTimers(_ fx: inout GroupEffects) {
        for (id, d) in sessionDeadlines.sorted(by: { $0.value < $1.value }) where d <= fx.now {
            fence(id, &fx, reason: "session expired")
        }
        for (id, r) in rebalanceDeadlines.sorted(by: { $0.value.deadline < $1.value.deadline }) where r.deadline <= fx.now {
            rebalanceDeadlines[id] = nil
            if let m = members[id], m.memberEpoch == r.epoch, m.state == .unrevokedPartitions {
                fence(id, &fx, reason: "did not revoke its partitions within its rebalance timeout")
            }
        }
    }
}

extension ConsumerGroup {
    /// DescribeGroups for a consumer group: its state, protocol type `consumer` and members
    /// (ids, client id and host, and the current assignment as ConsumerProtocolAssignment v0
    /// bytes, so classic tools can show it; no subscription metadata).
    public func describeClassic(topicNames: [KafkaUUID: String]) -> DescribeGroupsResponse.DescribedGroup {
        var d = DescribeGroupsResponse.DescribedGroup()
        d.groupId = groupId
        d.groupState = state.rawValue
        d.protocolType = "consumer"
        d.protocolData = assignorName
        d.members = members.keys.sorted().map { id in
            let m = members[id]!
            var dm = DescribeGroupsResponse.DescribedGroup.DescribedGroupMember()
            dm.memberId = m.memberId
            dm.groupInstanceId = m.instanceId
            dm.clientId = m.clientId
            dm.clientHost = m.clientHost
            dm.memberAssignment = Self.consumerProtocolAssignment(m.assigned, topicNames: topicNames)
            return dm
        }
        return d
    }

    /// ConsumerProtocolAssignment v0: version, [topic, [partition]], user data (null).
    static func consumerProtocolAssignment(_ a: TopicAssignment, topicNames: [KafkaUUID: String]) -> ByteBuffer {
        let named = a.compactMap { t, ps in topicNames[t].map { ($0, ps.sorted()) } }.sorted { $0.0 < $1.0 }
        var b = ByteBuffer()
        b.writeInteger(Int16(0))
        b.writeInteger(Int32(named.count))
        for (name, ps) in named {
            b.writeInteger(Int16(name.utf8.count))
            b.writeString(name)
            b.writeInteger(Int32(ps.count))
            for p in ps { b.writeInteger(p) }
        }
        b.writeInteger(Int32(-1))
        return b
    }
}
