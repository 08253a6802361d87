import KafkaProtocol
import NIOCore

/// Settings of the classic group coordinator, with Kafka's names and defaults
/// (GroupCoordinatorConfig.java).
public struct GroupCoordinatorConfiguration: Sendable {
    /// `group.initial.rebalance.delay.ms`: how long a new (or emptied) group waits for more
    /// members before its first generation.
    public var initialRebalanceDelayMs: Int64 = 3000
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    public var minSessionTimeoutMs: Int32 = 6000
    public var maxSessionTimeoutMs: Int32 = 1_800_000
    /// `group.max.size`.
    public var maxSize: Int = Int(Int32.max)
    /// How long a new member's JoinGroup may stay parked (Kafka's internal
    /// `group.classic.new.member.join.timeout.ms`, 5 minutes).
    public var newMemberJoinTimeoutMs: Int64 = 300_000
    /// How long a group stays held after it became Empty with no member left to join; then it
    /// is dropped from memory (its committed offsets stay in the metadata store). Kafka drops
    /// an Empty group without offsets at its next cleanup, every
    /// `offsets.retention.check.interval.ms` (10 minutes).
    public var emptyGroupRetentionMs: Int64 = 600_000
    /// `group.coordinator.rebalance.protocols` includes `consumer` (KIP-848).
    public var consumerProtocolEnabled = true
    /// `group.consumer.heartbeat.interval.ms` / `group.consumer.session.timeout.ms`.
    public var consumerHeartbeatIntervalMs: Int32 = 5000
    public var consumerSessionTimeoutMs: Int32 = 45000

    public init() {}
}

/// What the state machine asks its driver to do: answer a parked request.
public enum GroupOutput: Sendable {
    case join(GroupRequestToken, JoinGroupResponse)
    case sync(GroupRequestToken, SyncGroupResponse)
    /// A line worth logging (rebalances, expirations), as Kafka's coordinator logs them.
    case log(String)
}

/// The request-scoped facts a JoinGroup needs besides its body.
public struct GroupJoinContext: Sendable {
    public var token: GroupRequestToken
    public var apiVersion: Int16
    public var clientId: String
    public var clientHost: String
    /// A fresh unique string (a UUID): a generated member id is `<client id or instance id>-<uniqueId>`.
    public var uniqueId: String

    public init(token: GroupRequestToken, apiVersion: Int16, clientId: String, clientHost: String, uniqueId: String) {
        self.token = token
        self.apiVersion = apiVersion
        self.clientId = clientId
        self.clientHost = clientHost
        self.uniqueId = uniqueId
    }
}

/// The clock reading and the answers gathered while one event is handled.
public struct GroupEffects: Sendable {
    let now: Int64
    let config: GroupCoordinatorConfiguration
    var outputs: [GroupOutput] = []

    mutating func join(_ token: GroupRequestToken, _ response: JoinGroupResponse) { outputs.append(.join(token, response)) }
    mutating func sync(_ token: GroupRequestToken, _ response: SyncGroupResponse) { outputs.append(.sync(token, response)) }
    mutating func log(_ line: String) { outputs.append(.log(line)) }
}

/// The classic group coordinator as a pure state machine: events (requests, the clock) in,
/// answers out, no I/O; time is a parameter in milliseconds of any monotonic clock. It
/// follows Apache Kafka's GroupMetadataManager (classic part) and ClassicGroup, whose method
/// names the functions below carry. Committed offsets are not here: they live in the
/// metadata store, and this machine only validates commits against membership.
public struct GroupCoordinatorStateMachine: Sendable {
    public let config: GroupCoordinatorConfiguration
    public internal(set) var groups: [String: ClassicGroup] = [:]
    /// Groups of the `consumer` protocol (KIP-848); a group id is in one map or the other.
    public internal(set) var consumerGroups: [String: ConsumerGroup] = [:]

    public init(config: GroupCoordinatorConfiguration = .init()) {
        self.config = config
    }

    /// The earliest timer deadline of any group: the driver calls `tick` then.
    public var nextDeadline: Int64? {
        let classic = groups.values.compactMap { $0.nextDeadline(emptyRetentionMs: config.emptyGroupRetentionMs) }.min()
        let consumer = consumerGroups.values.compactMap { $0.nextDeadline(emptyRetentionMs: config.emptyGroupRetentionMs) }.min()
        return [classic, consumer].compactMap { $0 }.min()
    }

    // MARK: JoinGroup

    /// GroupCoordinatorService.joinGroup + GroupMetadataManager.classicGroupJoinToClassicGroup.
    /// The answer for `context.token` may come now or with a later event.
    public mutating func joinGroup(_ request: JoinGroupRequest, _ context: GroupJoinContext, now: Int64) -> [GroupOutput] {
        var fx = GroupEffects(now: now, config: config)
        var r = request
        // JoinGroupRequest.maybeOverrideRebalanceTimeout: v0 has none; the session timeout serves.
        if context.apiVersion == 0 { r.rebalanceTimeoutMs = r.sessionTimeoutMs }
        if r.groupId.isEmpty {
            fx.join(context.token, ClassicGroup.joinError(.invalidGroupId, memberId: r.memberId))
            return fx.outputs
        }
        if r.sessionTimeoutMs < config.minSessionTimeoutMs || r.sessionTimeoutMs > config.maxSessionTimeoutMs {
            fx.join(context.token, ClassicGroup.joinError(.invalidSessionTimeout, memberId: r.memberId))
            return fx.outputs
        }
        if let cg = consumerGroups[r.groupId] {
            // A consumer-protocol group: a classic member cannot join it while it has members;
            // an empty one is converted back (GroupMetadataManager's downgrade of an empty group).
            guard cg.members.isEmpty else {
                fx.join(context.token, ClassicGroup.joinError(.inconsistentGroupProtocol, memberId: r.memberId))
                return fx.outputs
            }
            consumerGroups[r.groupId] = nil
            fx.log("empty consumer group \(r.groupId) converted to a classic group")
        }
        if groups[r.groupId] == nil {
            // getOrMaybeCreateClassicGroup: only a member without an id creates a group; a
            // member id for an unknown group is UNKNOWN_MEMBER_ID (e.g. after a broker restart).
            guard r.memberId.isEmpty else {
                fx.join(context.token, ClassicGroup.joinError(.unknownMemberId, memberId: r.memberId))
                return fx.outputs
            }
            groups[r.groupId] = ClassicGroup(groupId: r.groupId, now: now)
        }
        groups[r.groupId]!.join(r, context, &fx)
        return fx.outputs
    }

    // MARK: SyncGroup, Heartbeat, LeaveGroup

    /// GroupMetadataManager.classicGroupSync. An unknown or Empty group is UNKNOWN_MEMBER_ID.
    public mutating func syncGroup(_ r: SyncGroupRequest, token: GroupRequestToken, now: Int64) -> [GroupOutput] {
        var fx = GroupEffects(now: now, config: config)
        if r.groupId.isEmpty {
            fx.sync(token, ClassicGroup.syncError(.invalidGroupId))
        } else if groups[r.groupId] == nil || groups[r.groupId]!.state == .empty {
            fx.sync(token, ClassicGroup.syncError(.unknownMemberId))
        } else {
            groups[r.groupId]!.sync(r, token: token, &fx)
        }
        return fx.outputs
    }

    /// GroupMetadataManager.classicGroupHeartbeat.
    public mutating func heartbeat(_ r: HeartbeatRequest, now: Int64) -> (ErrorCode, [GroupOutput]) {
        var fx = GroupEffects(now: now, config: config)
        if r.groupId.isEmpty { return (.invalidGroupId, []) }
        guard groups[r.groupId] != nil else { return (.unknownMemberId, []) }
        let code = groups[r.groupId]!.heartbeat(memberId: r.memberId, instanceId: r.groupInstanceId, generation: r.generationId, &fx)
        return (code, fx.outputs)
    }

    /// One member of a LeaveGroup request (v0-2 carry one, by member id).
    public struct LeavingMember: Sendable, Equatable {
        public var memberId: String
        public var groupInstanceId: String?

        public init(memberId: String, groupInstanceId: String?) {
            self.memberId = memberId
            self.groupInstanceId = groupInstanceId
        }
    }

    /// GroupMetadataManager.classicGroupLeave: a top-level error, or one per member.
    public mutating func leaveGroup(groupId: String, members: [LeavingMember], now: Int64)
        -> (error: ErrorCode, members: [ErrorCode], outputs: [GroupOutput]) {
        var fx = GroupEffects(now: now, config: config)
        if groupId.isEmpty { return (.invalidGroupId, [], []) }
        // GroupCoordinatorService.leaveGroup: an unknown group fails every member with UNKNOWN_MEMBER_ID.
        guard groups[groupId] != nil else { return (.none, members.map { _ in .unknownMemberId }, []) }
        let (error, codes) = groups[groupId]!.leave(members, &fx)
        return (error, codes, fx.outputs)
    }

    // MARK: time

    /// Fires every timer whose deadline has passed: rebalance and initial-delay completion,
    /// pending-sync expiry, session expiry; and drops groups that stayed Empty for
    /// `emptyGroupRetentionMs`.
    public mutating func tick(now: Int64) -> [GroupOutput] {
        var fx = GroupEffects(now: now, config: config)
        let retention = config.emptyGroupRetentionMs
        let due = groups.compactMap { id, g in (g.nextDeadline(emptyRetentionMs: retention) ?? .max) <= now ? id : nil }
        for id in due {
            groups[id]!.fireTimers(&fx)
            if let g = groups[id], g.isIdleEmpty, now - g.stateSince >= retention {
                groups[id] = nil
                fx.log("group \(id) was empty for \(retention) ms: no longer held (its committed offsets stay)")
            }
        }
        let dueConsumer = consumerGroups.compactMap { id, g in (g.nextDeadline(emptyRetentionMs: retention) ?? .max) <= now ? id : nil }
        for id in dueConsumer {
            consumerGroups[id]!.fireTimers(&fx)
            if let g = consumerGroups[id], g.members.isEmpty, now - g.emptySince >= retention {
                consumerGroups[id] = nil
                fx.log("consumer group \(id) was empty for \(retention) ms: no longer held (its committed offsets stay)")
            }
        }
        return fx.outputs
    }

    // MARK: offsets and administration

    /// OffsetMetadataManager.validateOffsetCommit + ClassicGroup.validateOffsetCommit: nil
    /// when the commit may be stored. A group that is not here takes only "simple" commits
    /// (generation < 0); a committing member keeps its session alive.
    public mutating func validateOffsetCommit(groupId: String, memberId: String, instanceId: String?, generation: Int32,
                                              apiVersion: Int16, now: Int64) -> ErrorCode? {
        if let g = consumerGroups[groupId] {
            return g.validateOffsetCommit(memberId: memberId, memberEpoch: generation, apiVersion: apiVersion)
        }
        guard groups[groupId] != nil else {
            if generation < 0 { return nil }
            // From OffsetCommit v9 an unknown group is GROUP_ID_NOT_FOUND; before, ILLEGAL_GENERATION.
            return apiVersion >= 9 ? .groupIdNotFound : .illegalGeneration
        }
        var fx = GroupEffects(now: now, config: config)
        return groups[groupId]!.validateOffsetCommit(memberId: memberId, instanceId: instanceId, generation: generation, &fx)
    }

    /// OffsetMetadataManager.validateTransactionalOffsetCommit (TxnOffsetCommit): an unknown
    /// group takes the commit only with generation < 0 (else ILLEGAL_GENERATION); a classic
    /// group checks member, static instance and generation when any is given (no
    /// REBALANCE_IN_PROGRESS, no member required); a consumer group's stale member epoch is
    /// ILLEGAL_GENERATION. nil when the commit may be held.
    public func validateTxnOffsetCommit(groupId: String, memberId: String, instanceId: String?, generation: Int32) -> ErrorCode? {
        if let g = consumerGroups[groupId] {
            if generation < 0 && g.members.isEmpty { return nil }
            guard let m = g.members[memberId] else { return .unknownMemberId }
            return generation == m.memberEpoch ? nil : .illegalGeneration
        }
        guard let g = groups[groupId] else { return generation < 0 ? nil : .illegalGeneration }
        if g.state == .dead { return .coordinatorNotAvailable }
        if generation < 0 && g.state == .empty { return nil }
        if generation >= 0 || !memberId.isEmpty || instanceId != nil {
            if let e = g.validateMember(memberId, instanceId: instanceId) { return e }
            if generation != g.generationId { return .illegalGeneration }
        }
        return nil
    }

    /// What DeleteGroups may do with a group held here.
    public enum DeleteCheck: Sendable, Equatable {
        /// Not held here: it exists only if it has committed offsets.
        case unknown
        /// Deleted (it was Empty).
        case deleted
        case refused(ErrorCode)
    }

    /// ClassicGroup.validateDeleteGroup, then removal: only an Empty group may go.
    public mutating func deleteGroup(_ groupId: String) -> DeleteCheck {
        if let cg = consumerGroups[groupId] {
            // ConsumerGroup.validateDeleteGroup: only an Empty group.
            guard cg.members.isEmpty else { return .refused(.nonEmptyGroup) }
            consumerGroups[groupId] = nil
            return .deleted
        }
        guard let g = groups[groupId] else { return .unknown }
        switch g.state {
        case .dead: return .refused(.groupIdNotFound)
        case .stable, .preparingRebalance, .completingRebalance: return .refused(.nonEmptyGroup)
        case .empty:
            groups[groupId] = nil
            return .deleted
        }
    }

    /// What OffsetDelete may do with a group held here.
    public enum OffsetDeleteCheck: Sendable, Equatable {
        case unknown
        case refused(ErrorCode)
        /// Allowed, except for the topics the group is subscribed to.
        case allowed(subscribed: Set<String>?, usesConsumerProtocol: Bool)

        public func isSubscribed(to topic: String) -> Bool {
            guard case .allowed(let topics, let consumer) = self else { return false }
            return topics.map { $0.contains(topic) } ?? consumer
        }
    }

    /// ClassicGroup.validateOffsetDelete: a non-empty group refuses unless it uses the consumer
    /// protocol, and then only for the topics it is not subscribed to.
    public func offsetDeleteCheck(_ groupId: String) -> OffsetDeleteCheck {
        if let cg = consumerGroups[groupId] {
            // ConsumerGroup.validateOffsetDelete: allowed, except for subscribed topics.
            return .allowed(subscribed: cg.members.isEmpty ? [] : cg.subscribedTopicNamesForDelete, usesConsumerProtocol: true)
        }
        guard let g = groups[groupId] else { return .unknown }
        switch g.state {
        case .dead:
            return .refused(.groupIdNotFound)
        case .stable, .preparingRebalance, .completingRebalance:
            if !g.usesConsumerProtocol { return .refused(.nonEmptyGroup) }
        case .empty:
            break
        }
        return .allowed(subscribed: g.subscribedTopics, usesConsumerProtocol: g.usesConsumerProtocol)
    }

    /// When a group's committed offsets may expire (Kafka's `offsetExpirationCondition`).
    public enum OffsetExpiry: Sendable, Equatable {
        /// Not while the group stays as it is (members, and no known subscription).
        case never
        /// Every offset, `offsets.retention.minutes` after the group became Empty (`since`).
        case all(since: Int64)
        /// Each offset `offsets.retention.minutes` after its commit, except on the topics the
        /// group is subscribed to (`keep`).
        case byCommitTime(keep: Set<String>)
    }

    /// ClassicGroup/ModernGroup.offsetExpirationCondition for a group held here; nil for one
    /// that is not (known only by its offsets: a standalone group, expired by commit time).
    public func offsetExpiry(_ groupId: String) -> OffsetExpiry? {
        if let cg = consumerGroups[groupId] {
            return .byCommitTime(keep: cg.members.isEmpty ? [] : cg.subscribedTopicNamesForDelete)
        }
        guard let g = groups[groupId] else { return nil }
        guard g.protocolType != nil else { return .byCommitTime(keep: []) }
        if g.state == .empty { return .all(since: g.stateSince) }
        if g.usesConsumerProtocol, g.state == .stable, let topics = g.subscribedTopics { return .byCommitTime(keep: topics) }
        return .never
    }

    /// Drops an Empty group once its last offset expired (Kafka's cleanupGroupMetadata, which
    /// turns it Dead); a group with members, or about to have some, stays.
    public mutating func dropIfEmpty(_ groupId: String) -> Bool {
        if let cg = consumerGroups[groupId], cg.members.isEmpty {
            consumerGroups[groupId] = nil
            return true
        }
        if let g = groups[groupId], g.isIdleEmpty {
            groups[groupId] = nil
            return true
        }
        return false
    }

    /// GroupMetadataManager.onUnloaded: every group goes Dead and every parked request is
    /// answered NOT_COORDINATOR, so clients look for the coordinator again.
    public mutating func unloadAll() -> [GroupOutput] {
        var fx = GroupEffects(now: 0, config: config)
        for id in Array(groups.keys) { groups[id]!.unload(&fx) }
        groups.removeAll()
        consumerGroups.removeAll()
        return fx.outputs
    }
}

// MARK: - The classic protocol on one group (GroupMetadataManager)

extension ClassicGroup {
    /// Empty with nobody about to join: only held for DescribeGroups/ListGroups until dropped.
    var isIdleEmpty: Bool { state == .empty && members.isEmpty && pendingJoinMembers.isEmpty && heartbeatDeadlines.isEmpty }

    /// The earliest of this group's timers, or when an idle Empty group is to be dropped.
    func nextDeadline(emptyRetentionMs: Int64) -> Int64? {
        var d = heartbeatDeadlines.values.min()
        if let j = joinTimer?.deadline { d = min(d ?? j, j) }
        if let s = syncTimer?.deadline { d = min(d ?? s, s) }
        if d == nil && isIdleEmpty { d = stateSince + emptyRetentionMs }
        return d
    }

    mutating func join(_ r: JoinGroupRequest, _ ctx: GroupJoinContext, _ fx: inout GroupEffects) {
        if !acceptJoiningMember(r.memberId, maxSize: fx.config.maxSize) {
            remove(r.memberId, &fx)
            fx.join(ctx.token, Self.joinError(.groupMaxSizeReached, memberId: ""))
        } else if r.memberId.isEmpty {
            joinNewMember(r, ctx, &fx)
        } else {
            joinExistingMember(r, ctx, &fx)
        }
    }

    /// GroupMetadataManager.acceptJoiningMember (`group.max.size`).
    func acceptJoiningMember(_ memberId: String, maxSize: Int) -> Bool {
        switch state {
        case .empty, .dead: true
        case .preparingRebalance: members[memberId]?.awaitingJoin != nil || numAwaitingJoinResponse < maxSize
        case .completingRebalance, .stable: hasMember(memberId) || members.count < maxSize
        }
    }

    /// GroupMetadataManager.classicGroupJoinNewMember.
    mutating func joinNewMember(_ r: JoinGroupRequest, _ ctx: GroupJoinContext, _ fx: inout GroupEffects) {
        if state == .dead {
            fx.join(ctx.token, Self.joinError(.coordinatorNotAvailable, memberId: ""))
        } else if !supportsProtocols(type: r.protocolType, names: r.protocols.map(\.name)) {
            fx.join(ctx.token, Self.joinError(.inconsistentGroupProtocol, memberId: ""))
        } else {
            // ClassicGroup.generateMemberId.
            let newMemberId = (r.groupInstanceId ?? ctx.clientId) + "-" + ctx.uniqueId
            if let instanceId = r.groupInstanceId {
                if let existing = staticMemberId(instanceId) {
                    fx.log("static member \(instanceId) of group \(groupId) rejoins in state \(state.rawValue): member \(newMemberId) replaces \(existing)")
                    updateStaticMemberThenRebalanceOrCompleteJoin(r, ctx, old: existing, new: newMemberId, &fx)
                } else {
                    addMemberThenRebalanceOrCompleteJoin(r, ctx, memberId: newMemberId, &fx)
                }
            } else if ctx.apiVersion >= 4 {
                // JoinGroupRequest.requiresKnownMemberId (v4+): hand out an id and ask the
                // member to join again with it; it is pending until then, for a session timeout.
                pendingJoinMembers.insert(newMemberId)
                heartbeatDeadlines[newMemberId] = fx.now + Int64(max(r.sessionTimeoutMs, 1))
                fx.join(ctx.token, Self.joinError(.memberIdRequired, memberId: newMemberId))
            } else {
                addMemberThenRebalanceOrCompleteJoin(r, ctx, memberId: newMemberId, &fx)
            }
        }
    }

    /// GroupMetadataManager.classicGroupJoinExistingMember.
    mutating func joinExistingMember(_ r: JoinGroupRequest, _ ctx: GroupJoinContext, _ fx: inout GroupEffects) {
        let memberId = r.memberId
        if state == .dead {
            fx.join(ctx.token, Self.joinError(.coordinatorNotAvailable, memberId: memberId))
        } else if !supportsProtocols(type: r.protocolType, names: r.protocols.map(\.name)) {
            fx.join(ctx.token, Self.joinError(.inconsistentGroupProtocol, memberId: memberId))
        } else if isPendingMember(memberId) {
            // A pending member is never static; Kafka fails such a request with an IllegalStateException.
            if r.groupInstanceId != nil {
                fx.join(ctx.token, Self.joinError(.unknownServerError, memberId: memberId))
                return
            }
            addMemberThenRebalanceOrCompleteJoin(r, ctx, memberId: memberId, &fx)
        } else if let error = validateMember(memberId, instanceId: r.groupInstanceId) {
            var resp = Self.joinError(error, memberId: memberId)
            resp.protocolName = nil
            fx.join(ctx.token, resp)
        } else {
            let member = members[memberId]!
            let protocols = r.protocols.map { GroupProtocol(name: $0.name, metadata: $0.metadata) }
            let same = member.protocols == protocols
            switch state {
            case .preparingRebalance:
                updateMemberThenRebalanceOrCompleteJoin(r, ctx, &fx, reason: "member \(memberId) joins during \(state.rawValue)")
            case .completingRebalance where same:
                // The member lost its JoinGroup response: answer the current generation again.
                fx.join(ctx.token, currentGenerationResponse(memberId, withMembers: isLeader(memberId)))
            case .completingRebalance:
                updateMemberThenRebalanceOrCompleteJoin(r, ctx, &fx, reason: "member \(memberId) changed its metadata during \(state.rawValue)")
            case .stable where isLeader(memberId):
                // A joining leader forces a rebalance (e.g. for topic metadata changes).
                updateMemberThenRebalanceOrCompleteJoin(r, ctx, &fx, reason: "leader \(memberId) rejoins during \(state.rawValue)")
            case .stable where !same:
                updateMemberThenRebalanceOrCompleteJoin(r, ctx, &fx, reason: "member \(memberId) changed its metadata during \(state.rawValue)")
            case .stable:
                fx.join(ctx.token, currentGenerationResponse(memberId, withMembers: false))
            case .empty, .dead:
                fx.join(ctx.token, Self.joinError(.unknownMemberId, memberId: memberId))
            }
        }
    }

    func currentGenerationResponse(_ memberId: String, withMembers: Bool) -> JoinGroupResponse {
        var resp = JoinGroupResponse()
        resp.members = withMembers ? currentMembers() : []
        resp.memberId = memberId
        resp.generationId = generationId
        resp.protocolName = protocolName
        resp.protocolType = protocolType
        resp.leader = leaderId ?? ""
        resp.skipAssignment = false
        return resp
    }

    /// GroupMetadataManager.updateMemberThenRebalanceOrCompleteJoin.
    mutating func updateMemberThenRebalanceOrCompleteJoin(_ r: JoinGroupRequest, _ ctx: GroupJoinContext, _ fx: inout GroupEffects, reason: String) {
        updateMember(r.memberId, protocols: r.protocols.map { GroupProtocol(name: $0.name, metadata: $0.metadata) },
                     rebalanceTimeoutMs: r.rebalanceTimeoutMs, sessionTimeoutMs: r.sessionTimeoutMs, awaitingJoin: ctx.token, &fx)
        maybePrepareRebalanceOrCompleteJoin(&fx, reason: reason)
    }

    /// GroupMetadataManager.addMemberThenRebalanceOrCompleteJoin.
    mutating func addMemberThenRebalanceOrCompleteJoin(_ r: JoinGroupRequest, _ ctx: GroupJoinContext, memberId: String, _ fx: inout GroupEffects) {
        var member = ClassicGroupMember(memberId: memberId, groupInstanceId: r.groupInstanceId, clientId: ctx.clientId,
                                        clientHost: ctx.clientHost, rebalanceTimeoutMs: r.rebalanceTimeoutMs,
                                        sessionTimeoutMs: r.sessionTimeoutMs, protocolType: r.protocolType,
                                        protocols: r.protocols.map { GroupProtocol(name: $0.name, metadata: $0.metadata) })
        member.isNew = true
        member.awaitingJoin = ctx.token
        // The initial rebalance is delayed further while new members keep arriving.
        if state == .preparingRebalance && previousState == .empty { newMemberAdded = true }
        add(member)
        // A new member cannot heartbeat while its JoinGroup is parked: it gets the new-member
        // join timeout instead of its session timeout.
        rescheduleHeartbeat(memberId, timeoutMs: fx.config.newMemberJoinTimeoutMs, &fx)
        maybePrepareRebalanceOrCompleteJoin(&fx, reason: "adding new member \(memberId)")
    }

    /// GroupMetadataManager.updateStaticMemberThenRebalanceOrCompleteJoin: a known static
    /// member rejoining with a new member id takes the old one's place; a Stable group whose
    /// selected protocol stays the same does not rebalance and hands the member its assignment.
    mutating func updateStaticMemberThenRebalanceOrCompleteJoin(_ r: JoinGroupRequest, _ ctx: GroupJoinContext, old: String, new: String,
                                                                _ fx: inout GroupEffects) {
        let currentLeader = leaderId
        replaceStaticMember(instanceId: r.groupInstanceId!, old: old, new: new, &fx)
        rescheduleHeartbeat(new, timeoutMs: Int64(members[new]!.sessionTimeoutMs), &fx)
        updateMember(new, protocols: r.protocols.map { GroupProtocol(name: $0.name, metadata: $0.metadata) },
                     rebalanceTimeoutMs: r.rebalanceTimeoutMs, sessionTimeoutMs: r.sessionTimeoutMs, awaitingJoin: ctx.token, &fx)
        switch state {
        case .stable:
            if (protocolName ?? "") == selectProtocol() {
                fx.log("static member \(new) of group \(groupId) rejoined without changing the selected protocol: no rebalance")
                var resp = JoinGroupResponse()
                resp.memberId = new
                resp.generationId = generationId
                resp.protocolName = protocolName
                resp.protocolType = protocolType
                if ctx.apiVersion >= 9 {
                    // JoinGroupRequest.supportsSkippingAssignment: a leader learns it leads but
                    // keeps the current assignment.
                    let leads = isLeader(new)
                    resp.members = leads ? currentMembers() : []
                    resp.leader = leaderId ?? ""
                    resp.skipAssignment = leads
                } else {
                    // Older clients are told the previous leader id, so they do not reassign.
                    resp.leader = currentLeader ?? ""
                }
                completeJoin(new, resp, &fx)
            } else {
                maybePrepareRebalanceOrCompleteJoin(&fx, reason: "static member \(new) changed the selected protocol")
            }
        case .completingRebalance:
            // The leader may already hold the old member id: assign again.
            prepareRebalance(&fx, reason: "static member \(new) rejoined during \(state.rawValue)")
        case .preparingRebalance:
            maybeCompleteJoinPhase(&fx)
        case .empty, .dead:
            // Unreachable: a group with a static member is not Empty.
            completeJoin(new, Self.joinError(.unknownServerError, memberId: new), &fx)
        }
    }

    /// GroupMetadataManager.maybePrepareRebalanceOrCompleteJoin.
    mutating func maybePrepareRebalanceOrCompleteJoin(_ fx: inout GroupEffects, reason: String) {
        if canRebalance { prepareRebalance(&fx, reason: reason) } else { maybeCompleteJoinPhase(&fx) }
    }

    /// GroupMetadataManager.prepareRebalance.
    mutating func prepareRebalance(_ fx: inout GroupEffects, reason: String) {
        // Members waiting for their assignment rejoin instead.
        if state == .completingRebalance { resetAndPropagateAssignmentWithError(.rebalanceInProgress, &fx) }
        removeSyncExpiration()
        let isInitialRebalance = state == .empty
        if isInitialRebalance {
            // A new group gives members `group.initial.rebalance.delay.ms` to arrive.
            let delay = fx.config.initialRebalanceDelayMs
            let remaining = max(rebalanceTimeoutMs - delay, 0)
            joinTimer = .initial(deadline: fx.now + max(delay, 1), delayMs: delay, remainingMs: remaining)
        }
        transition(to: .preparingRebalance, at: fx.now)
        fx.log("preparing to rebalance group \(groupId) with old generation \(generationId) (reason: \(reason))")
        if !isInitialRebalance { maybeCompleteJoinElseSchedule(&fx) }
    }

    /// GroupMetadataManager.maybeCompleteJoinElseSchedule.
    mutating func maybeCompleteJoinElseSchedule(_ fx: inout GroupEffects) {
        if hasAllMembersJoined {
            completeJoinPhase(&fx)
        } else {
            joinTimer = .complete(deadline: fx.now + max(rebalanceTimeoutMs, 1))
        }
    }

    /// GroupMetadataManager.maybeCompleteJoinPhase: not during the initial rebalance, which
    /// always waits for its delay.
    mutating func maybeCompleteJoinPhase(_ fx: inout GroupEffects) {
        guard state == .preparingRebalance, previousState != .empty, hasAllMembersJoined else { return }
        completeJoinPhase(&fx)
    }

    /// GroupMetadataManager.tryCompleteInitialRebalanceElseSchedule.
    mutating func tryCompleteInitialRebalanceElseSchedule(delayMs: Int64, remainingMs: Int64, _ fx: inout GroupEffects) {
        if newMemberAdded && remainingMs != 0 {
            newMemberAdded = false
            let newDelay = min(fx.config.initialRebalanceDelayMs, remainingMs)
            let newRemaining = max(remainingMs - delayMs, 0)
            joinTimer = .initial(deadline: fx.now + max(newDelay, 1), delayMs: newDelay, remainingMs: newRemaining)
        } else {
            completeJoinPhase(&fx)
        }
    }

    /// GroupMetadataManager.completeClassicGroupJoin: dynamic members that did not rejoin are
    /// dropped, a leader that did not rejoin is replaced, and the next generation starts; every
    /// parked JoinGroup is answered (the leader's with the members' metadata).
    mutating func completeJoinPhase(_ fx: inout GroupEffects) {
        joinTimer = nil
        guard state == .preparingRebalance else { return }
        let notRejoined = allMembers.filter { $0.awaitingJoin == nil && $0.groupInstanceId == nil }.map(\.memberId)
        for id in notRejoined { remove(id, &fx) }
        if !notRejoined.isEmpty {
            fx.log("group \(groupId) removed dynamic members who did not rejoin: \(notRejoined.joined(separator: ", "))")
        }
        if !maybeElectNewJoinedLeader() && !members.isEmpty {
            // Nobody rejoined: wait another rebalance timeout for session expiry to clear them.
            fx.log("group \(groupId) could not complete rebalance because no members rejoined")
            joinTimer = .complete(deadline: fx.now + max(rebalanceTimeoutMs, 1))
            return
        }
        initNextGeneration(at: fx.now)
        if state == .empty {
            fx.log("group \(groupId) with generation \(generationId) is now empty")
            return
        }
        fx.log("stabilized group \(groupId) generation \(generationId) (\(protocolName ?? "")) with \(members.count) members")
        for id in memberOrder {
            completeJoin(id, currentGenerationResponse(id, withMembers: isLeader(id)), &fx)
            rescheduleHeartbeat(id, timeoutMs: Int64(members[id]!.sessionTimeoutMs), &fx)
            members[id]!.isNew = false
            pendingSyncMembers.insert(id)
        }
        // schedulePendingSync: members have a rebalance timeout to send SyncGroup.
        syncTimer = (fx.now + max(rebalanceTimeoutMs, 1), generationId)
    }

    /// GroupMetadataManager.resetAndPropagateAssignmentWithError.
    mutating func resetAndPropagateAssignmentWithError(_ error: ErrorCode, _ fx: inout GroupEffects) {
        for id in memberOrder { members[id]!.assignment = ByteBuffer() }
        propagateAssignment(error, &fx)
    }

    /// GroupMetadataManager.setAndPropagateAssignment.
    mutating func setAndPropagateAssignment(_ assignment: [String: ByteBuffer], _ fx: inout GroupEffects) {
        for id in memberOrder { members[id]!.assignment = assignment[id] ?? ByteBuffer() }
        propagateAssignment(.none, &fx)
    }

    /// GroupMetadataManager.propagateAssignment: answers every parked SyncGroup and restarts
    /// those members' session timers.
    mutating func propagateAssignment(_ error: ErrorCode, _ fx: inout GroupEffects) {
        for id in memberOrder {
            var resp = SyncGroupResponse()
            if error == .none {
                resp.protocolName = protocolName
                resp.protocolType = protocolType
            }
            resp.assignment = members[id]!.assignment
            resp.errorCode = error.rawValue
            if completeSync(id, resp, &fx) {
                rescheduleHeartbeat(id, timeoutMs: Int64(members[id]!.sessionTimeoutMs), &fx)
            }
        }
    }

    mutating func rescheduleHeartbeat(_ memberId: String, timeoutMs: Int64, _ fx: inout GroupEffects) {
        heartbeatDeadlines[memberId] = fx.now + max(timeoutMs, 1)
    }

    /// GroupMetadataManager.removeSyncExpiration.
    mutating func removeSyncExpiration() {
        pendingSyncMembers.removeAll()
        syncTimer = nil
    }

    /// GroupMetadataManager.expirePendingSync: members that did not send SyncGroup within the
    /// rebalance timeout are removed and the group rebalances.
    mutating func expirePendingSync(generation: Int32, _ fx: inout GroupEffects) {
        guard generation == generationId, state == .completingRebalance || state == .stable, !hasReceivedSyncFromAllMembers else { return }
        let pending = memberOrder.filter { pendingSyncMembers.contains($0) }
        for id in pending { remove(id, &fx) }
        fx.log("group \(groupId) removed members who did not send SyncGroup: \(pending.joined(separator: ", "))")
        prepareRebalance(&fx, reason: "removing \(pending) on pending sync request expiration")
    }

    /// GroupMetadataManager.expireClassicGroupMemberHeartbeat.
    mutating func expireHeartbeat(_ memberId: String, _ fx: inout GroupEffects) {
        if state == .dead { return }
        if isPendingMember(memberId) {
            fx.log("pending member \(memberId) of group \(groupId) removed after its session timeout")
            remove(memberId, &fx)
            if state == .preparingRebalance && hasAllMembersJoined { completeJoinPhase(&fx) }
        } else if let m = members[memberId], !m.hasSatisfiedHeartbeat {
            fx.log("member \(memberId) of group \(groupId) failed (session timeout): removing it")
            removeMemberAndUpdate(memberId, &fx, reason: "removing member \(memberId) on heartbeat expiration")
        }
    }

    /// GroupMetadataManager.removeMemberAndUpdateClassicGroup.
    mutating func removeMemberAndUpdate(_ memberId: String, _ fx: inout GroupEffects, reason: String) {
        // A parked JoinGroup is answered UNKNOWN_MEMBER_ID, so a live client joins again.
        completeJoin(memberId, Self.joinError(.unknownMemberId, memberId: ""), &fx)
        remove(memberId, &fx)
        if state == .stable || state == .completingRebalance {
            maybePrepareRebalanceOrCompleteJoin(&fx, reason: reason)
        } else if state == .preparingRebalance && hasAllMembersJoined {
            completeJoinPhase(&fx)
        }
    }

    /// ClassicGroup.remove, answering whatever the member still has parked (Kafka answers a
    /// parked JoinGroup; a parked SyncGroup would otherwise hold up its connection forever).
    mutating func remove(_ memberId: String, _ fx: inout GroupEffects) {
        completeJoin(memberId, Self.joinError(.unknownMemberId, memberId: ""), &fx)
        completeSync(memberId, Self.syncError(.unknownMemberId), &fx)
        remove(memberId)
    }

    // MARK: SyncGroup

    /// GroupMetadataManager.classicGroupSyncToClassicGroup.
    mutating func sync(_ r: SyncGroupRequest, token: GroupRequestToken, _ fx: inout GroupEffects) {
        if let error = validateSyncGroup(r) {
            fx.sync(token, Self.syncError(error))
            return
        }
        let memberId = r.memberId
        switch state {
        case .preparingRebalance:
            fx.sync(token, Self.syncError(.rebalanceInProgress))
        case .completingRebalance:
            if let old = members[memberId]!.awaitingSync {
                // Kafka overwrites a parked SyncGroup; answer it so its connection moves on.
                fx.sync(old, Self.syncError(.rebalanceInProgress))
            }
            members[memberId]!.awaitingSync = token
            removePendingSyncMember(memberId)
            if isLeader(memberId) {
                // Members the leader left out get an empty assignment.
                var assignment: [String: ByteBuffer] = [:]
                for a in r.assignments { assignment[a.memberId] = ByteBuffer(bytes: a.assignment.readableBytesView) }
                let missing = memberOrder.filter { assignment[$0] == nil }
                if !missing.isEmpty {
                    fx.log("group \(groupId) generation \(generationId): empty assignments for \(missing.joined(separator: ", "))")
                }
                setAndPropagateAssignment(assignment, &fx)
                transition(to: .stable, at: fx.now)
                fx.log("group \(groupId) generation \(generationId) is stable")
            }
        case .stable:
            removePendingSyncMember(memberId)
            var resp = SyncGroupResponse()
            resp.protocolType = protocolType
            resp.protocolName = protocolName
            resp.assignment = members[memberId]!.assignment
            fx.sync(token, resp)
        case .empty:
            fx.sync(token, Self.syncError(.unknownMemberId))
        case .dead:
            fx.sync(token, Self.syncError(.coordinatorNotAvailable))
        }
    }

    /// GroupMetadataManager.validateSyncGroup.
    func validateSyncGroup(_ r: SyncGroupRequest) -> ErrorCode? {
        if state == .dead { return .coordinatorNotAvailable }
        if let e = validateMember(r.memberId, instanceId: r.groupInstanceId) { return e }
        if r.generationId != generationId { return .illegalGeneration }
        func inconsistent(_ requested: String?, _ current: String?) -> Bool {
            requested != nil && current != nil && requested != current
        }
        if inconsistent(r.protocolType, protocolType) || inconsistent(r.protocolName, protocolName) { return .inconsistentGroupProtocol }
        return nil
    }

    /// GroupMetadataManager.removePendingSyncMember: the sync timer stops once everyone synced.
    mutating func removePendingSyncMember(_ memberId: String) {
        pendingSyncMembers.remove(memberId)
        switch state {
        case .dead, .empty, .preparingRebalance: syncTimer = nil
        case .completingRebalance, .stable: if hasReceivedSyncFromAllMembers { syncTimer = nil }
        }
    }

    // MARK: Heartbeat, LeaveGroup

    /// GroupMetadataManager.classicGroupHeartbeatToClassicGroup + validateClassicGroupHeartbeat.
    mutating func heartbeat(memberId: String, instanceId: String?, generation: Int32, _ fx: inout GroupEffects) -> ErrorCode {
        if state == .dead { return .coordinatorNotAvailable }
        if let e = validateMember(memberId, instanceId: instanceId) { return e }
        if generation != generationId { return .illegalGeneration }
        switch state {
        case .empty:
            return .unknownMemberId
        case .preparingRebalance:
            // Tells the member to rejoin.
            rescheduleHeartbeat(memberId, timeoutMs: Int64(members[memberId]!.sessionTimeoutMs), &fx)
            return .rebalanceInProgress
        case .completingRebalance, .stable:
            rescheduleHeartbeat(memberId, timeoutMs: Int64(members[memberId]!.sessionTimeoutMs), &fx)
            return .none
        case .dead:
            return .coordinatorNotAvailable
        }
    }

    /// GroupMetadataManager.classicGroupLeaveToClassicGroup: members leave by member id, or
    /// (administratively) static members by instance id alone; the group then rebalances.
    mutating func leave(_ leaving: [GroupCoordinatorStateMachine.LeavingMember], _ fx: inout GroupEffects) -> (ErrorCode, [ErrorCode]) {
        if state == .dead { return (.coordinatorNotAvailable, []) }
        var codes: [ErrorCode] = []
        for m in leaving {
            if m.memberId.isEmpty {
                if let instanceId = m.groupInstanceId, let existing = staticMemberId(instanceId) {
                    removeCurrentMember(existing, &fx)
                    codes.append(.none)
                } else {
                    codes.append(.unknownMemberId)
                }
            } else if isPendingMember(m.memberId) {
                remove(m.memberId, &fx)
                fx.log("pending member \(m.memberId) left group \(groupId)")
                codes.append(.none)
            } else if let e = validateMember(m.memberId, instanceId: m.groupInstanceId) {
                codes.append(e)
            } else {
                removeCurrentMember(m.memberId, &fx)
                codes.append(.none)
            }
        }
        if codes.contains(.none) {
            switch state {
            case .stable, .completingRebalance: maybePrepareRebalanceOrCompleteJoin(&fx, reason: "members left the group")
            case .preparingRebalance: maybeCompleteJoinPhase(&fx)
            default: break
            }
        }
        return (.none, codes)
    }

    /// GroupMetadataManager.removeCurrentMemberFromClassicGroup.
    mutating func removeCurrentMember(_ memberId: String, _ fx: inout GroupEffects) {
        fx.log("member \(memberId) left group \(groupId)")
        completeJoin(memberId, Self.joinError(.unknownMemberId, memberId: ""), &fx)
        remove(memberId, &fx)
    }

    // MARK: offsets, unloading, timers

    /// ClassicGroup.validateOffsetCommit (not transactional), and the session refresh of
    /// OffsetMetadataManager.commitOffset for Stable and PreparingRebalance groups.
    mutating func validateOffsetCommit(memberId: String, instanceId: String?, generation: Int32, _ fx: inout GroupEffects) -> ErrorCode? {
        if state == .dead { return .coordinatorNotAvailable }
        // Generation -1 from the admin client or an assign() consumer: only into an Empty group.
        if generation < 0 && state == .empty { return nil }
        if generation >= 0 || !memberId.isEmpty || instanceId != nil {
            if let e = validateMember(memberId, instanceId: instanceId) { return e }
            if generation != generationId { return .illegalGeneration }
        } else if state != .empty {
            return .unknownMemberId
        }
        // The member has its generation but not yet its assignment.
        if state == .completingRebalance { return .rebalanceInProgress }
        if (state == .stable || state == .preparingRebalance), let m = members[memberId] {
            rescheduleHeartbeat(memberId, timeoutMs: Int64(m.sessionTimeoutMs), &fx)
        }
        return nil
    }

    /// GroupMetadataManager.onUnloaded for one group.
    mutating func unload(_ fx: inout GroupEffects) {
        let was = state
        transition(to: .dead, at: fx.now)
        for id in memberOrder {
            var join = Self.joinError(.notCoordinator, memberId: id)
            join.protocolName = nil
            completeJoin(id, join, &fx)
            completeSync(id, Self.syncError(.notCoordinator), &fx)
        }
        if was != .empty { fx.log("unloaded group \(groupId) at generation \(generationId)") }
    }

    /// Fires this group's timers that are due, earliest first; a timer set while firing waits
    /// for the next tick.
    mutating func fireTimers(_ fx: inout GroupEffects) {
        enum Key { case join, sync, heartbeat(String) }
        var due: [(Int64, Key)] = []
        if let t = joinTimer, t.deadline <= fx.now { due.append((t.deadline, .join)) }
        if let t = syncTimer, t.deadline <= fx.now { due.append((t.deadline, .sync)) }
        for (id, d) in heartbeatDeadlines where d <= fx.now { due.append((d, .heartbeat(id))) }
        due.sort { $0.0 < $1.0 }
        for (deadline, key) in due {
            switch key {
            case .join:
                guard let t = joinTimer, t.deadline == deadline else { continue }
                joinTimer = nil
                switch t {
                case .complete: completeJoinPhase(&fx)
                case .initial(_, let delay, let remaining): tryCompleteInitialRebalanceElseSchedule(delayMs: delay, remainingMs: remaining, &fx)
                }
            case .sync:
                guard let t = syncTimer, t.deadline == deadline else { continue }
                syncTimer = nil
                expirePendingSync(generation: t.generation, &fx)
            case .heartbeat(let id):
                guard heartbeatDeadlines[id] == deadline else { continue }
                heartbeatDeadlines[id] = nil
                expireHeartbeat(id, &fx)
            }
        }
    }

    /// DescribeGroups for a group held here (GroupMetadataManager.describeGroups): member
    /// metadata and the protocol only once the group is Stable.
    public func describe() -> DescribeGroupsResponse.DescribedGroup {
        var g = DescribeGroupsResponse.DescribedGroup()
        g.groupId = groupId
        g.groupState = state.rawValue
        g.protocolType = protocolType ?? ""
        g.protocolData = state == .stable ? (protocolName ?? "") : ""
        g.members = allMembers.map { m in
            var d = DescribeGroupsResponse.DescribedGroup.DescribedGroupMember()
            d.memberId = m.memberId
            d.groupInstanceId = m.groupInstanceId
            d.clientId = m.clientId
            d.clientHost = m.clientHost
            d.memberMetadata = state == .stable ? m.metadata(protocolName) : ByteBuffer()
            d.memberAssignment = m.assignment
            return d
        }
        return g
    }
}
