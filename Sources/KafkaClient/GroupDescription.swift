import KafkaProtocol
import NIOCore

/// The broker that coordinates a group, as FindCoordinator names it.
public struct GroupCoordinator: Sendable, Hashable, CustomStringConvertible {
    public var nodeId: Int32
    public var address: BrokerAddress

    public init(nodeId: Int32, address: BrokerAddress) {
        self.nodeId = nodeId
        self.address = address
    }

    /// `host:port (id)`, as kafka-consumer-groups.sh prints a coordinator.
    public var description: String { "\(address) (\(nodeId))" }
}

/// A group as DescribeGroups reports it, with each member's assignment decoded.
public struct GroupDescription: Sendable, Equatable {
    /// Kafka's group states (`org.apache.kafka.common.GroupState`) that a consumer group,
    /// classic or KIP-848, can be in.
    public static let consumerGroupStates = ["PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Empty",
                                             "Assigning", "Reconciling"]

    public var groupId: String
    public var state: String
    /// `consumer` for consumers; empty for a group that only holds offsets (Kafka's
    /// coordinator creates those on a commit from a consumer without group management).
    public var protocolType: String
    /// The selected protocol: for consumers, the assignor (`range`, `cooperative-sticky`).
    public var protocolName: String
    public var members: [GroupMember]
    /// The broker that answered, when known.
    public var coordinator: GroupCoordinator?

    public init(groupId: String, state: String, protocolType: String = "", protocolName: String = "", members: [GroupMember] = []) {
        self.groupId = groupId
        self.state = state
        self.protocolType = protocolType
        self.protocolName = protocolName
        self.members = members
    }

    /// From a DescribeGroups entry. Assignments are decoded as the consumer protocol when the
    /// protocol type is `consumer` or empty, as Kafka's admin client does
    /// (`DescribeConsumerGroupsHandler`); anything else is left opaque.
    public init(_ g: DescribeGroupsResponse.DescribedGroup) {
        let consumer = g.protocolType == "consumer" || g.protocolType.isEmpty
        self.init(groupId: g.groupId, state: g.groupState, protocolType: g.protocolType, protocolName: g.protocolData,
                  members: g.members.map { m in
                      GroupMember(memberId: m.memberId, groupInstanceId: m.groupInstanceId, clientId: m.clientId, host: m.clientHost,
                                  assignment: consumer ? MemberAssignment(consumerBytes: m.memberAssignment)
                                      : .otherProtocol(g.protocolType, byteCount: m.memberAssignment.readableBytes))
                  })
    }

    /// Whether offsets may be reset: Kafka's tool requires Empty or Dead (no live members).
    public var isInactive: Bool { state == "Empty" || state == "Dead" }

    /// Members with most partitions first, equals in the broker's order: the order
    /// kafka-consumer-groups.sh lists them in (a stable sort by assignment size, descending).
    public var membersByAssignmentSize: [GroupMember] {
        members.enumerated().sorted { a, b in
            let (x, y) = (a.element.assignedPartitions.count, b.element.assignedPartitions.count)
            return x != y ? x > y : a.offset < b.offset
        }.map(\.element)
    }
}

/// One member of a group.
public struct GroupMember: Sendable, Equatable {
    public var memberId: String
    /// `group.instance.id` of a static member; nil for a dynamic one.
    public var groupInstanceId: String?
    public var clientId: String
    public var host: String
    public var assignment: MemberAssignment

    public init(memberId: String, groupInstanceId: String? = nil, clientId: String, host: String, assignment: MemberAssignment) {
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.clientId = clientId
        self.host = host
        self.assignment = assignment
    }

    /// The partitions this member holds, sorted; empty unless its assignment was decoded.
    public var assignedPartitions: [TopicPartition] {
        if case .consumer(let a) = assignment { return a.partitions.sorted() }
        return []
    }
}

/// What a member's assignment bytes say.
public enum MemberAssignment: Sendable, Equatable {
    /// No bytes: the member has joined but has no assignment yet (a rebalance is under way).
    case none
    case consumer(ConsumerProtocolAssignment)
    /// Bytes that are not a consumer-protocol assignment; the reason says where they fail.
    case undecodable(byteCount: Int, reason: String)
    /// A group of another protocol type (Kafka Connect's `connect`, say): not decoded.
    case otherProtocol(String, byteCount: Int)

    public init(consumerBytes bytes: ByteBuffer) {
        if bytes.readableBytes == 0 {
            self = .none
            return
        }
        do {
            self = .consumer(try ConsumerProtocolAssignment(decoding: bytes))
        } catch {
            self = .undecodable(byteCount: bytes.readableBytes, reason: "\(error)")
        }
    }

    /// `orders:0,1;payments:2` (Kafka's assignment string: topics sorted, partitions sorted),
    /// `-` for none, or a note saying why there is nothing to show.
    public var summary: String {
        switch self {
        case .none:
            return "-"
        case .consumer(let a):
            let byTopic = Dictionary(grouping: a.partitions, by: \.topic)
            if byTopic.isEmpty { return "-" }
            return byTopic.keys.sorted().map { t in
                "\(t):" + byTopic[t]!.map(\.partition).sorted().map(String.init).joined(separator: ",")
            }.joined(separator: ";")
        case .undecodable(let n, let reason):
            return "(undecodable assignment, \(n) bytes: \(reason))"
        case .otherProtocol(let type, let n):
            return "(\(type) protocol assignment, \(n) bytes)"
        }
    }
}

/// A committed offset as OffsetFetch returns it.
public struct CommittedOffset: Sendable, Equatable {
    public var offset: Int64
    /// nil when the commit carried none (-1 on the wire).
    public var leaderEpoch: Int32?
    public var metadata: String?

    public init(offset: Int64, leaderEpoch: Int32? = nil, metadata: String? = nil) {
        self.offset = offset
        self.leaderEpoch = leaderEpoch
        self.metadata = metadata
    }
}

/// One line of a group's offsets table: a partition a member holds or the group has an
/// offset for, with its log end and lag.
public struct GroupOffsetRow: Sendable, Equatable {
    public var partition: TopicPartition
    public var committed: CommittedOffset?
    public var logEndOffset: Int64?
    /// The member that holds the partition; nil if none does.
    public var member: GroupMember?

    public init(partition: TopicPartition, committed: CommittedOffset?, logEndOffset: Int64?, member: GroupMember?) {
        self.partition = partition
        self.committed = committed
        self.logEndOffset = logEndOffset
        self.member = member
    }

    /// Log end minus committed offset; nil when either is unknown (Kafka's tool shows `-`).
    public var lag: Int64? {
        guard let c = committed?.offset, c >= 0, let end = logEndOffset else { return nil }
        return end - c
    }

    /// The rows of kafka-consumer-groups.sh --describe (ConsumerGroupCommand.collectGroupsOffsets):
    /// first each member's partitions (members with most partitions first, partitions
    /// sorted), whether committed or not, then the partitions with a committed offset that
    /// no member holds, sorted. A partition listed by two members appears under the first.
    public static func rows(group: GroupDescription, committed: [TopicPartition: CommittedOffset],
                            logEndOffsets: [TopicPartition: Int64]) -> [GroupOffsetRow] {
        var rows: [GroupOffsetRow] = []
        var seen = Set<TopicPartition>()
        for m in group.membersByAssignmentSize {
            for tp in m.assignedPartitions where seen.insert(tp).inserted {
                rows.append(GroupOffsetRow(partition: tp, committed: committed[tp], logEndOffset: logEndOffsets[tp], member: m))
            }
        }
        for tp in committed.keys.sorted() where seen.insert(tp).inserted {
            rows.append(GroupOffsetRow(partition: tp, committed: committed[tp], logEndOffset: logEndOffsets[tp], member: nil))
        }
        return rows
    }
}
