import Metadata

/// The decisions of the cluster, as pure functions of what the metadata store says: what the
/// controller does (fail over dead brokers, place unplaced partitions) and what each broker
/// does with its streams (open, give up). `ClusterService` carries them out.
public enum ClusterPlanner {
    /// A dead broker the controller must fail over: fence its epoch, recover its WAL, then
    /// release its streams and move its assignments.
    public struct Failover: Sendable, Equatable {
        public var node: Int32
        public var epoch: Int64
        public var reassign: [Assignment]
    }

    public struct Assignment: Sendable, Equatable {
        public var streamId: Int64
        public var node: Int32

        public init(streamId: Int64, node: Int32) {
            self.streamId = streamId
            self.node = node
        }
    }

    public struct ControllerPlan: Sendable, Equatable {
        public var failovers: [Failover] = []
        /// Streams with no live assignee (new partitions, or assigned to a node that has been
        /// failed over already) or assigned to a draining broker, each given to the live
        /// broker with the fewest (draining brokers get none while another is live).
        public var assignments: [Assignment] = []
        public init(failovers: [Failover] = [], assignments: [Assignment] = []) {
            self.failovers = failovers
            self.assignments = assignments
        }
    }

    /// How long after the metadata store is back nothing fails over: a session timeout for
    /// every broker to renew, plus a quarter of the outage. Brokers reconnect with the
    /// connection pool's backoff, which grows by a quarter per failed attempt (postgres-nio:
    /// 100 ms × 1.25^n, at most a minute), so after a long outage a live broker may find the
    /// database back only that much later. With one session timeout alone, a broker was
    /// failed over after a 20 s outage on a loaded machine.
    public static func graceAfterOutage(sessionTimeoutMs: Int64, outageMs: Int64) -> Int64 {
        sessionTimeoutMs + min(max(0, outageMs) / 4, 60_000)
    }

    /// What the controller does now. Nothing fails over before `graceUntilMs` (database
    /// clock): after a database outage or a controller change every lease may look expired.
    public static func controllerPlan(status: ClusterStatus, streams: [StreamPlacement], graceUntilMs: Int64) -> ControllerPlan {
        let live = status.liveBrokers.map(\.nodeId)
        guard !live.isEmpty else { return ControllerPlan() }
        let liveSet = Set(live)
        let undrained = status.liveBrokers.filter { !$0.draining }.map(\.nodeId)
        let targets = undrained.isEmpty ? live : undrained
        let draining = liveSet.subtracting(targets)
        var load = Dictionary(uniqueKeysWithValues: live.map { ($0, 0) })
        for s in streams { if let a = s.assigned, liveSet.contains(a) { load[a, default: 0] += 1 } }
        func leastLoaded() -> Int32 {
            let n = targets.min { (load[$0]!, $0) < (load[$1]!, $1) }!
            load[n]! += 1
            return n
        }
        var plan = ControllerPlan()
        let byNode = Dictionary(grouping: status.brokers, by: \.nodeId).compactMapValues(\.first)
        let failing = status.nowMs >= graceUntilMs
        // A dead node keeps its streams until its WAL is recovered: only then may others open them.
        var pending = Set<Int32>()
        if failing {
            for b in status.brokers.sorted(by: { $0.nodeId < $1.nodeId }) where !liveSet.contains(b.nodeId) {
                let touched = streams.filter { $0.owner == b.nodeId || $0.assigned == b.nodeId }
                guard !touched.isEmpty else { continue }
                if b.recoveredEpoch < b.epoch || touched.contains(where: { $0.owner == b.nodeId }) {
                    let moves = touched.filter { $0.assigned == b.nodeId || $0.assigned == nil }
                        .sorted { $0.streamId < $1.streamId }
                        .map { Assignment(streamId: $0.streamId, node: leastLoaded()) }
                    plan.failovers.append(Failover(node: b.nodeId, epoch: b.epoch, reassign: moves))
                    pending.insert(b.nodeId)
                }
            }
        }
        let moved = Set(plan.failovers.flatMap { $0.reassign.map(\.streamId) })
        for s in streams.sorted(by: { $0.streamId < $1.streamId }) where !moved.contains(s.streamId) {
            if let a = s.assigned {
                if draining.contains(a) {
                    // Off a draining broker, once the stream is where it was assigned (no
                    // move in progress).
                    if let o = s.owner, o != a { continue }
                    load[a]! -= 1
                } else if liveSet.contains(a) || pending.contains(a) {
                    continue
                } else {
                    // Assigned to a dead node: only once that node is failed over, or when it
                    // never owned anything that needs recovering.
                    guard failing, byNode[a].map({ $0.recoveredEpoch >= $0.epoch }) ?? true, s.owner != a else { continue }
                }
            }
            plan.assignments.append(Assignment(streamId: s.streamId, node: leastLoaded()))
        }
        return plan
    }

    public struct BrokerPlan: Sendable, Equatable {
        /// Assigned here and free (released, or owned by this node's previous run): open at epoch+1.
        public var open: [Int64] = []
        /// Open here but assigned elsewhere: flush, commit, then release.
        public var release: [Int64] = []
        /// Open here but opened since by another broker (or at another epoch): forget it, we are fenced.
        public var drop: [Int64] = []
        /// Owned by this node's previous run, not open here and assigned elsewhere: release
        /// (this run recovered the previous run's WAL before planning).
        public var releaseStale: [(streamId: Int64, epoch: Int64)] = []

        public static func == (a: BrokerPlan, b: BrokerPlan) -> Bool {
            a.open == b.open && a.release == b.release && a.drop == b.drop
                && a.releaseStale.map(\.streamId) == b.releaseStale.map(\.streamId)
                && a.releaseStale.map(\.epoch) == b.releaseStale.map(\.epoch)
        }
    }

    /// What broker `node` does with its streams. `openHere` maps each stream open in this
    /// process to the epoch it was opened at.
    public static func brokerPlan(node: Int32, streams: [StreamPlacement], openHere: [Int64: Int64]) -> BrokerPlan {
        var plan = BrokerPlan()
        for s in streams.sorted(by: { $0.streamId < $1.streamId }) {
            if let epoch = openHere[s.streamId] {
                if s.owner != node || s.epoch != epoch {
                    plan.drop.append(s.streamId)
                } else if s.assigned != node {
                    plan.release.append(s.streamId)
                }
            } else if s.assigned == node {
                if s.owner == nil || s.owner == node { plan.open.append(s.streamId) }
            } else if s.owner == node {
                plan.releaseStale.append((s.streamId, s.epoch))
            }
        }
        return plan
    }

    /// The coordinator of a group or transactional id among the live brokers: rendezvous
    /// hashing, so every broker computes the same answer from the same live set, and only the
    /// keys of a broker that leaves or joins move.
    public static func coordinator(for key: String, among live: [Int32]) -> Int32? {
        live.max { (score(key, $0), $0) < (score(key, $1), $1) }
    }

    static func score(_ key: String, _ node: Int32) -> UInt64 {
        // FNV-1a over the key's bytes and the node id: stable across processes (unlike hashValue).
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 {
            h ^= UInt64(b)
            h &*= 0x100_0000_01b3
        }
        for i in 0..<4 {
            h ^= UInt64(UInt32(bitPattern: node) >> (8 * UInt32(i)) & 0xff)
            h &*= 0x100_0000_01b3
        }
        // A final mix so that nearby node ids do not give nearby scores.
        h ^= h >> 33
        h &*= 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }
}

extension ClusterPlanner {
    /// The auto-balancer's knobs (`balancer.*`).
    public struct BalancerConfig: Sendable, Equatable {
        /// A broker within this share of the average load (in + out bytes/s) is balanced.
        public var tolerance = 0.1
        /// Brokers at or under this load are never moved from: nothing to gain.
        public var floorBytesPerSec: Int64 = 1 << 20
        /// Most moves one balancing round asks for.
        public var maxMoves = 5

        public init() {}
    }

    /// Moves that bring every live broker's load within ±tolerance of the average, greedily:
    /// the busiest broker gives the partition whose load best halves its gap to the idlest
    /// one, as long as that narrows the gap. Nothing while a move is in progress (one round at
    /// a time), and nothing for brokers under the floor. A partition's load is what its
    /// current owner reported.
    public static func balance(live: [Int32], streams: [StreamPlacement], loads: [StreamLoad], config: BalancerConfig) -> [Assignment] {
        guard live.count > 1 else { return [] }
        let liveSet = Set(live)
        if streams.contains(where: { $0.assigned != nil && $0.owner != $0.assigned }) { return [] }
        var loadOf: [Int64: Int64] = [:]
        let owners = Dictionary(uniqueKeysWithValues: streams.compactMap { s in s.owner.map { (s.streamId, $0) } })
        for l in loads where owners[l.streamId] == l.node { loadOf[l.streamId] = l.total }
        var onBroker = Dictionary(uniqueKeysWithValues: live.map { ($0, [Int64]()) })
        for s in streams { if let o = s.owner, liveSet.contains(o) { onBroker[o]!.append(s.streamId) } }
        var brokerLoad = onBroker.mapValues { $0.reduce(Int64(0)) { $0 + (loadOf[$1] ?? 0) } }
        let average = Double(brokerLoad.values.reduce(0, +)) / Double(live.count)
        var moves: [Assignment] = []
        while moves.count < config.maxMoves {
            let hot = live.max { (brokerLoad[$0]!, -$0) < (brokerLoad[$1]!, -$1) }!
            let cold = live.min { (brokerLoad[$0]!, $0) < (brokerLoad[$1]!, $1) }!
            let h = brokerLoad[hot]!, c = brokerLoad[cold]!
            let hotOver = Double(h) > average * (1 + config.tolerance) && h > config.floorBytesPerSec
            let coldUnder = Double(c) < average * (1 - config.tolerance) && h > config.floorBytesPerSec
            guard hotOver || coldUnder else { break }
            let gap = h - c
            // The partition whose load is closest to half the gap, among those that narrow it.
            guard let pick = onBroker[hot]!.filter({ (loadOf[$0] ?? 0) > 0 && (loadOf[$0] ?? 0) < gap })
                .min(by: { (abs(2 * (loadOf[$0] ?? 0) - gap), $0) < (abs(2 * (loadOf[$1] ?? 0) - gap), $1) }) else { break }
            let l = loadOf[pick] ?? 0
            onBroker[hot]!.removeAll { $0 == pick }
            onBroker[cold]!.append(pick)
            brokerLoad[hot]! -= l
            brokerLoad[cold]! += l
            moves.append(Assignment(streamId: pick, node: cold))
        }
        return moves
    }
}
