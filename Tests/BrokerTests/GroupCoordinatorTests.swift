import Broker
import KafkaProtocol
import NIOCore
import Testing

/// The classic group coordinator state machine, driven without I/O: requests and an injected
/// clock in, answers out. Each test names the Kafka behaviour (GroupMetadataManager,
/// ClassicGroup) it pins.
@Suite struct GroupCoordinatorTests {
    /// A consumer-protocol subscription (ConsumerProtocolSubscription v0: version, topics, user data).
    static func subscription(_ topics: [String]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(Int16(0))
        b.writeInteger(Int32(topics.count))
        for t in topics {
            b.writeInteger(Int16(t.utf8.count))
            b.writeString(t)
        }
        b.writeInteger(Int32(-1))
        return b
    }

    /// Drives the machine the way the broker's driver does: tokens for parked requests, and
    /// `tick` at every deadline as the clock moves.
    struct Harness {
        var m: GroupCoordinatorStateMachine
        var now: Int64 = 1_000_000
        var token: GroupRequestToken = 0
        var joins: [GroupRequestToken: JoinGroupResponse] = [:]
        var syncs: [GroupRequestToken: SyncGroupResponse] = [:]
        var logs: [String] = []

        init(delay: Int64 = 3000, maxSize: Int = Int(Int32.max)) {
            var c = GroupCoordinatorConfiguration()
            c.initialRebalanceDelayMs = delay
            c.maxSize = maxSize
            m = GroupCoordinatorStateMachine(config: c)
        }

        mutating func record(_ outputs: [GroupOutput]) {
            for o in outputs {
                switch o {
                case .join(let t, let r):
                    #expect(joins[t] == nil, "JoinGroup \(t) answered twice")
                    joins[t] = r
                case .sync(let t, let r):
                    #expect(syncs[t] == nil, "SyncGroup \(t) answered twice")
                    syncs[t] = r
                case .log(let line):
                    logs.append(line)
                }
            }
        }

        var group: ClassicGroup { m.groups["g"]! }

        @discardableResult
        mutating func join(_ member: String = "", group: String = "g", instance: String? = nil,
                           protocols: [(String, [String])] = [("range", ["t"])], type: String = "consumer",
                           session: Int32 = 10_000, rebalance: Int32 = 30_000, version: Int16 = 5, client: String = "c") -> GroupRequestToken {
            var r = JoinGroupRequest()
            r.groupId = group
            r.memberId = member
            r.groupInstanceId = instance
            r.protocolType = type
            r.sessionTimeoutMs = session
            r.rebalanceTimeoutMs = rebalance
            r.protocols = protocols.map { name, topics in
                var p = JoinGroupRequest.JoinGroupRequestProtocol()
                p.name = name
                p.metadata = GroupCoordinatorTests.subscription(topics)
                return p
            }
            token += 1
            record(m.joinGroup(r, GroupJoinContext(token: token, apiVersion: version, clientId: client,
                                                   clientHost: "/127.0.0.1", uniqueId: "u\(token)"), now: now))
            return token
        }

        @discardableResult
        mutating func sync(_ member: String, generation: Int32, group: String = "g", instance: String? = nil,
                           assignments: [String: String] = [:]) -> GroupRequestToken {
            var r = SyncGroupRequest()
            r.groupId = group
            r.memberId = member
            r.generationId = generation
            r.groupInstanceId = instance
            r.assignments = assignments.sorted { $0.key < $1.key }.map { id, a in
                var x = SyncGroupRequest.SyncGroupRequestAssignment()
                x.memberId = id
                x.assignment = ByteBuffer(string: a)
                return x
            }
            token += 1
            record(m.syncGroup(r, token: token, now: now))
            return token
        }

        mutating func heartbeat(_ member: String, generation: Int32, group: String = "g", instance: String? = nil) -> ErrorCode {
            var r = HeartbeatRequest()
            r.groupId = group
            r.memberId = member
            r.generationId = generation
            r.groupInstanceId = instance
            let (code, outputs) = m.heartbeat(r, now: now)
            record(outputs)
            return code
        }

        mutating func leave(_ members: [(String, String?)], group: String = "g") -> (ErrorCode, [ErrorCode]) {
            let r = m.leaveGroup(groupId: group, members: members.map { .init(memberId: $0.0, groupInstanceId: $0.1) }, now: now)
            record(r.outputs)
            return (r.error, r.members)
        }

        mutating func commit(_ member: String, generation: Int32, instance: String? = nil, group: String = "g", version: Int16 = 8) -> ErrorCode? {
            m.validateOffsetCommit(groupId: group, memberId: member, instanceId: instance, generation: generation, apiVersion: version, now: now)
        }

        /// Moves the clock forward, firing every deadline on the way in order.
        mutating func advance(_ ms: Int64) {
            let target = now + ms
            while let d = m.nextDeadline, d <= target {
                now = max(now, d)
                record(m.tick(now: now))
            }
            now = target
        }

        func answer(_ t: GroupRequestToken) -> JoinGroupResponse? { joins[t] }

        /// Joins and returns the answer if there is one already (in `h.answer(h.join())` Swift
        /// reads `h` before the join runs, so this is one call).
        mutating func joined(_ member: String = "", group: String = "g", instance: String? = nil,
                             protocols: [(String, [String])] = [("range", ["t"])], type: String = "consumer",
                             session: Int32 = 10_000, rebalance: Int32 = 30_000, version: Int16 = 5,
                             client: String = "c") -> JoinGroupResponse? {
            let t = join(member, group: group, instance: instance, protocols: protocols, type: type, session: session,
                         rebalance: rebalance, version: version, client: client)
            return joins[t]
        }

        mutating func synced(_ member: String, generation: Int32, group: String = "g", instance: String? = nil) -> SyncGroupResponse? {
            let t = sync(member, generation: generation, group: group, instance: instance)
            return syncs[t]
        }

        /// Moves the clock from deadline to deadline until `t` is answered.
        mutating func settle(_ t: GroupRequestToken) {
            while joins[t] == nil, let d = m.nextDeadline { advance(max(d - now, 0)) }
        }

        /// A Stable group of `count` dynamic members (JoinGroup v3: no MEMBER_ID_REQUIRED),
        /// assigned "a0", "a1", … in join order. Returns the member ids, leader first.
        mutating func stableGroup(_ count: Int) -> [String] {
            let tokens = (0..<count).map { i in join(version: 3, client: "c\(i)") }
            settle(tokens[0])
            let ids = tokens.map { joins[$0]!.memberId }
            let leader = joins[tokens[0]]!.leader
            let generation = group.generationId
            var assignments: [String: String] = [:]
            for (i, id) in ids.enumerated() { assignments[id] = "a\(i)" }
            for id in ids where id != leader { sync(id, generation: generation) }
            sync(leader, generation: generation, assignments: assignments)
            return ids
        }
    }

    // MARK: join and sync

    @Test func oneMemberJoinsWithMemberIdRequiredThenSyncs() {
        var h = Harness()
        // v4+: a first join without a member id gets one back with MEMBER_ID_REQUIRED; nothing
        // joins yet (GroupMetadataManager.classicGroupJoinNewDynamicMember).
        let first = h.join(version: 9, client: "rdkafka")
        let r0 = h.answer(first)!
        #expect(r0.errorCode == ErrorCode.memberIdRequired.rawValue)
        #expect(r0.memberId.hasPrefix("rdkafka-u"))
        #expect(h.group.state == .empty && h.group.pendingJoinMembers == [r0.memberId])

        // The real join waits for group.initial.rebalance.delay.ms.
        let second = h.join(r0.memberId, version: 9)
        #expect(h.answer(second) == nil)
        #expect(h.group.state == .preparingRebalance)
        h.advance(2999)
        #expect(h.answer(second) == nil, "answered before the initial rebalance delay")
        h.advance(1)
        let r1 = h.answer(second)!
        #expect(r1.errorCode == 0)
        #expect(r1.generationId == 1 && r1.leader == r0.memberId && r1.memberId == r0.memberId)
        #expect(r1.protocolType == "consumer" && r1.protocolName == "range")
        #expect(r1.members.map(\.memberId) == [r0.memberId])
        #expect(r1.members[0].metadata == GroupCoordinatorTests.subscription(["t"]))
        #expect(h.group.state == .completingRebalance)

        let s = h.sync(r0.memberId, generation: 1, assignments: [r0.memberId: "all"])
        #expect(h.syncs[s]!.errorCode == 0)
        #expect(h.syncs[s]!.assignment == ByteBuffer(string: "all"))
        #expect(h.syncs[s]!.protocolName == "range" && h.syncs[s]!.protocolType == "consumer")
        #expect(h.group.state == .stable)
        #expect(h.heartbeat(r0.memberId, generation: 1) == ErrorCode.none)
        // A SyncGroup in Stable returns the current assignment at once.
        let again = h.sync(r0.memberId, generation: 1)
        #expect(h.syncs[again]!.assignment == ByteBuffer(string: "all"))
    }

    @Test func threeMembersExtendTheInitialDelayThenFollowersWaitForTheLeader() {
        var h = Harness()
        // JoinGroup v3: members are added at once (no MEMBER_ID_REQUIRED).
        let a = h.join(version: 3, client: "a")
        h.advance(1000)
        let b = h.join(version: 3, client: "b")
        #expect(h.answer(a) == nil && h.answer(b) == nil)
        // At 3000 a new member has arrived: the delay is extended by another 3000
        // (tryCompleteInitialRebalanceElseSchedule).
        h.advance(2000)
        #expect(h.answer(a) == nil)
        h.advance(1000)
        let c = h.join(version: 3, client: "c")  // t=4000, during the extension
        h.advance(1999)
        #expect(h.answer(a) == nil)
        h.advance(1)
        #expect(h.answer(a) == nil, "a member arrived during the extension: extended again")
        h.advance(2999)
        #expect(h.answer(a) == nil)
        h.advance(1)  // t=9000
        let ra = h.answer(a)!, rb = h.answer(b)!, rc = h.answer(c)!
        #expect([ra, rb, rc].allSatisfy { $0.errorCode == 0 && $0.generationId == 1 })
        #expect(ra.leader == ra.memberId && rb.leader == ra.memberId && rc.leader == ra.memberId)
        #expect(ra.members.map(\.memberId) == [ra.memberId, rb.memberId, rc.memberId])
        #expect(rb.members.isEmpty && rc.members.isEmpty, "only the leader gets the members")

        // Followers' SyncGroups wait for the leader's.
        let sb = h.sync(rb.memberId, generation: 1)
        let sc = h.sync(rc.memberId, generation: 1)
        #expect(h.syncs[sb] == nil && h.syncs[sc] == nil)
        // The leader leaves c out: c gets an empty assignment.
        let sa = h.sync(ra.memberId, generation: 1, assignments: [ra.memberId: "p0,p1", rb.memberId: "p2,p3"])
        #expect(h.syncs[sa]!.assignment == ByteBuffer(string: "p0,p1"))
        #expect(h.syncs[sb]!.assignment == ByteBuffer(string: "p2,p3"))
        #expect(h.syncs[sc]!.assignment.readableBytes == 0 && h.syncs[sc]!.errorCode == 0)
        #expect(h.group.state == .stable)
        #expect(h.group.describe().members.map(\.clientId) == ["a", "b", "c"])
    }

    @Test func theInitialDelayNeverExceedsTheRebalanceTimeout() {
        var h = Harness()
        // rebalance timeout 5000, delay 3000: 2000 ms remain for extensions.
        let a = h.join(rebalance: 5000, version: 3)
        h.advance(1000)
        h.join(rebalance: 5000, version: 3)
        h.advance(2000)  // t=3000: extended by min(3000, 2000)
        #expect(h.answer(a) == nil)
        h.advance(1000)
        h.join(rebalance: 5000, version: 3)  // a new member, but nothing remains
        h.advance(999)
        #expect(h.answer(a) == nil)
        h.advance(1)
        #expect(h.answer(a)?.generationId == 1)
        #expect(h.group.numMembers == 3)
    }

    @Test func oldJoinGroupVersionsJoinAtOnceAndV0UsesTheSessionTimeoutForRebalance() {
        var h = Harness()
        let t = h.join(session: 7000, rebalance: 60_000, version: 0)
        #expect(h.answer(t) == nil, "v0-3: added at once, parked for the join phase")
        #expect(h.group.numMembers == 1)
        let member = h.group.memberOrder[0]
        #expect(h.group.members[member]!.rebalanceTimeoutMs == 7000)
    }

    @Test func invalidSessionTimeoutsAndGroupIds() {
        var h = Harness()
        #expect(h.joined(session: 5999)!.errorCode == ErrorCode.invalidSessionTimeout.rawValue)
        #expect(h.joined(session: 1_800_001)!.errorCode == ErrorCode.invalidSessionTimeout.rawValue)
        #expect(h.joined(group: "")!.errorCode == ErrorCode.invalidGroupId.rawValue)
        #expect(h.m.groups.isEmpty, "refused joins create no group")
        #expect(h.joined(session: 6000, version: 3) == nil)
        #expect(h.joined(session: 1_800_000, version: 3) == nil)
    }

    // MARK: timeouts

    @Test func aMemberThatDoesNotRejoinIsRemovedAtTheRebalanceTimeout() {
        var h = Harness()
        let ids = h.stableGroup(2)
        let (leader, follower) = (ids[0], ids[1])
        // A leader's JoinGroup in Stable forces a rebalance.
        let rejoin = h.join(leader, version: 3)
        #expect(h.group.state == .preparingRebalance)
        // The follower keeps heartbeating (told to rejoin) but never does.
        for _ in 0..<5 {
            h.advance(5000)
            #expect(h.heartbeat(follower, generation: 1) == .rebalanceInProgress)
        }
        h.advance(4999)
        #expect(h.answer(rejoin) == nil)
        h.advance(1)  // 30000: the rebalance timeout
        let r = h.answer(rejoin)!
        #expect(r.generationId == 2 && r.members.map(\.memberId) == [leader])
        #expect(!h.group.hasMember(follower))
        #expect(h.heartbeat(follower, generation: 1) == .unknownMemberId)
    }

    @Test func aStaticLeaderThatDoesNotRejoinIsReplacedAsLeaderByOneThatDid() {
        var h = Harness()
        let a = h.join(instance: "ia", version: 5), b = h.join(instance: "ib", version: 5)
        h.settle(a)
        let (ra, rb) = (h.answer(a)!, h.answer(b)!)
        h.sync(rb.memberId, generation: 1, instance: "ib")
        h.sync(ra.memberId, generation: 1, instance: "ia", assignments: [:])
        // b changes its subscription: a rebalance; the leader a keeps heartbeating but does not rejoin.
        let t = h.join(rb.memberId, instance: "ib", protocols: [("range", ["t", "u"])], version: 5)
        #expect(h.group.state == .preparingRebalance)
        for _ in 0..<5 {
            h.advance(5000)
            #expect(h.heartbeat(ra.memberId, generation: 1, instance: "ia") == .rebalanceInProgress)
        }
        #expect(h.answer(t) == nil)
        h.advance(5000)
        // At the rebalance timeout a static member is kept, but the leader goes to one that rejoined
        // (ClassicGroup.maybeElectNewJoinedLeader).
        let r = h.answer(t)!
        #expect(r.generationId == 2 && r.leader == rb.memberId)
        #expect(Set(r.members.map(\.memberId)) == [ra.memberId, rb.memberId])
    }

    @Test func sessionExpiryRemovesAMemberAndRebalances() {
        var h = Harness()
        let ids = h.stableGroup(2)
        let (leader, follower) = (ids[0], ids[1])
        // Both synced at the same instant: sessions run 10000 from there.
        h.advance(6000)
        #expect(h.heartbeat(leader, generation: 1) == ErrorCode.none)
        h.advance(3999)
        #expect(h.group.hasMember(follower), "expired before its session timeout")
        h.advance(1)
        #expect(!h.group.hasMember(follower))
        #expect(h.group.state == .preparingRebalance)
        #expect(h.logs.contains { $0.contains("session timeout") })
        #expect(h.heartbeat(leader, generation: 1) == .rebalanceInProgress)
        // All remaining members rejoined: the join phase completes at once.
        let t = h.join(leader, version: 3)
        #expect(h.answer(t)?.generationId == 2)
        #expect(h.answer(t)?.members.map(\.memberId) == [leader])
    }

    @Test func aPendingMemberThatNeverRejoinsExpiresAfterItsSessionTimeout() {
        var h = Harness()
        let id = h.joined(session: 8000, version: 4)!.memberId
        #expect(h.group.isPendingMember(id))
        h.advance(8000)
        #expect(!h.group.isPendingMember(id))
        #expect(h.joined(id, version: 4)!.errorCode == ErrorCode.unknownMemberId.rawValue)
    }

    @Test func pendingSyncExpiryRemovesMembersThatDidNotSync() {
        var h = Harness()
        let a = h.join(session: 60_000, rebalance: 20_000, version: 3)
        let b = h.join(session: 60_000, rebalance: 20_000, version: 3)
        h.settle(a)
        let (ra, rb) = (h.answer(a)!, h.answer(b)!)
        h.sync(ra.memberId, generation: 1, assignments: [ra.memberId: "x", rb.memberId: "y"])
        #expect(h.group.pendingSyncMembers == [rb.memberId])
        h.advance(19_999)
        #expect(h.group.hasMember(rb.memberId))
        h.advance(1)  // the rebalance timeout after the join phase: expirePendingSync
        #expect(!h.group.hasMember(rb.memberId))
        #expect(h.group.state == .preparingRebalance)
        #expect(h.heartbeat(ra.memberId, generation: 1) == .rebalanceInProgress)
    }

    // MARK: leaving

    @Test func leaveGroupRebalancesAtOnce() {
        var h = Harness()
        let ids = h.stableGroup(3)
        let (e, codes) = h.leave([(ids[2], nil), ("nobody", nil)])
        #expect(e == ErrorCode.none && codes == [ErrorCode.none, .unknownMemberId])
        #expect(h.group.state == .preparingRebalance && h.group.numMembers == 2)
        let t0 = h.join(ids[0], version: 3)
        #expect(h.answer(t0) == nil)
        let t1 = h.join(ids[1], version: 3)
        #expect(h.answer(t0)?.generationId == 2 && h.answer(t1)?.generationId == 2)
        // Everyone leaves: the group is Empty at the next generation.
        h.sync(ids[0], generation: 2, assignments: [:])
        let (_, all) = h.leave([(ids[0], nil), (ids[1], nil)])
        #expect(all == [ErrorCode.none, .none])
        #expect(h.group.state == .empty && h.group.generationId == 3)
        // Unknown groups fail every member (GroupCoordinatorService.leaveGroup).
        #expect(h.leave([("x", nil)], group: "other") == (ErrorCode.none, [.unknownMemberId]))
    }

    @Test func aParkedJoinIsAnsweredWhenItsMemberLeavesAndAParkedSyncWhenTheGroupRebalances() {
        var h = Harness()
        let ids = h.stableGroup(2)
        let t = h.join(ids[0], version: 3)  // leader rejoins: parked
        _ = h.leave([(ids[0], nil)])
        #expect(h.answer(t)?.errorCode == ErrorCode.unknownMemberId.rawValue)

        var g = Harness()
        let a = g.join(version: 3), b = g.join(version: 3)
        g.settle(a)
        let sb = g.sync(g.answer(b)!.memberId, generation: 1)
        #expect(g.syncs[sb] == nil)
        // A new member arrives before the leader's SyncGroup: the waiting follower is told to rejoin.
        g.join(version: 3)
        #expect(g.syncs[sb]?.errorCode == ErrorCode.rebalanceInProgress.rawValue)
        _ = a
    }

    // MARK: static membership

    @Test func aStaticMemberRejoiningReplacesItsOldIdWithoutARebalance() {
        var h = Harness()
        let a = h.join(instance: "ia", version: 5, client: "a")
        let b = h.join(instance: "ib", version: 5, client: "b")
        h.settle(a)
        let (ra, rb) = (h.answer(a)!, h.answer(b)!)
        #expect(ra.memberId.hasPrefix("ia-") && rb.memberId.hasPrefix("ib-"))
        h.sync(rb.memberId, generation: 1, instance: "ib")
        h.sync(ra.memberId, generation: 1, instance: "ia", assignments: [ra.memberId: "p0", rb.memberId: "p1"])
        #expect(h.group.state == .stable)

        // b restarts: unknown member id, same instance id, same protocols.
        let again = h.join(instance: "ib", version: 5, client: "b")
        let r = h.answer(again)!
        #expect(r.errorCode == 0 && r.memberId != rb.memberId && r.memberId.hasPrefix("ib-"))
        #expect(r.generationId == 1 && r.protocolName == "range" && r.members.isEmpty)
        #expect(h.group.state == .stable && h.group.generationId == 1, "no rebalance")
        // Its SyncGroup returns the old id's assignment.
        let s = h.sync(r.memberId, generation: 1, instance: "ib")
        #expect(h.syncs[s]!.assignment == ByteBuffer(string: "p1"))
        // The old id is fenced; the other member sees nothing.
        #expect(h.heartbeat(rb.memberId, generation: 1, instance: "ib") == .fencedInstanceId)
        #expect(h.commit(rb.memberId, generation: 1, instance: "ib") == .fencedInstanceId)
        #expect(h.heartbeat(ra.memberId, generation: 1, instance: "ia") == ErrorCode.none)
        #expect(h.heartbeat(r.memberId, generation: 1, instance: "ib") == ErrorCode.none)
        #expect(h.group.staticMembers == ["ia": ra.memberId, "ib": r.memberId])

        // The leader restarting: before v9 it is told the previous leader id (so it does not
        // reassign); from v9 it leads but skips the assignment.
        let leaderOld = h.joined(instance: "ia", version: 5)!
        #expect(leaderOld.leader == ra.memberId && leaderOld.memberId != ra.memberId && leaderOld.members.isEmpty)
        let leaderV9 = h.joined(instance: "ia", version: 9)!
        #expect(leaderV9.leader == leaderV9.memberId && leaderV9.skipAssignment)
        #expect(leaderV9.members.count == 2)
        #expect(h.group.generationId == 1 && h.group.state == .stable)
    }

    @Test func aStaticMemberThatChangesTheSelectedProtocolRebalances() {
        var h = Harness()
        let a = h.join(instance: "ia", protocols: [("range", ["t"]), ("roundrobin", ["t"])], version: 5)
        h.settle(a)
        let ra = h.answer(a)!
        h.sync(ra.memberId, generation: 1, instance: "ia", assignments: [:])
        #expect(h.group.protocolName == "range")
        // The only member now offers roundrobin alone: the selected protocol changes, so the
        // group rebalances (here at once: every member has joined) to generation 2.
        let t = h.join(instance: "ia", protocols: [("roundrobin", ["t"])], version: 5)
        #expect(h.answer(t)?.generationId == 2)
        #expect(h.group.protocolName == "roundrobin" && h.group.state == .completingRebalance)
    }

    @Test func aStaticMemberLeavesByInstanceId() {
        var h = Harness()
        let a = h.join(instance: "ia", version: 5)
        h.advance(3000)
        let ra = h.answer(a)!
        h.sync(ra.memberId, generation: 1, instance: "ia")
        #expect(h.leave([("", "nobody")]).1 == [.unknownMemberId])
        #expect(h.leave([("", "ia")]).1 == [ErrorCode.none])
        #expect(h.group.state == .empty)
    }

    // MARK: errors

    @Test func illegalGenerationAndUnknownMember() {
        var h = Harness()
        let ids = h.stableGroup(2)
        #expect(h.heartbeat(ids[0], generation: 0) == .illegalGeneration)
        #expect(h.heartbeat(ids[0], generation: 2) == .illegalGeneration)
        #expect(h.synced(ids[1], generation: 7)?.errorCode == ErrorCode.illegalGeneration.rawValue)
        #expect(h.commit(ids[1], generation: 0) == .illegalGeneration)
        #expect(h.heartbeat("stranger", generation: 1) == .unknownMemberId)
        #expect(h.synced("stranger", generation: 1)?.errorCode == ErrorCode.unknownMemberId.rawValue)
        #expect(h.commit("stranger", generation: 1) == .unknownMemberId)
        #expect(h.joined("stranger", version: 5)?.errorCode == ErrorCode.unknownMemberId.rawValue)
        // A member id for a group that does not exist (e.g. after a broker restart).
        #expect(h.joined("old", group: "gone")?.errorCode == ErrorCode.unknownMemberId.rawValue)
        #expect(h.m.groups["gone"] == nil)
        #expect(h.heartbeat("old", generation: 3, group: "gone") == .unknownMemberId)
        #expect(h.synced("old", generation: 3, group: "gone")?.errorCode == ErrorCode.unknownMemberId.rawValue)
    }

    @Test func protocolMismatchIsInconsistentGroupProtocol() {
        var h = Harness()
        _ = h.stableGroup(1)
        // Another protocol type, or no protocol in common with every member.
        #expect(h.joined(type: "connect", version: 3)?.errorCode == ErrorCode.inconsistentGroupProtocol.rawValue)
        #expect(h.joined(protocols: [("sticky", ["t"])], version: 3)?.errorCode == ErrorCode.inconsistentGroupProtocol.rawValue)
        // An empty group takes any non-empty type with at least one protocol.
        #expect(h.joined(group: "g2", type: "", version: 3)?.errorCode == ErrorCode.inconsistentGroupProtocol.rawValue)
        #expect(h.joined(group: "g3", protocols: [], version: 3)?.errorCode == ErrorCode.inconsistentGroupProtocol.rawValue)
        // SyncGroup v5 naming another protocol.
        var r = SyncGroupRequest()
        r.groupId = "g"
        r.memberId = h.group.memberOrder[0]
        r.generationId = 1
        r.protocolType = "consumer"
        r.protocolName = "roundrobin"
        h.token += 1
        h.record(h.m.syncGroup(r, token: h.token, now: h.now))
        #expect(h.syncs[h.token]?.errorCode == ErrorCode.inconsistentGroupProtocol.rawValue)
    }

    @Test func protocolSelectionIsTheMostVotedCommonProtocol() {
        var h = Harness()
        h.join(protocols: [("roundrobin", ["t"]), ("range", ["t"])], version: 3)
        h.join(protocols: [("range", ["t"]), ("roundrobin", ["t"]), ("sticky", ["t"])], version: 3)
        let last = h.join(protocols: [("range", ["t"]), ("roundrobin", ["t"])], version: 3)
        h.settle(last)
        #expect(h.group.protocolName == "range")
    }

    @Test func groupMaxSize() {
        var h = Harness(maxSize: 2)
        h.join(version: 3)
        h.join(version: 3)
        let third = h.join(version: 3)
        #expect(h.answer(third)?.errorCode == ErrorCode.groupMaxSizeReached.rawValue)
        #expect(h.group.numMembers == 2)
    }

    // MARK: offsets and administration

    @Test func offsetCommitChecks() {
        var h = Harness()
        // No such group: simple commits only; generation commits are ILLEGAL_GENERATION, from v9 GROUP_ID_NOT_FOUND.
        #expect(h.commit("", generation: -1, group: "simple") == nil)
        #expect(h.commit("m", generation: 1, group: "simple") == .illegalGeneration)
        #expect(h.commit("m", generation: 1, group: "simple", version: 9) == .groupIdNotFound)

        let a = h.join(version: 3)
        h.advance(3000)
        let ra = h.answer(a)!
        // CompletingRebalance: the member has its generation but not its assignment.
        #expect(h.commit(ra.memberId, generation: 1) == .rebalanceInProgress)
        h.sync(ra.memberId, generation: 1, assignments: [ra.memberId: "x"])
        #expect(h.commit(ra.memberId, generation: 1) == nil)
        // A group with members refuses simple commits.
        #expect(h.commit("", generation: -1) == .unknownMemberId)
        // PreparingRebalance: the current generation may still commit (eager revocation).
        h.join(version: 3)
        #expect(h.group.state == .preparingRebalance)
        #expect(h.commit(ra.memberId, generation: 1) == nil)
        // A commit keeps the session alive.
        h.advance(9000)
        #expect(h.commit(ra.memberId, generation: 1) == nil)
        h.advance(9000)
        #expect(h.group.hasMember(ra.memberId))
    }

    @Test func deleteAndOffsetDeleteChecks() {
        var h = Harness()
        _ = h.stableGroup(1)
        #expect(h.m.deleteGroup("g") == .refused(.nonEmptyGroup))
        let check = h.m.offsetDeleteCheck("g")
        #expect(check == .allowed(subscribed: ["t"], usesConsumerProtocol: true))
        #expect(check.isSubscribed(to: "t") && !check.isSubscribed(to: "u"))
        #expect(h.m.deleteGroup("nobody") == .unknown)
        #expect(h.m.offsetDeleteCheck("nobody") == .unknown)

        var c = Harness()
        c.join(type: "connect", version: 3)
        c.advance(3000)
        #expect(c.m.offsetDeleteCheck("g") == .refused(.nonEmptyGroup))

        _ = h.leave([(h.group.memberOrder[0], nil)])
        #expect(h.group.state == .empty)
        #expect(h.m.offsetDeleteCheck("g") == .allowed(subscribed: [], usesConsumerProtocol: true))
        #expect(h.m.deleteGroup("g") == .deleted)
        #expect(h.m.groups["g"] == nil)
    }

    /// ClassicGroup.offsetExpirationCondition: a consumer group that is Stable expires by
    /// commit time except its subscribed topics; once Empty, everything from when it emptied;
    /// while rebalancing, nothing; a group with another protocol type only when Empty.
    @Test func offsetExpiryFollowsTheGroupsState() {
        var h = Harness()
        #expect(h.m.offsetExpiry("g") == nil, "a group not held is expired by commit time by the caller")
        let ids = h.stableGroup(1)
        #expect(h.m.offsetExpiry("g") == .byCommitTime(keep: ["t"]))
        h.join(version: 3, client: "second")  // a rebalance begins
        #expect(h.group.state == .preparingRebalance)
        #expect(h.m.offsetExpiry("g") == .never)
        h.advance(30_000)  // the first member never rejoined: the rebalance completes without it
        #expect(!h.group.memberOrder.contains(ids[0]))
        _ = h.leave(h.group.memberOrder.map { ($0, nil) })
        #expect(h.group.state == .empty)
        #expect(h.m.offsetExpiry("g") == .all(since: h.group.stateSince))
        let missing = h.m.dropIfEmpty("missing")
        #expect(!missing)
        let dropped = h.m.dropIfEmpty("g")
        #expect(dropped && h.m.groups["g"] == nil)

        var c = Harness()
        c.join(type: "connect", version: 3)
        c.advance(3000)
        #expect(c.m.offsetExpiry("g") == .never, "no known subscription: nothing expires while it has members")
        let kept = !c.m.dropIfEmpty("g")
        #expect(kept, "a group with members is not dropped")
    }

    @Test func describeReportsMembersAndMetadataOnceStable() {
        var h = Harness()
        let a = h.join(version: 3, client: "cli")
        h.advance(3000)
        let ra = h.answer(a)!
        var d = h.group.describe()
        #expect(d.groupState == "CompletingRebalance" && d.protocolData == "" && d.members[0].memberMetadata.readableBytes == 0)
        h.sync(ra.memberId, generation: 1, assignments: [ra.memberId: "x"])
        d = h.group.describe()
        #expect(d.groupState == "Stable" && d.protocolType == "consumer" && d.protocolData == "range")
        #expect(d.members[0].clientId == "cli" && d.members[0].clientHost == "/127.0.0.1")
        #expect(d.members[0].memberMetadata == GroupCoordinatorTests.subscription(["t"]))
        #expect(d.members[0].memberAssignment == ByteBuffer(string: "x"))
    }

    @Test func anEmptyGroupIsDroppedAfterTheRetention() {
        var h = Harness()
        let ids = h.stableGroup(1)
        h.advance(5000)
        _ = h.leave([(ids[0], nil)])
        #expect(h.group.state == .empty)
        h.advance(599_999)
        #expect(h.m.groups["g"] != nil)
        h.advance(1)
        #expect(h.m.groups["g"] == nil, "an idle Empty group stays held forever")
        // A group with a member about to join (MEMBER_ID_REQUIRED) is not idle.
        let pending = h.joined(group: "p", version: 4)!.memberId
        h.advance(9999)
        #expect(h.m.groups["p"]!.isPendingMember(pending))
        h.advance(600_000)
        #expect(h.m.groups["p"] == nil)
    }

    @Test func unloadingAnswersEveryParkedRequestNotCoordinator() {
        var h = Harness()
        let a = h.join(version: 3)
        let b = h.join(version: 3)
        h.record(h.m.unloadAll())
        #expect(h.answer(a)?.errorCode == ErrorCode.notCoordinator.rawValue)
        #expect(h.answer(b)?.errorCode == ErrorCode.notCoordinator.rawValue)
        #expect(h.m.groups.isEmpty && h.m.nextDeadline == nil)
    }

    @Test func aSecondJoinFromTheSameMemberAnswersTheFirst() {
        var h = Harness()
        let ids = h.stableGroup(2)
        let first = h.join(ids[0], version: 3)
        let second = h.join(ids[0], version: 3)
        #expect(h.answer(first)?.errorCode == ErrorCode.rebalanceInProgress.rawValue)
        #expect(h.answer(second) == nil)
        h.join(ids[1], version: 3)
        #expect(h.answer(second)?.generationId == 2)
    }
}
