import Cluster
import Metadata
import Testing

@Suite struct ClusterPlannerTests {
    static let now: Int64 = 1_000_000

    static func broker(_ id: Int32, epoch: Int64 = 1, live: Bool = true, recovered: Int64 = 0, draining: Bool = false) -> BrokerRecord {
        BrokerRecord(nodeId: id, epoch: epoch, host: "h\(id)", port: 9000 + Int(id), rack: nil,
                     leaseExpiresMs: live ? now + 5000 : now - 1, recoveredEpoch: recovered, draining: draining)
    }

    @Test func aDrainingBrokerGivesUpItsStreamsAndGetsNoNewOnes() {
        let plan = ClusterPlanner.controllerPlan(
            status: Self.status([Self.broker(1), Self.broker(2), Self.broker(3, draining: true)]),
            streams: [Self.stream(1, owner: 3, assigned: 3), Self.stream(2, owner: 3, assigned: 3),
                      Self.stream(3, owner: nil, assigned: 3),
                      Self.stream(4, owner: 1, assigned: 3),  // on its way to 3: left until it is there
                      Self.stream(5, owner: 1, assigned: 1), Self.stream(6, owner: nil, assigned: nil)],
            graceUntilMs: 0)
        #expect(plan.failovers.isEmpty)
        #expect(plan.assignments == [.init(streamId: 1, node: 2), .init(streamId: 2, node: 1), .init(streamId: 3, node: 2),
                                     .init(streamId: 6, node: 1)])
        // When every live broker drains, new streams still find a home.
        let all = ClusterPlanner.controllerPlan(
            status: Self.status([Self.broker(1, draining: true), Self.broker(2, draining: true)]),
            streams: [Self.stream(1, owner: 1, assigned: 1), Self.stream(2, owner: nil, assigned: nil)], graceUntilMs: 0)
        #expect(all.assignments == [.init(streamId: 2, node: 2)])
    }

    static func stream(_ id: Int64, owner: Int32?, assigned: Int32?, epoch: Int64 = 3) -> StreamPlacement {
        StreamPlacement(streamId: id, topic: "t", partition: Int32(id), epoch: epoch, owner: owner, assigned: assigned)
    }

    static func status(_ brokers: [BrokerRecord]) -> ClusterStatus {
        ClusterStatus(nowMs: now, version: 1, brokers: brokers, controller: nil)
    }

    @Test func newStreamsGoToTheLeastLoadedLiveBrokers() {
        let plan = ClusterPlanner.controllerPlan(
            status: Self.status([Self.broker(1), Self.broker(2), Self.broker(3, live: false, recovered: 1)]),
            streams: [Self.stream(1, owner: 1, assigned: 1), Self.stream(2, owner: 1, assigned: 1),
                      Self.stream(3, owner: nil, assigned: nil), Self.stream(4, owner: nil, assigned: nil),
                      Self.stream(5, owner: nil, assigned: nil)],
            graceUntilMs: 0)
        #expect(plan.failovers.isEmpty)
        // Node 2 has none, node 1 two: 2 gets the first two, then they alternate by id.
        #expect(plan.assignments == [.init(streamId: 3, node: 2), .init(streamId: 4, node: 2), .init(streamId: 5, node: 1)])
    }

    @Test func aDeadBrokerIsFailedOverWithItsStreamsSpreadOverTheLiveOnes() {
        let plan = ClusterPlanner.controllerPlan(
            status: Self.status([Self.broker(1), Self.broker(2), Self.broker(3, epoch: 4, live: false, recovered: 2)]),
            streams: [Self.stream(1, owner: 3, assigned: 3), Self.stream(2, owner: 3, assigned: 3),
                      Self.stream(3, owner: 1, assigned: 1), Self.stream(4, owner: 3, assigned: 2)],
            graceUntilMs: 0)
        #expect(plan.failovers.count == 1)
        let f = plan.failovers[0]
        #expect(f.node == 3 && f.epoch == 4)
        // Stream 4 is already on its way to node 2: only released, not reassigned.
        #expect(f.reassign == [.init(streamId: 1, node: 1), .init(streamId: 2, node: 2)])
        #expect(plan.assignments.isEmpty, "nothing of the dead node is placed before its WAL is recovered")
    }

    @Test func noFailoverDuringTheGracePeriod() {
        let plan = ClusterPlanner.controllerPlan(
            status: Self.status([Self.broker(1), Self.broker(2, live: false)]),
            streams: [Self.stream(1, owner: 2, assigned: 2), Self.stream(2, owner: nil, assigned: nil)],
            graceUntilMs: Self.now + 1)
        #expect(plan.failovers.isEmpty)
        // New partitions are still placed.
        #expect(plan.assignments == [.init(streamId: 2, node: 1)])
    }

    /// After an outage, brokers reconnect as late as the pool's backoff has grown: the grace
    /// period grows with the outage, up to a minute more than the session timeout.
    @Test func theGraceAfterAnOutageGrowsWithIt() {
        #expect(ClusterPlanner.graceAfterOutage(sessionTimeoutMs: 3000, outageMs: 0) == 3000)
        #expect(ClusterPlanner.graceAfterOutage(sessionTimeoutMs: 3000, outageMs: 20_000) == 8000)
        #expect(ClusterPlanner.graceAfterOutage(sessionTimeoutMs: 9000, outageMs: 3_600_000) == 69_000)
    }

    @Test func streamsLeftAssignedToARecoveredDeadBrokerAreReassigned() {
        let plan = ClusterPlanner.controllerPlan(
            status: Self.status([Self.broker(1), Self.broker(2, epoch: 5, live: false, recovered: 5)]),
            streams: [Self.stream(1, owner: nil, assigned: 2)],
            graceUntilMs: 0)
        #expect(plan.failovers.isEmpty)
        #expect(plan.assignments == [.init(streamId: 1, node: 1)])
    }

    @Test func withNoLiveBrokerNothingHappens() {
        let plan = ClusterPlanner.controllerPlan(status: Self.status([Self.broker(1, live: false)]),
                                                 streams: [Self.stream(1, owner: 1, assigned: 1)], graceUntilMs: 0)
        #expect(plan.failovers.isEmpty && plan.assignments.isEmpty)
    }

    @Test func aBrokerOpensReleasesAndDropsByPlacement() {
        let plan = ClusterPlanner.brokerPlan(node: 1, streams: [
            Self.stream(1, owner: nil, assigned: 1),          // free, assigned here: open
            Self.stream(2, owner: 1, assigned: 1, epoch: 7),  // ours from a previous run: open
            Self.stream(3, owner: 2, assigned: 1),            // still owned by 2: wait
            Self.stream(4, owner: 1, assigned: 2, epoch: 4),  // open here, assigned to 2: release
            Self.stream(5, owner: 2, assigned: 2, epoch: 9),  // open here at 8, taken by 2 at 9: drop
            Self.stream(6, owner: 1, assigned: 3, epoch: 2),  // a previous run's, assigned away: release stale
            Self.stream(7, owner: 1, assigned: 1, epoch: 5),  // open here at 5: keep
        ], openHere: [4: 4, 5: 8, 7: 5])
        #expect(plan.open == [1, 2])
        #expect(plan.release == [4])
        #expect(plan.drop == [5])
        #expect(plan.releaseStale.map(\.streamId) == [6] && plan.releaseStale.map(\.epoch) == [2])
    }

    @Test func coordinatorsAreStableAndSpread() {
        let live: [Int32] = [1, 2, 3]
        var counts: [Int32: Int] = [:]
        for i in 0..<3000 {
            let c = ClusterPlanner.coordinator(for: "group-\(i)", among: live)!
            #expect(ClusterPlanner.coordinator(for: "group-\(i)", among: live.reversed()) == c, "order of the live list does not matter")
            counts[c, default: 0] += 1
            // Removing another broker never moves this key.
            let other = live.first { $0 != c }!
            #expect(ClusterPlanner.coordinator(for: "group-\(i)", among: live.filter { $0 != other }) == c)
        }
        #expect(counts.values.allSatisfy { $0 > 800 }, "\(counts)")
        #expect(ClusterPlanner.coordinator(for: "g", among: []) == nil)
    }
}

@Suite struct BalancerTests {
    static func placed(_ id: Int64, on node: Int32) -> StreamPlacement {
        StreamPlacement(streamId: id, topic: "t", partition: Int32(id), epoch: 1, owner: node, assigned: node)
    }

    static func load(_ id: Int64, _ node: Int32, _ mb: Int64) -> StreamLoad {
        StreamLoad(streamId: id, node: node, bytesInPerSec: mb << 20, bytesOutPerSec: 0)
    }

    var config: ClusterPlanner.BalancerConfig {
        var c = ClusterPlanner.BalancerConfig()
        c.maxMoves = 10
        return c
    }

    @Test func aNewBrokerTakesLoadUntilAllAreWithinTolerance() {
        // Brokers 1 and 2 carry 6 partitions of 10 MB/s each; broker 3 just joined.
        let streams = (1...6).map { Self.placed(Int64($0), on: $0 <= 3 ? 1 : 2) }
        let loads = (1...6).map { Self.load(Int64($0), $0 <= 3 ? 1 : 2, 10) }
        let moves = ClusterPlanner.balance(live: [1, 2, 3], streams: streams, loads: loads, config: config)
        var perNode: [Int32: Int] = [1: 3, 2: 3, 3: 0]
        for m in moves {
            perNode[streams.first { $0.streamId == m.streamId }!.owner!]! -= 1
            perNode[m.node]! += 1
        }
        #expect(perNode == [1: 2, 2: 2, 3: 2], "\(moves)")
    }

    @Test func balancedOrTinyClustersAreLeftAlone() {
        let streams = [Self.placed(1, on: 1), Self.placed(2, on: 2)]
        #expect(ClusterPlanner.balance(live: [1, 2], streams: streams, loads: [Self.load(1, 1, 10), Self.load(2, 2, 10)], config: config).isEmpty)
        // All on one broker, but under the floor (1 MiB/s): not worth a move.
        let tiny = [StreamLoad(streamId: 1, node: 1, bytesInPerSec: 1000, bytesOutPerSec: 0),
                    StreamLoad(streamId: 2, node: 1, bytesInPerSec: 1000, bytesOutPerSec: 0)]
        #expect(ClusterPlanner.balance(live: [1, 2], streams: [Self.placed(1, on: 1), Self.placed(2, on: 1)], loads: tiny, config: config).isEmpty)
    }

    @Test func oneHotPartitionIsNotBouncedBetweenBrokers() {
        // Moving the 30 MB/s partition would only swap which broker is hot.
        let streams = [Self.placed(1, on: 1), Self.placed(2, on: 2)]
        let moves = ClusterPlanner.balance(live: [1, 2], streams: streams, loads: [Self.load(1, 1, 30), Self.load(2, 2, 1)], config: config)
        #expect(moves.isEmpty)
    }

    @Test func nothingMovesWhileAMoveIsInProgressAndStaleReportsAreIgnored() {
        var moving = Self.placed(1, on: 1)
        moving.assigned = 2
        #expect(ClusterPlanner.balance(live: [1, 2], streams: [moving, Self.placed(2, on: 1)],
                                       loads: [Self.load(1, 1, 10), Self.load(2, 1, 10)], config: config).isEmpty)
        // Partition 2's report comes from broker 2, which no longer owns it: counted as 0.
        let moves = ClusterPlanner.balance(live: [1, 2], streams: [Self.placed(1, on: 1), Self.placed(2, on: 1)],
                                           loads: [Self.load(1, 1, 10), Self.load(2, 2, 10)], config: config)
        #expect(moves.isEmpty)
    }

    @Test func atMostMaxMovesPerRound() {
        let streams = (1...20).map { Self.placed(Int64($0), on: 1) }
        let loads = (1...20).map { Self.load(Int64($0), 1, 5) }
        var c = config
        c.maxMoves = 3
        #expect(ClusterPlanner.balance(live: [1, 2], streams: streams, loads: loads, config: c).count == 3)
    }
}
