import Broker
import KafkaProtocol
import Testing

/// The KIP-848 consumer protocol in the coordinator state machine, driven without I/O:
/// ConsumerGroupHeartbeat requests and an injected clock in, responses out. Each test names
/// the Kafka behaviour (GroupMetadataManager.consumerGroupHeartbeat, CurrentAssignmentBuilder,
/// the assignors) it pins.
@Suite struct ConsumerGroupTests {
    static let t1 = KafkaUUID(high: 1, low: 1)
    static let t2 = KafkaUUID(high: 2, low: 2)

    struct Harness {
        var m: GroupCoordinatorStateMachine
        var now: Int64 = 1_000_000
        var topics = [ConsumerGroupTopic(name: "orders", id: ConsumerGroupTests.t1, partitions: 6)]
        var logs: [String] = []
        var epochs: [String: Int32] = [:]
        /// What each member was last told it owns.
        var owned: [String: [KafkaUUID: [Int32]]] = [:]

        init(session: Int32 = 45000) {
            var c = GroupCoordinatorConfiguration()
            c.consumerSessionTimeoutMs = session
            c.consumerHeartbeatIntervalMs = 5000
            m = GroupCoordinatorStateMachine(config: c)
        }

        var group: ConsumerGroup { m.consumerGroups["g"]! }

        /// A heartbeat; by default the member reports what it was last given (a full request).
        @discardableResult
        mutating func beat(_ member: String, epoch: Int32? = nil, topics: [String]? = nil, regex: String? = nil,
                           owned ownedOverride: [KafkaUUID: [Int32]]? = nil, instance: String? = nil,
                           assignor: String? = nil, rebalanceTimeout: Int32 = 30000, version: Int16 = 1) -> ConsumerGroupHeartbeatResponse {
            var r = ConsumerGroupHeartbeatRequest()
            r.groupId = "g"
            r.memberId = member
            r.memberEpoch = epoch ?? epochs[member] ?? 0
            r.instanceId = instance
            r.rebalanceTimeoutMs = r.memberEpoch == 0 ? rebalanceTimeout : -1
            r.subscribedTopicNames = r.memberEpoch == 0 && regex == nil ? (topics ?? ["orders"]) : topics
            r.subscribedTopicRegex = regex
            r.serverAssignor = assignor
            let o = r.memberEpoch == 0 ? [:] : (ownedOverride ?? owned[member] ?? [:])
            r.topicPartitions = o.map { t, ps in
                var tp = ConsumerGroupHeartbeatRequest.TopicPartitions()
                tp.topicId = t
                tp.partitions = ps
                return tp
            }
            let (resp, outputs) = m.consumerGroupHeartbeat(r, .init(apiVersion: version, clientId: "c-\(member)", clientHost: "/127.0.0.1",
                                                                    uniqueId: "uuid-\(member)", topics: topics_), now: now)
            for case .log(let l) in outputs { logs.append(l) }
            if resp.errorCode == 0 && r.memberEpoch >= 0 {
                epochs[member] = resp.memberEpoch
                if let a = resp.assignment {
                    var d: [KafkaUUID: [Int32]] = [:]
                    for tp in a.topicPartitions { d[tp.topicId] = tp.partitions }
                    owned[member] = d
                }
            }
            return resp
        }

        var topics_: [ConsumerGroupTopic] { topics }

        mutating func advance(_ ms: Int64) {
            let end = now + ms
            while let d = m.nextDeadline, d <= end {
                now = max(now, d)
                for case .log(let l) in m.tick(now: now) { logs.append(l) }
            }
            now = end
        }

        func held(_ member: String) -> Set<Int32> { Set(owned[member]?[ConsumerGroupTests.t1] ?? []) }
    }

    @Test func aFirstMemberJoinsAndGetsEveryPartitionAtEpochOne() {
        var h = Harness()
        let r = h.beat("a")
        #expect(r.errorCode == 0)
        #expect(r.memberId == "a")
        #expect(r.memberEpoch == 1)
        #expect(r.heartbeatIntervalMs == 5000)
        #expect(h.held("a") == Set(0..<6))
        #expect(h.group.groupEpoch == 1)
        #expect(h.group.state == .stable)
        // A heartbeat with nothing new keeps the epoch and sends no assignment if owned is not reported.
        var q = ConsumerGroupHeartbeatRequest()
        q.groupId = "g"; q.memberId = "a"; q.memberEpoch = 1
        let (again, _) = h.m.consumerGroupHeartbeat(q, .init(apiVersion: 1, clientId: "c", clientHost: "", uniqueId: "x", topics: h.topics), now: h.now)
        #expect(again.errorCode == 0 && again.memberEpoch == 1 && again.assignment == nil)
    }

    @Test func aV0MemberWithoutAnIdIsGivenOne() {
        var h = Harness()
        let r = h.beat("", version: 0)
        #expect(r.errorCode == 0)
        #expect(r.memberId == "uuid-")
        // From v1 the client makes the id: an empty one is INVALID_REQUEST.
        #expect(h.beat("", version: 1).errorCode == ErrorCode.invalidRequest.rawValue)
    }

    /// CurrentAssignmentBuilder: a partition moves only after its owner revoked it; the
    /// revoking member keeps its epoch until then; the new member waits (UNRELEASED) at the
    /// new epoch, and both converge on the target epoch.
    @Test func reconciliationRevokesBeforeAssigning() {
        var h = Harness()
        h.beat("a")
        #expect(h.held("a") == Set(0..<6))
        let b = h.beat("b")
        #expect(h.group.groupEpoch == 2)
        #expect(h.group.assignmentEpoch == 2)
        // b is at epoch 2 but gets nothing yet: a still holds its target partitions.
        #expect(b.memberEpoch == 2)
        #expect(h.held("b").isEmpty)
        #expect(h.group.members["b"]!.state == .unreleasedPartitions)
        let targetB = h.group.targetAssignment["b"]![Self.t1]!
        #expect(targetB.count == 3)
        // a is told to give up b's partitions and stays at epoch 1.
        let a1 = h.beat("a", owned: [Self.t1: Array(0..<6)])
        #expect(a1.memberEpoch == 1)
        #expect(h.held("a") == Set(0..<6).subtracting(targetB))
        #expect(h.group.members["a"]!.state == .unrevokedPartitions)
        // b still waits while a has not confirmed.
        h.beat("b")
        #expect(h.held("b").isEmpty)
        #expect(h.group.state == .reconciling)
        // a confirms (reports only what it keeps): epoch 2.
        let a2 = h.beat("a")
        #expect(a2.memberEpoch == 2)
        #expect(h.group.members["a"]!.state == .stable)
        // Now b gets its partitions.
        h.beat("b")
        #expect(h.held("b") == targetB)
        #expect(h.held("a").isDisjoint(with: h.held("b")))
        #expect(h.held("a").union(h.held("b")) == Set(0..<6))
        #expect(h.group.state == .stable)
    }

    @Test func threeMembersSplitSixPartitionsEvenly() {
        var h = Harness()
        for _ in 0..<4 { for id in ["a", "b", "c"] { h.beat(id) } }
        let all = ["a", "b", "c"].map { h.held($0) }
        #expect(all.allSatisfy { $0.count == 2 })
        #expect(all.reduce(Set<Int32>()) { $0.union($1) } == Set(0..<6))
        #expect(h.group.state == .stable)
    }

    @Test func epochsAreFencedAsKafkaDoes() {
        var h = Harness()
        h.beat("a")
        // Ahead of the coordinator.
        #expect(h.beat("a", epoch: 7).errorCode == ErrorCode.fencedMemberEpoch.rawValue)
        h.beat("b")
        h.beat("a", owned: [Self.t1: Array(0..<6)])
        h.beat("a")  // a at epoch 2, previous 1
        #expect(h.epochs["a"] == 2)
        // The previous epoch with a subset of the assignment is accepted (a lost response)…
        let kept = Array(h.held("a"))
        #expect(h.beat("a", epoch: 1, owned: [Self.t1: kept]).errorCode == 0)
        // …but not with partitions it no longer has, nor an older epoch.
        #expect(h.beat("a", epoch: 1, owned: [Self.t1: Array(0..<6)]).errorCode == ErrorCode.fencedMemberEpoch.rawValue)
        #expect(h.beat("a", epoch: 0 + 1 - 1 + 0, owned: nil).errorCode == 0)  // epoch 0: a rejoin
        #expect(h.beat("zz", epoch: 3).errorCode == ErrorCode.unknownMemberId.rawValue)
    }

    @Test func sessionExpiryRemovesTheMemberAndItsPartitionsMove() {
        var h = Harness(session: 45000)
        h.beat("a"); h.beat("b")
        for _ in 0..<3 { h.beat("a"); h.beat("b") }
        #expect(h.held("a").count == 3 && h.held("b").count == 3)
        // b goes silent; a keeps heartbeating.
        for _ in 0..<8 { h.advance(5000); h.beat("a") }
        #expect(h.group.members["b"] != nil, "expired before the session timeout")
        for _ in 0..<2 { h.advance(5000); h.beat("a") }
        #expect(h.group.members["b"] == nil)
        #expect(h.logs.contains { $0.contains("session expired") })
        h.beat("a")
        #expect(h.held("a") == Set(0..<6))
    }

    @Test func aMemberThatDoesNotRevokeWithinItsRebalanceTimeoutIsFenced() {
        var h = Harness()
        h.beat("a", rebalanceTimeout: 10000)
        h.beat("b")
        let r = h.beat("a", owned: [Self.t1: Array(0..<6)])
        #expect(h.group.members["a"]!.state == .unrevokedPartitions)
        #expect(r.memberEpoch == 1)
        // a keeps heartbeating but never gives the partitions up.
        for _ in 0..<3 { h.advance(3000); h.beat("a", owned: [Self.t1: Array(0..<6)]) }
        #expect(h.group.members["a"] != nil)
        h.advance(2000)
        #expect(h.group.members["a"] == nil)
        #expect(h.beat("a", owned: [Self.t1: Array(0..<6)]).errorCode == ErrorCode.unknownMemberId.rawValue)
        h.beat("b")
        #expect(h.held("b") == Set(0..<6))
    }

    @Test func leavingBumpsTheEpochAndFreesPartitions() {
        var h = Harness()
        h.beat("a"); h.beat("b")
        for _ in 0..<3 { h.beat("a"); h.beat("b") }
        let before = h.group.groupEpoch
        let leave = h.beat("b", epoch: -1)
        #expect(leave.errorCode == 0 && leave.memberEpoch == -1)
        #expect(h.group.members["b"] == nil)
        #expect(h.group.groupEpoch == before + 1)
        h.beat("a")
        #expect(h.held("a") == Set(0..<6))
        #expect(h.beat("b", epoch: -1).errorCode == ErrorCode.unknownMemberId.rawValue)
    }

    @Test func staticMembersLeaveTemporarilyAndAreReplaced() {
        var h = Harness()
        h.beat("a", instance: "i1")
        h.beat("b", instance: "i2")
        for _ in 0..<3 { h.beat("a", instance: "i1"); h.beat("b", instance: "i2") }
        let bHeld = h.held("b")
        #expect(bHeld.count == 3)
        // Another process with the same instance id while b is live: UNRELEASED_INSTANCE_ID.
        #expect(h.beat("b2", instance: "i2").errorCode == ErrorCode.unreleasedInstanceId.rawValue)
        // b leaves with -2: it stays, with its partitions.
        let epoch = h.group.groupEpoch
        #expect(h.beat("b", epoch: -2, instance: "i2").memberEpoch == -2)
        #expect(h.group.members["b"]!.memberEpoch == -2)
        #expect(h.group.groupEpoch == epoch)
        // Its successor takes its place and its partitions, without a new group epoch.
        let r = h.beat("b2", instance: "i2")
        #expect(r.errorCode == 0)
        #expect(h.group.members["b"] == nil)
        #expect(h.held("b2") == bHeld)
        #expect(h.group.groupEpoch == epoch)
        // The old id with the instance id is fenced.
        #expect(h.beat("b", epoch: 3, instance: "i2").errorCode == ErrorCode.fencedInstanceId.rawValue)
        #expect(h.beat("x", epoch: -2, instance: "nope").errorCode == ErrorCode.unknownMemberId.rawValue)
    }

    @Test func aRegexSubscriptionPicksUpATopicCreatedLater() {
        var h = Harness()
        h.topics.append(ConsumerGroupTopic(name: "other", id: Self.t2, partitions: 2))
        let r = h.beat("a", regex: "ord.*")
        #expect(r.errorCode == 0)
        #expect(h.owned["a"]!.keys.sorted { $0.description < $1.description } == [Self.t1])
        let epoch = h.group.groupEpoch
        let t3 = KafkaUUID(high: 3, low: 3)
        h.topics.append(ConsumerGroupTopic(name: "ordersEU", id: t3, partitions: 3))
        h.beat("a")
        #expect(h.group.groupEpoch == epoch + 1)
        #expect(Set(h.owned["a"]![t3] ?? []) == Set(0..<3))
        #expect(h.owned["a"]![Self.t2] == nil)
        #expect(h.beat("b", regex: "(unclosed").errorCode == ErrorCode.invalidRegularExpression.rawValue)
    }

    @Test func badRequestsGetKafkasErrors() {
        var h = Harness()
        var r = ConsumerGroupHeartbeatRequest()
        r.groupId = "g"; r.memberId = "m"; r.memberEpoch = 0; r.subscribedTopicNames = ["orders"]; r.topicPartitions = []
        func send(_ r: ConsumerGroupHeartbeatRequest) -> Int16 {
            h.m.consumerGroupHeartbeat(r, .init(apiVersion: 1, clientId: "", clientHost: "", uniqueId: "u", topics: h.topics), now: h.now).0.errorCode
        }
        #expect(send(r) == ErrorCode.invalidRequest.rawValue)  // no rebalance timeout
        r.rebalanceTimeoutMs = 1000
        r.serverAssignor = "sticky"
        #expect(send(r) == ErrorCode.unsupportedAssignor.rawValue)
        r.serverAssignor = nil
        r.memberEpoch = -3
        #expect(send(r) == ErrorCode.invalidRequest.rawValue)
        r.memberEpoch = 0
        r.groupId = ""
        #expect(send(r) == ErrorCode.invalidRequest.rawValue)
    }

    @Test func protocolsShareGroupIdsAsKafkaAllows() {
        var h = Harness()
        // A classic group with members: a consumer-protocol member is GROUP_ID_NOT_FOUND.
        var j = JoinGroupRequest()
        j.groupId = "g"; j.memberId = ""; j.groupInstanceId = "s"; j.protocolType = "consumer"; j.sessionTimeoutMs = 10000; j.rebalanceTimeoutMs = 10000
        var p = JoinGroupRequest.JoinGroupRequestProtocol(); p.name = "range"
        j.protocols = [p]
        _ = h.m.joinGroup(j, GroupJoinContext(token: 1, apiVersion: 5, clientId: "c", clientHost: "h", uniqueId: "u"), now: h.now)
        #expect(h.beat("a").errorCode == ErrorCode.groupIdNotFound.rawValue)
        #expect(h.m.consumerGroups["g"] == nil)
        // A consumer group with members: a classic JoinGroup is INCONSISTENT_GROUP_PROTOCOL.
        var h2 = Harness()
        h2.beat("a")
        j.groupInstanceId = nil
        var answer: JoinGroupResponse?
        for case .join(_, let resp) in h2.m.joinGroup(j, GroupJoinContext(token: 2, apiVersion: 5, clientId: "c", clientHost: "h", uniqueId: "u"), now: h2.now) { answer = resp }
        #expect(answer?.errorCode == ErrorCode.inconsistentGroupProtocol.rawValue)
        // Once empty it converts back.
        h2.beat("a", epoch: -1)
        answer = nil
        for case .join(_, let resp) in h2.m.joinGroup(j, GroupJoinContext(token: 3, apiVersion: 5, clientId: "c", clientHost: "h", uniqueId: "u"), now: h2.now) { answer = resp }
        #expect(answer?.errorCode == ErrorCode.memberIdRequired.rawValue)
        #expect(h2.m.consumerGroups["g"] == nil && h2.m.groups["g"] != nil)
    }

    @Test func offsetCommitsAreCheckedAgainstMemberEpochs() {
        var h = Harness()
        h.beat("a")
        func commit(_ member: String, _ epoch: Int32, v: Int16 = 9) -> ErrorCode? {
            h.m.validateOffsetCommit(groupId: "g", memberId: member, instanceId: nil, generation: epoch, apiVersion: v, now: h.now)
        }
        #expect(commit("a", 1) == nil)
        #expect(commit("a", 0) == .staleMemberEpoch)
        #expect(commit("nobody", 1) == .unknownMemberId)
        #expect(commit("a", 1, v: 8) == .unsupportedVersion)
        #expect(commit("", -1) == .unknownMemberId)  // not into a group with members
        #expect(h.m.validateOffsetFetch(groupId: "g", memberId: "a", memberEpoch: 0) == .staleMemberEpoch)
        #expect(h.m.validateOffsetFetch(groupId: "g", memberId: nil, memberEpoch: -1) == nil)
    }

    @Test func rangeAndUniformAssignors() {
        let subs = [ConsumerGroupAssignor.Subscriber(memberId: "b", topics: [Self.t1, Self.t2]),
                    ConsumerGroupAssignor.Subscriber(memberId: "a", topics: [Self.t1, Self.t2])]
        let range = ConsumerGroupAssignor.range(members: subs, partitions: [Self.t1: 3, Self.t2: 3])
        #expect(range["a"]![Self.t1] == [0, 1] && range["b"]![Self.t1] == [2])
        #expect(range["a"]![Self.t2] == [0, 1] && range["b"]![Self.t2] == [2])
        let uniform = ConsumerGroupAssignor.uniform(members: subs, partitions: [Self.t1: 3, Self.t2: 3], previous: [:])
        #expect(uniform.values.map { $0.values.reduce(0) { $0 + $1.count } }.sorted() == [3, 3])
        // Sticky: a third member takes two partitions, the others keep the rest of theirs.
        let three = subs + [ConsumerGroupAssignor.Subscriber(memberId: "c", topics: [Self.t1, Self.t2])]
        let next = ConsumerGroupAssignor.uniform(members: three, partitions: [Self.t1: 3, Self.t2: 3], previous: uniform)
        for id in ["a", "b"] {
            for (t, ps) in next[id]! { #expect(ps.isSubset(of: uniform[id]![t] ?? [])) }
        }
        #expect(next.values.map { $0.values.reduce(0) { $0 + $1.count } }.sorted() == [2, 2, 2])
        // The member's ServerAssignor chooses.
        var h = Harness()
        h.beat("b", assignor: "range"); h.beat("a", assignor: "range")
        #expect(h.group.assignorName == "range")
        #expect(h.group.targetAssignment["a"]![Self.t1] == [0, 1, 2])
    }

    @Test func deleteAndOffsetDeleteFollowConsumerGroupRules() {
        var h = Harness()
        h.beat("a")
        #expect(h.m.deleteGroup("g") == .refused(.nonEmptyGroup))
        let check = h.m.offsetDeleteCheck("g")
        #expect(check.isSubscribed(to: "orders"))
        #expect(!check.isSubscribed(to: "elsewhere"))
        h.beat("a", epoch: -1)
        #expect(h.group.state == .empty)
        #expect(h.m.deleteGroup("g") == .deleted)
        #expect(h.m.consumerGroups["g"] == nil)
    }

    @Test func describeShowsMembersAndAssignments() {
        var h = Harness()
        h.beat("a")
        let d = h.m.consumerGroupDescribe("g", topicNames: [Self.t1: "orders"])
        #expect(d.errorCode == 0 && d.groupState == "Stable" && d.groupEpoch == 1 && d.assignorName == "uniform")
        #expect(d.members.count == 1)
        #expect(d.members[0].assignment.topicPartitions.first?.topicName == "orders")
        #expect(d.members[0].assignment.topicPartitions.first?.partitions == [0, 1, 2, 3, 4, 5])
        #expect(h.m.consumerGroupDescribe("nope", topicNames: [:]).errorCode == ErrorCode.groupIdNotFound.rawValue)
    }
}
