import KafkaProtocol

/// Partitions by topic id: a member's assignment, current or target.
public typealias TopicAssignment = [KafkaUUID: Set<Int32>]

/// A topic as the consumer-group coordinator sees it: the driver passes the broker's topics
/// in with every heartbeat (Kafka's metadata image).
public struct ConsumerGroupTopic: Sendable, Equatable {
    public var name: String
    public var id: KafkaUUID
    public var partitions: Int32

    public init(name: String, id: KafkaUUID, partitions: Int32) {
        self.name = name
        self.id = id
        self.partitions = partitions
    }
}

/// The states of a consumer group (ConsumerGroup.ConsumerGroupState), as Kafka names them.
public enum ConsumerGroupState: String, Sendable {
    case empty = "Empty"
    case assigning = "Assigning"
    case reconciling = "Reconciling"
    case stable = "Stable"
    case dead = "Dead"
}

/// Where a member is in reconciling its assignment with its target (MemberState.java).
public enum ConsumerMemberState: String, Sendable {
    /// At the target epoch with all of its target partitions.
    case stable = "STABLE"
    /// Must give up partitions first: its epoch stays until it reports them gone.
    case unrevokedPartitions = "UNREVOKED_PARTITIONS"
    /// At the target epoch, waiting for partitions other members still hold.
    case unreleasedPartitions = "UNRELEASED_PARTITIONS"
}

/// A member of a consumer group (ConsumerGroupMember.java).
public struct ConsumerGroupMember: Sendable, Equatable {
    public let memberId: String
    public var instanceId: String?
    public var rackId: String?
    public var clientId: String = ""
    public var clientHost: String = ""
    public var rebalanceTimeoutMs: Int32 = 300_000
    public var subscribedTopicNames: [String] = []
    public var subscribedTopicRegex: String?
    public var serverAssignor: String?
    public var memberEpoch: Int32 = 0
    public var previousMemberEpoch: Int32 = 0
    public var state: ConsumerMemberState = .stable
    /// Partitions the member owns (or is being given) at its epoch.
    public var assigned: TopicAssignment = [:]
    /// Partitions the member must give up before the group moves them.
    public var pendingRevocation: TopicAssignment = [:]

    public init(memberId: String) { self.memberId = memberId }

    func isReconciled(to epoch: Int32) -> Bool { state == .stable && memberEpoch == epoch }
}

/// One consumer group (ConsumerGroup.java plus its GroupMetadataManager timers). A value; the
/// coordinator state machine owns it.
public struct ConsumerGroup: Sendable {
    public let groupId: String
    public internal(set) var groupEpoch: Int32 = 0
    public internal(set) var assignmentEpoch: Int32 = 0
    public internal(set) var members: [String: ConsumerGroupMember] = [:]
    /// The target assignment of each member, computed by the assignor at `assignmentEpoch`.
    public internal(set) var targetAssignment: [String: TopicAssignment] = [:]
    /// The subscribed topics' metadata (name → id, partitions) the target was computed from.
    public internal(set) var subscriptionMetadata: [String: ConsumerGroupTopic] = [:]
    /// The assignor the last target assignment was computed with.
    public internal(set) var assignorName = ""
    /// Session deadline of every member (reset by each heartbeat).
    var sessionDeadlines: [String: Int64] = [:]
    /// Rebalance (revocation) deadline of a member in UNREVOKED_PARTITIONS, at that epoch.
    var rebalanceDeadlines: [String: (deadline: Int64, epoch: Int32)] = [:]
    /// When the group last became empty (for dropping idle groups from memory).
    var emptySince: Int64

    init(groupId: String, now: Int64) {
        self.groupId = groupId
        self.emptySince = now
    }

    /// ConsumerGroup.updateState's rule.
    public var state: ConsumerGroupState {
        if members.isEmpty { return .empty }
        if groupEpoch > assignmentEpoch { return .assigning }
        for m in members.values where !m.isReconciled(to: assignmentEpoch) { return .reconciling }
        return .stable
    }

    func staticMember(_ instanceId: String) -> ConsumerGroupMember? {
        members.values.first { $0.instanceId == instanceId }
    }

    /// The epoch of the member that holds a partition (assigned or pending revocation), or
    /// -1 if it is free (ConsumerGroup.currentPartitionEpoch), ignoring `except`.
    func currentPartitionEpoch(_ topic: KafkaUUID, _ partition: Int32, except: String) -> Int32 {
        for m in members.values where m.memberId != except {
            if m.assigned[topic]?.contains(partition) == true || m.pendingRevocation[topic]?.contains(partition) == true {
                return m.memberEpoch
            }
        }
        return -1
    }

    /// The topic names the members subscribe to, by name or by regex, among `topics`.
    func subscribedTopics(_ topics: [ConsumerGroupTopic]) -> Set<String> {
        var names = Set<String>()
        for m in members.values { names.formUnion(Self.topics(of: m, in: topics)) }
        return names
    }

    /// One member's topics: its names and, with a regex, every topic whose whole name matches.
    static func topics(of m: ConsumerGroupMember, in topics: [ConsumerGroupTopic]) -> Set<String> {
        var names = Set(m.subscribedTopicNames)
        if let pattern = m.subscribedTopicRegex, !pattern.isEmpty, let re = try? Regex(pattern) {
            for t in topics where (try? re.wholeMatch(in: t.name)) != nil { names.insert(t.name) }
        }
        return names
    }

    /// Whether a regex compiles (Swift Regex syntax, which accepts RE2's common subset).
    static func isValidRegex(_ pattern: String) -> Bool { (try? Regex(pattern)) != nil }
}

// MARK: - Reconciliation (CurrentAssignmentBuilder)

extension ConsumerGroupMember {
    /// CurrentAssignmentBuilder.build: moves the member one step towards its target.
    /// `owned` is what the member reported (nil: not reported in this heartbeat);
    /// `partitionEpoch` says who else still holds a partition (-1: free).
    func reconciled(targetEpoch: Int32, target: TopicAssignment, owned: TopicAssignment?,
                    partitionEpoch: (KafkaUUID, Int32) -> Int32) -> ConsumerGroupMember {
        switch state {
        case .stable:
            if memberEpoch != targetEpoch { return computeNextAssignment(targetEpoch, target, partitionEpoch) }
            return self
        case .unrevokedPartitions:
            // The member keeps its epoch until it says the revoked partitions are gone.
            if let owned, !Self.overlaps(owned, pendingRevocation) {
                return computeNextAssignment(targetEpoch, target, partitionEpoch)
            }
            return self
        case .unreleasedPartitions:
            return computeNextAssignment(targetEpoch, target, partitionEpoch)
        }
    }

    /// CurrentAssignmentBuilder.computeNextAssignment.
    func computeNextAssignment(_ targetEpoch: Int32, _ target: TopicAssignment,
                               _ partitionEpoch: (KafkaUUID, Int32) -> Int32) -> ConsumerGroupMember {
        var keep: TopicAssignment = [:]
        var revoke: TopicAssignment = [:]
        var add: TopicAssignment = [:]
        var unreleased = false
        let topics = Set(assigned.keys).union(target.keys)
        for t in topics {
            let current = assigned[t] ?? []
            let wanted = target[t] ?? []
            let k = current.intersection(wanted)
            let r = current.subtracting(wanted)
            var a = Set<Int32>()
            for p in wanted.subtracting(current) {
                if partitionEpoch(t, p) == -1 { a.insert(p) } else { unreleased = true }
            }
            if !k.isEmpty { keep[t] = k }
            if !r.isEmpty { revoke[t] = r }
            if !a.isEmpty { add[t] = a }
        }
        var next = self
        if !revoke.isEmpty {
            // Revoke first: the member keeps its epoch and only what it keeps.
            next.state = .unrevokedPartitions
            next.assigned = keep
            next.pendingRevocation = revoke
            return next
        }
        var all = keep
        for (t, ps) in add { all[t, default: []].formUnion(ps) }
        next.previousMemberEpoch = memberEpoch
        next.memberEpoch = targetEpoch
        next.assigned = all
        next.pendingRevocation = [:]
        next.state = unreleased ? .unreleasedPartitions : .stable
        return next
    }

    static func overlaps(_ a: TopicAssignment, _ b: TopicAssignment) -> Bool {
        for (t, ps) in a { if let q = b[t], !ps.isDisjoint(with: q) { return true } }
        return false
    }

    /// Whether `owned` is a subset of `assigned` (GroupMetadataManager.isSubset).
    static func isSubset(_ owned: TopicAssignment?, of assigned: TopicAssignment) -> Bool {
        guard let owned else { return false }
        for (t, ps) in owned where !ps.isEmpty {
            guard let q = assigned[t], ps.isSubset(of: q) else { return false }
        }
        return true
    }
}

// MARK: - Server-side assignors

/// The server-side assignors (`group.consumer.assignors`: uniform, range).
public enum ConsumerGroupAssignor {
    public static let names = ["uniform", "range"]
    public static let defaultName = "uniform"

    /// One member as an assignor sees it.
    public struct Subscriber: Sendable {
        public var memberId: String
        public var topics: Set<KafkaUUID>

        public init(memberId: String, topics: Set<KafkaUUID>) {
            self.memberId = memberId
            self.topics = topics
        }
    }

    public static func assign(_ name: String, members: [Subscriber], partitions: [KafkaUUID: Int32],
                              previous: [String: TopicAssignment]) -> [String: TopicAssignment] {
        name == "range" ? range(members: members, partitions: partitions)
                        : uniform(members: members, partitions: partitions, previous: previous)
    }

    /// RangeAssignor: per topic, its subscribers in member-id order get contiguous ranges; the
    /// first `partitions % subscribers` get one more.
    public static func range(members: [Subscriber], partitions: [KafkaUUID: Int32]) -> [String: TopicAssignment] {
        var out: [String: TopicAssignment] = [:]
        for m in members { out[m.memberId] = [:] }
        for (t, n) in partitions {
            let subs = members.filter { $0.topics.contains(t) }.map(\.memberId).sorted()
            guard !subs.isEmpty else { continue }
            let base = Int(n) / subs.count, extra = Int(n) % subs.count
            var next = 0
            for (i, id) in subs.enumerated() {
                let count = base + (i < extra ? 1 : 0)
                if count > 0 { out[id]![t] = Set((next..<next + count).map { Int32($0) }) }
                next += count
            }
        }
        return out
    }

    /// UniformAssignor, sticky and balanced: each member keeps what it had up to its quota
    /// (its fair share of the partitions of its topics, shared with their other subscribers),
    /// and every partition left goes to the least-loaded member subscribed to its topic.
    /// With one subscription for all members, counts differ by at most one.
    public static func uniform(members: [Subscriber], partitions: [KafkaUUID: Int32],
                               previous: [String: TopicAssignment]) -> [String: TopicAssignment] {
        var out: [String: TopicAssignment] = [:]
        var count: [String: Int] = [:]
        let sorted = members.sorted { $0.memberId < $1.memberId }
        for m in sorted { out[m.memberId] = [:]; count[m.memberId] = 0 }
        var subscribers: [KafkaUUID: Int] = [:]
        for m in sorted { for t in m.topics where partitions[t] != nil { subscribers[t, default: 0] += 1 } }
        var share: [String: Double] = [:]
        for m in sorted {
            share[m.memberId] = m.topics.reduce(0.0) { s, t in
                guard let n = partitions[t], let k = subscribers[t] else { return s }
                return s + Double(n) / Double(k)
            }
        }
        var taken = Set<TopicPartitionKey>()
        let total = partitions.values.reduce(0) { $0 + Int($1) }
        var extraSlots = total - sorted.reduce(0) { $0 + Int(share[$1.memberId]!.rounded(.down)) }
        func keep(_ m: Subscriber, upTo quota: Int, extra: Bool) {
            guard let prev = previous[m.memberId] else { return }
            for t in prev.keys.sorted(by: { $0.description < $1.description }) where m.topics.contains(t) {
                guard let n = partitions[t] else { continue }
                for p in prev[t]!.sorted() where p < n && !taken.contains(TopicPartitionKey(t, p)) {
                    if count[m.memberId]! >= quota { return }
                    if extra { if extraSlots <= 0 { return }; extraSlots -= 1 }
                    taken.insert(TopicPartitionKey(t, p))
                    out[m.memberId]![t, default: []].insert(p)
                    count[m.memberId]! += 1
                }
            }
        }
        for m in sorted { keep(m, upTo: Int(share[m.memberId]!.rounded(.down)), extra: false) }
        for m in sorted { keep(m, upTo: Int(share[m.memberId]!.rounded(.up)), extra: true) }
        // Partitions still free, those with the fewest candidates first.
        var free: [(KafkaUUID, Int32)] = []
        for t in partitions.keys.sorted(by: { $0.description < $1.description }) {
            for p in 0..<partitions[t]! where !taken.contains(TopicPartitionKey(t, p)) { free.append((t, p)) }
        }
        free.sort { (subscribers[$0.0] ?? 0) < (subscribers[$1.0] ?? 0) }
        for (t, p) in free {
            var best: String?
            for m in sorted where m.topics.contains(t) {
                if best == nil || count[m.memberId]! < count[best!]! { best = m.memberId }
            }
            guard let id = best else { continue }
            out[id]![t, default: []].insert(p)
            count[id]! += 1
        }
        return out
    }
}

struct TopicPartitionKey: Hashable {
    var topic: KafkaUUID
    var partition: Int32
    init(_ topic: KafkaUUID, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
}
