import KafkaProtocol
import NIOCore

/// Names a parked JoinGroup or SyncGroup request: the driver hands one out per request and
/// the state machine answers it, now or later, through `GroupOutput`.
public typealias GroupRequestToken = UInt64

/// The states of a classic group, with Kafka's names (ClassicGroupState.java). Transitions:
/// Empty → PreparingRebalance → CompletingRebalance → Stable → PreparingRebalance …, and any
/// state → Dead when the group is deleted or unloaded.
public enum ClassicGroupState: String, Sendable, CaseIterable {
    case empty = "Empty"
    case preparingRebalance = "PreparingRebalance"
    case completingRebalance = "CompletingRebalance"
    case stable = "Stable"
    case dead = "Dead"

    /// ClassicGroupState's validPreviousStates.
    var validPreviousStates: Set<ClassicGroupState> {
        switch self {
        case .empty: [.preparingRebalance]
        case .preparingRebalance: [.stable, .completingRebalance, .empty]
        case .completingRebalance: [.preparingRebalance]
        case .stable: [.completingRebalance]
        case .dead: [.stable, .preparingRebalance, .completingRebalance, .empty, .dead]
        }
    }
}

/// One protocol (assignor) a member offers, with its subscription metadata.
public struct GroupProtocol: Sendable, Equatable {
    public var name: String
    public var metadata: ByteBuffer

    public init(name: String, metadata: ByteBuffer) {
        self.name = name
        // A right-sized copy: a slice would pin the whole request buffer for the member's life.
        self.metadata = ByteBuffer(bytes: metadata.readableBytesView)
    }
}

/// A member of a classic group (ClassicGroupMember.java).
public struct ClassicGroupMember: Sendable {
    public let memberId: String
    public var groupInstanceId: String?
    public var clientId: String
    public var clientHost: String
    public var rebalanceTimeoutMs: Int32
    public var sessionTimeoutMs: Int32
    public var protocolType: String
    /// In the member's order of preference.
    public var protocols: [GroupProtocol]
    public var assignment = ByteBuffer()
    /// The JoinGroup request waiting for the join phase to complete.
    public internal(set) var awaitingJoin: GroupRequestToken?
    /// The SyncGroup request waiting for the leader's assignment.
    public internal(set) var awaitingSync: GroupRequestToken?
    /// Joined but has not yet been answered a generation: its session timer is the new-member
    /// join timeout and it may expire even while awaiting join.
    public internal(set) var isNew = false

    /// ClassicGroupMember.hasSatisfiedHeartbeat: a member parked in JoinGroup or SyncGroup
    /// needs no heartbeat, except a new one.
    var hasSatisfiedHeartbeat: Bool { isNew ? false : (awaitingJoin != nil || awaitingSync != nil) }

    func metadata(_ protocolName: String?) -> ByteBuffer {
        protocols.first { $0.name == protocolName }?.metadata ?? ByteBuffer()
    }

    /// ClassicGroupMember.vote: the member's preferred protocol among the candidates.
    func vote(_ candidates: Set<String>) -> String? { protocols.first { candidates.contains($0.name) }?.name }
}

/// One classic group: its members, generation, protocol and timers (Kafka's ClassicGroup.java
/// plus the timer keys GroupMetadataManager schedules for it). A value; the coordinator state
/// machine owns it.
public struct ClassicGroup: Sendable {
    public let groupId: String
    public internal(set) var state: ClassicGroupState = .empty
    public internal(set) var previousState: ClassicGroupState = .dead
    /// When the group entered its state (Kafka's currentStateTimestamp), on the injected clock.
    public internal(set) var stateSince: Int64
    public internal(set) var generationId: Int32 = 0
    public internal(set) var protocolType: String?
    public internal(set) var protocolName: String?
    public internal(set) var leaderId: String?
    /// Members by id; `memberOrder` keeps join order, so leader succession is deterministic
    /// (Kafka takes the first of a HashMap's keys).
    public internal(set) var members: [String: ClassicGroupMember] = [:]
    public internal(set) var memberOrder: [String] = []
    /// group.instance.id → member id of the static members.
    public internal(set) var staticMembers: [String: String] = [:]
    /// Members that were given an id (MEMBER_ID_REQUIRED) and have not joined with it yet.
    public internal(set) var pendingJoinMembers: Set<String> = []
    /// Members of this generation that have not sent SyncGroup yet.
    public internal(set) var pendingSyncMembers: Set<String> = []
    /// Protocol name → number of members that support it.
    var supportedProtocolCounts: [String: Int] = [:]
    /// Topics the members subscribe to (consumer protocol only; nil when unknown).
    public internal(set) var subscribedTopics: Set<String>?
    var newMemberAdded = false

    // Timers, as GroupMetadataManager keys them: one heartbeat deadline per member or pending
    // member, one join deadline and one sync deadline per group (milliseconds of the injected clock).
    public internal(set) var heartbeatDeadlines: [String: Int64] = [:]
    var joinTimer: JoinTimer?
    var syncTimer: (deadline: Int64, generation: Int32)?

    enum JoinTimer: Sendable {
        /// completeClassicGroupJoin when it fires.
        case complete(deadline: Int64)
        /// tryCompleteInitialRebalanceElseSchedule(delayMs, remainingMs) when it fires.
        case initial(deadline: Int64, delayMs: Int64, remainingMs: Int64)

        var deadline: Int64 {
            switch self {
            case .complete(let d), .initial(let d, _, _): d
            }
        }
    }

    public init(groupId: String, now: Int64) {
        self.groupId = groupId
        self.stateSince = now
    }

    // MARK: queries

    public var numMembers: Int { members.count }
    public func hasMember(_ id: String) -> Bool { members[id] != nil }
    public func isLeader(_ id: String) -> Bool { leaderId == id }
    public func isPendingMember(_ id: String) -> Bool { pendingJoinMembers.contains(id) }
    public func staticMemberId(_ instanceId: String) -> String? { staticMembers[instanceId] }
    var allMembers: [ClassicGroupMember] { memberOrder.compactMap { members[$0] } }
    var numAwaitingJoinResponse: Int { members.values.reduce(0) { $0 + ($1.awaitingJoin != nil ? 1 : 0) } }
    var hasAllMembersJoined: Bool { members.count == numAwaitingJoinResponse && pendingJoinMembers.isEmpty }
    var hasReceivedSyncFromAllMembers: Bool { pendingSyncMembers.isEmpty }
    var canRebalance: Bool { ClassicGroupState.preparingRebalance.validPreviousStates.contains(state) }
    var usesConsumerProtocol: Bool { protocolType == "consumer" }

    /// The largest rebalance timeout of the members (ClassicGroup.rebalanceTimeoutMs).
    var rebalanceTimeoutMs: Int64 { Int64(members.values.map(\.rebalanceTimeoutMs).max() ?? 0) }

    /// ClassicGroup.supportsProtocols: an Empty group takes any non-empty protocol type with at
    /// least one protocol; otherwise the type must match and one protocol must be supported by
    /// every member.
    func supportsProtocols(type: String, names: [String]) -> Bool {
        if state == .empty { return !type.isEmpty && !names.isEmpty }
        return protocolType == type && names.contains { supportedProtocolCounts[$0, default: 0] == members.count }
    }

    /// ClassicGroup.validateMember: a static member must be the one mapped to its instance id
    /// (else FENCED_INSTANCE_ID), and the member must exist (else UNKNOWN_MEMBER_ID).
    func validateMember(_ memberId: String, instanceId: String?) -> ErrorCode? {
        if let instanceId {
            guard let existing = staticMembers[instanceId] else { return .unknownMemberId }
            if existing != memberId { return .fencedInstanceId }
        }
        return hasMember(memberId) ? nil : .unknownMemberId
    }

    /// ClassicGroup.selectProtocol: among the protocols every member supports, each member
    /// votes for its preferred one; the most votes win (ties: the first voted, in join order).
    func selectProtocol() -> String? {
        let candidates = Set(supportedProtocolCounts.filter { $0.value == members.count }.keys)
        var votes: [String: Int] = [:]
        var order: [String] = []
        for m in allMembers {
            guard let v = m.vote(candidates) else { continue }
            if votes[v] == nil { order.append(v) }
            votes[v, default: 0] += 1
        }
        var best: String?
        for name in order where best == nil || votes[name]! > votes[best!]! { best = name }
        return best
    }

    /// ClassicGroup.currentClassicGroupMembers: what the leader gets in its JoinGroup response.
    func currentMembers() -> [JoinGroupResponse.JoinGroupResponseMember] {
        allMembers.map { m in
            var r = JoinGroupResponse.JoinGroupResponseMember()
            r.memberId = m.memberId
            r.groupInstanceId = m.groupInstanceId
            r.metadata = m.metadata(protocolName)
            return r
        }
    }

    /// ClassicGroup.computeSubscribedTopics: the union of the members' subscriptions, read from
    /// the consumer protocol's version-0 prefix (version, topics), which every version shares.
    func computeSubscribedTopics() -> Set<String>? {
        guard let type = protocolType, type == "consumer" else { return nil }
        if members.isEmpty { return [] }
        guard let name = protocolName else { return nil }
        var topics = Set<String>()
        for m in members.values {
            var b = m.metadata(name)
            do {
                _ = try b.readKafka(Int16.self)
                guard let n = try b.readKafkaArrayCount(compact: false) else { return nil }
                for _ in 0..<n { topics.insert(try b.readKafkaString(compact: false)) }
            } catch {
                return nil
            }
        }
        return topics
    }

    /// ClassicGroup.isSubscribedToTopic: unknown subscriptions count as subscribed when the
    /// group uses the consumer protocol.
    public func isSubscribed(to topic: String) -> Bool {
        subscribedTopics.map { $0.contains(topic) } ?? usesConsumerProtocol
    }

    // MARK: mutations (ClassicGroup.java)

    mutating func transition(to next: ClassicGroupState, at now: Int64) {
        assert(next.validPreviousStates.contains(state), "group \(groupId): \(state) → \(next) is not a valid transition")
        previousState = state
        state = next
        stateSince = now
    }

    /// ClassicGroup.add: the first member sets the protocol type and becomes leader.
    mutating func add(_ member: ClassicGroupMember) {
        if let instanceId = member.groupInstanceId { staticMembers[instanceId] = member.memberId }
        if members.isEmpty { protocolType = member.protocolType }
        if leaderId == nil { leaderId = member.memberId }
        members[member.memberId] = member
        memberOrder.append(member.memberId)
        for p in member.protocols { supportedProtocolCounts[p.name, default: 0] += 1 }
        pendingJoinMembers.remove(member.memberId)
    }

    /// ClassicGroup.remove: a removed leader is succeeded by the first remaining member.
    mutating func remove(_ memberId: String) {
        if let m = members.removeValue(forKey: memberId) {
            memberOrder.removeAll { $0 == memberId }
            for p in m.protocols { supportedProtocolCounts[p.name, default: 0] -= 1 }
            if let instanceId = m.groupInstanceId, staticMembers[instanceId] == memberId { staticMembers[instanceId] = nil }
        }
        if isLeader(memberId) { leaderId = memberOrder.first }
        pendingJoinMembers.remove(memberId)
        pendingSyncMembers.remove(memberId)
        heartbeatDeadlines[memberId] = nil
    }

    /// ClassicGroup.updateMember: new protocols and timeouts, and the JoinGroup now parked.
    mutating func updateMember(_ memberId: String, protocols: [GroupProtocol], rebalanceTimeoutMs: Int32,
                               sessionTimeoutMs: Int32, awaitingJoin token: GroupRequestToken?, _ fx: inout GroupEffects) {
        guard var m = members[memberId] else { return }
        for p in m.protocols { supportedProtocolCounts[p.name, default: 0] -= 1 }
        m.protocols = protocols
        for p in protocols { supportedProtocolCounts[p.name, default: 0] += 1 }
        m.rebalanceTimeoutMs = rebalanceTimeoutMs
        m.sessionTimeoutMs = sessionTimeoutMs
        if let old = m.awaitingJoin, old != token {
            // Kafka overwrites the parked future (the client gave up on it); here every parked
            // request is answered, or its connection would stall behind it.
            fx.join(old, Self.joinError(.rebalanceInProgress, memberId: memberId))
        }
        m.awaitingJoin = token
        members[memberId] = m
    }

    /// ClassicGroup.completeJoinFuture.
    @discardableResult
    mutating func completeJoin(_ memberId: String, _ response: JoinGroupResponse, _ fx: inout GroupEffects) -> Bool {
        guard let token = members[memberId]?.awaitingJoin else { return false }
        members[memberId]!.awaitingJoin = nil
        fx.join(token, response)
        return true
    }

    /// ClassicGroup.completeSyncFuture.
    @discardableResult
    mutating func completeSync(_ memberId: String, _ response: SyncGroupResponse, _ fx: inout GroupEffects) -> Bool {
        guard let token = members[memberId]?.awaitingSync else { return false }
        members[memberId]!.awaitingSync = nil
        fx.sync(token, response)
        return true
    }

    /// ClassicGroup.maybeElectNewJoinedLeader: keep a leader that rejoined, else pick a member
    /// that did; false when nobody rejoined.
    mutating func maybeElectNewJoinedLeader() -> Bool {
        guard let leader = leaderId, let current = members[leader] else { return false }
        if current.awaitingJoin != nil { return true }
        if let next = allMembers.first(where: { $0.awaitingJoin != nil }) {
            leaderId = next.memberId
            return true
        }
        return false
    }

    /// ClassicGroup.replaceStaticMember: the new member id takes over the old one's place,
    /// protocols and assignment; requests parked by the old id are fenced.
    mutating func replaceStaticMember(instanceId: String, old: String, new: String, _ fx: inout GroupEffects) {
        guard let removed = members[old] else { return }
        var fencedJoin = JoinGroupResponse()
        fencedJoin.errorCode = ErrorCode.fencedInstanceId.rawValue
        fencedJoin.memberId = old
        fencedJoin.protocolName = nil
        completeJoin(old, fencedJoin, &fx)
        var fencedSync = SyncGroupResponse()
        fencedSync.errorCode = ErrorCode.fencedInstanceId.rawValue
        completeSync(old, fencedSync, &fx)
        members[old] = nil
        heartbeatDeadlines[old] = nil
        members[new] = ClassicGroupMember(memberId: new, groupInstanceId: removed.groupInstanceId, clientId: removed.clientId,
                                          clientHost: removed.clientHost, rebalanceTimeoutMs: removed.rebalanceTimeoutMs,
                                          sessionTimeoutMs: removed.sessionTimeoutMs, protocolType: removed.protocolType,
                                          protocols: removed.protocols, assignment: removed.assignment)
        if let i = memberOrder.firstIndex(of: old) { memberOrder[i] = new }
        if isLeader(old) { leaderId = new }
        staticMembers[instanceId] = new
    }

    /// ClassicGroup.initNextGeneration.
    mutating func initNextGeneration(at now: Int64) {
        generationId &+= 1
        if !members.isEmpty {
            protocolName = selectProtocol()
            subscribedTopics = computeSubscribedTopics()
            transition(to: .completingRebalance, at: now)
        } else {
            protocolName = nil
            subscribedTopics = computeSubscribedTopics()
            transition(to: .empty, at: now)
        }
        pendingSyncMembers.removeAll()
    }

    static func joinError(_ code: ErrorCode, memberId: String) -> JoinGroupResponse {
        var r = JoinGroupResponse()
        r.errorCode = code.rawValue
        r.memberId = memberId
        return r
    }

    static func syncError(_ code: ErrorCode) -> SyncGroupResponse {
        var r = SyncGroupResponse()
        r.errorCode = code.rawValue
        return r
    }
}
