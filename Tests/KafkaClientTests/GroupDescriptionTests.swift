import KafkaClient
import KafkaProtocol
import NIOCore
import Testing

/// The describe path for a group with members, which Tern's broker cannot show until its
/// group coordinator lands: a DescribeGroups answer as Kafka's coordinator gives it, its
/// assignments encoded as the consumer protocol (v1 here, as the Java client writes them).
@Suite struct GroupDescriptionTests {
    static func assignment(_ topics: [(String, [Int32])], version: Int16 = 1) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(version)
        b.writeInteger(Int32(topics.count))
        for (name, partitions) in topics {
            b.writeKafkaString(name, compact: false)
            b.writeInteger(Int32(partitions.count))
            for p in partitions { b.writeInteger(p) }
        }
        b.writeInteger(Int32(-1))  // no user data
        if version >= 1 { b.writeInteger(Int16(0)) }  // Java's v1 layout ends with an error code; readers ignore it
        return b
    }

    static func member(_ id: String, instance: String? = nil, client: String, host: String, _ bytes: ByteBuffer) -> DescribeGroupsResponse.DescribedGroup.DescribedGroupMember {
        var m = DescribeGroupsResponse.DescribedGroup.DescribedGroupMember()
        m.memberId = id
        m.groupInstanceId = instance
        m.clientId = client
        m.clientHost = host
        m.memberAssignment = bytes
        return m
    }

    static func stableGroup() -> DescribeGroupsResponse.DescribedGroup {
        var g = DescribeGroupsResponse.DescribedGroup()
        g.groupId = "billing"
        g.groupState = "Stable"
        g.protocolType = "consumer"
        g.protocolData = "range"
        g.members = [
            member("small-1", client: "c1", host: "/10.0.0.1", assignment([("orders", [2])])),
            member("big-2", instance: "pod-2", client: "c2", host: "/10.0.0.2", assignment([("payments", [0]), ("orders", [1, 0])])),
            member("joining-3", client: "c3", host: "/10.0.0.3", ByteBuffer()),
            member("broken-4", client: "c4", host: "/10.0.0.4", ByteBuffer(bytes: [0, 0, 0x7f, 0xff, 0xff, 0xff])),
        ]
        return g
    }

    @Test func membersAndAssignmentsAreDecoded() {
        let d = GroupDescription(Self.stableGroup())
        #expect(d.state == "Stable" && d.protocolType == "consumer" && d.protocolName == "range")
        #expect(!d.isInactive)
        #expect(d.members.map(\.memberId) == ["small-1", "big-2", "joining-3", "broken-4"])
        #expect(d.members[1].groupInstanceId == "pod-2" && d.members[1].host == "/10.0.0.2" && d.members[1].clientId == "c2")
        #expect(d.members[1].assignedPartitions == [TopicPartition("orders", 0), TopicPartition("orders", 1), TopicPartition("payments", 0)])
        #expect(d.members[1].assignment.summary == "orders:0,1;payments:0")
        #expect(d.members[2].assignment == .none)
        if case .undecodable = d.members[3].assignment {} else { Issue.record("garbage decoded: \(d.members[3].assignment)") }
        // Most partitions first; equals keep the broker's order.
        #expect(d.membersByAssignmentSize.map(\.memberId) == ["big-2", "small-1", "joining-3", "broken-4"])
    }

    @Test func otherProtocolTypesAreNotDecoded() {
        var g = Self.stableGroup()
        g.protocolType = "connect"
        let d = GroupDescription(g)
        #expect(d.members[0].assignment == .otherProtocol("connect", byteCount: Self.assignment([("orders", [2])]).readableBytes))
        #expect(d.members[0].assignedPartitions.isEmpty)
    }

    /// kafka-consumer-groups.sh's rows: each member's partitions (biggest member first),
    /// committed or not, then committed partitions that no member holds; lag only where both
    /// the committed offset and the log end are known.
    @Test func offsetRowsFollowKafkasTool() {
        let d = GroupDescription(Self.stableGroup())
        let committed: [TopicPartition: CommittedOffset] = [
            TopicPartition("orders", 0): CommittedOffset(offset: 5, leaderEpoch: 3, metadata: "m"),
            TopicPartition("orders", 2): CommittedOffset(offset: 9),
            TopicPartition("audit", 4): CommittedOffset(offset: 1),
            TopicPartition("zeta", 0): CommittedOffset(offset: 0),
        ]
        let ends: [TopicPartition: Int64] = [
            TopicPartition("orders", 0): 12, TopicPartition("orders", 1): 7, TopicPartition("orders", 2): 9,
            TopicPartition("payments", 0): 3, TopicPartition("audit", 4): 10,
        ]
        let rows = GroupOffsetRow.rows(group: d, committed: committed, logEndOffsets: ends)
        #expect(rows.map(\.partition) == [
            TopicPartition("orders", 0), TopicPartition("orders", 1), TopicPartition("payments", 0),  // big-2
            TopicPartition("orders", 2),                                                              // small-1
            TopicPartition("audit", 4), TopicPartition("zeta", 0),                                    // nobody's
        ])
        #expect(rows.map { $0.member?.memberId } == ["big-2", "big-2", "big-2", "small-1", nil, nil])
        #expect(rows.map(\.lag) == [7, nil, nil, 0, 9, nil])
        #expect(rows[0].committed == CommittedOffset(offset: 5, leaderEpoch: 3, metadata: "m"))
        #expect(rows[1].committed == nil && rows[1].logEndOffset == 7)
    }

    /// Tern's broker today: groups that hold offsets are Empty classic groups, no members.
    @Test func emptyGroupRowsAreItsCommittedPartitions() {
        var g = DescribeGroupsResponse.DescribedGroup()
        g.groupId = "g"
        g.groupState = "Empty"
        let d = GroupDescription(g)
        #expect(d.isInactive && d.members.isEmpty)
        let rows = GroupOffsetRow.rows(group: d, committed: [TopicPartition("t", 1): CommittedOffset(offset: 4), TopicPartition("t", 0): CommittedOffset(offset: 2)],
                                       logEndOffsets: [TopicPartition("t", 0): 2, TopicPartition("t", 1): 10])
        #expect(rows.map(\.partition) == [TopicPartition("t", 0), TopicPartition("t", 1)])
        #expect(rows.map(\.lag) == [0, 6])
    }
}
