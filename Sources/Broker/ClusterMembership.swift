import Cluster
import Logging
import Metadata
import NIOConcurrencyHelpers
import ServiceLifecycle
import StreamStorage

/// `broker.*` and `cluster.*` settings.
public struct ClusterConfig: Sendable {
    public var rack: String?
    /// `broker.session.timeout.ms`: the lease a broker renews; past it the broker is failed over.
    public var sessionTimeoutMs: Int64 = 9000
    /// `broker.heartbeat.interval.ms`: how often the lease is renewed.
    public var heartbeatIntervalMs: Int64 = 2000
    /// `cluster.poll.interval.ms`: how often the cluster's state is read.
    public var pollIntervalMs = 100
    /// `balancer.enable`, `balancer.interval.ms`: whether and how often the controller balances.
    public var balancerEnabled = true
    public var balancerIntervalMs: Int64 = 30_000
    /// `balancer.tolerance.percent`, `balancer.min.bytes.per.sec`, `balancer.max.moves`.
    public var balancer = ClusterPlanner.BalancerConfig()

    public init() {}
}

/// What this broker last read of the cluster.
struct ClusterView: Sendable {
    var status: ClusterStatus?
    var placements: [Int64: StreamPlacement] = [:]
    var loadedVersion: Int64 = -1
    var isController = false
    /// No failover before this time (database clock): set after this broker could not reach
    /// the metadata store, when every lease may look expired.
    var graceUntilMs: Int64 = 0
    var lastRenewal: ContinuousClock.Instant?
    /// Since when this broker cannot reach the metadata store, while it cannot.
    var unreachableSince: ContinuousClock.Instant?
    /// This run was replaced (a newer run of the node) or failed over: it serves nothing.
    var superseded = false
    /// Traffic counters at the last load report, and when it was made.
    var lastTraffic: [Int64: (bytesIn: Int64, bytesOut: Int64)] = [:]
    var lastTrafficAt: ContinuousClock.Instant?
    var lastBalance: ContinuousClock.Instant?
    /// A round asked for by a change notification and not started yet.
    var wakePending = false
    /// The live brokers when transactions were last loaded: coordinators follow them.
    var coordinatorNodes: [Int32]?
    /// Broker runs (node, epoch) whose WAL could not be recovered, and when that was last
    /// tried: logged once each, tried again every few seconds rather than every round.
    var failoversRefused: [[Int64]: ContinuousClock.Instant] = [:]

    var liveNodes: [Int32] { status?.liveBrokers.map(\.nodeId) ?? [] }
}

extension Broker {
    var clusterStore: any ClusterStore { metadata }

    /// One round of this broker's part in the cluster: renew the lease when due, read the
    /// cluster's state, act as controller when holding its lease, then open, release or drop
    /// streams so that this broker serves exactly the partitions assigned to it.
    public func clusterTick() async {
        do {
            try await clusterLock.withLock { try await self.clusterRound() }
        } catch is CancellationError {
            return  // shutting down
        } catch {
            storeFailed("cluster round failed; retrying", error)
        }
    }

    /// Renews this broker's lease when due, apart from the cluster round: a round can take
    /// long (a release waits for its commits; a database call may outlast its deadline), and
    /// a lease renewed only between rounds then runs out although the broker is alive. After
    /// a 20 s PostgreSQL outage a broker whose round had not failed, nor ended, 9 s after the
    /// database was back was failed over that way.
    public func leaseTick() async {
        let c = config.cluster
        let due = cluster.withLockedValue { v in
            !v.superseded && (v.lastRenewal.map { ContinuousClock.now - $0 >= .milliseconds(c.heartbeatIntervalMs) } ?? true)
        }
        guard due else { return }
        do {
            try await renewLease()
        } catch is CancellationError {
            return
        } catch {
            storeFailed("lease renewal failed; retrying", error)
        }
    }

    /// Renews the lease now, with this broker's endpoints (the internal listener's port among
    /// them: peers find it here).
    func renewLease() async throws {
        let c = config.cluster
        let renewed = try await clusterStore.renewLease(nodeId: config.nodeId, epoch: engine.brokerEpoch, host: config.advertise.host,
                                                        port: config.advertise.port, internalPort: internalPort, rack: c.rack,
                                                        leaseMs: c.sessionTimeoutMs)
        if !renewed { supersede("its lease was taken: it was failed over, or node \(config.nodeId) started again") }
        cluster.withLockedValue { $0.lastRenewal = .now }
    }

    /// Notes that the metadata store could not be reached (logged once per outage); the next
    /// cluster round that reaches it starts the grace period.
    private func storeFailed(_ what: String, _ error: any Error) {
        let first = cluster.withLockedValue { v in
            defer { v.unreachableSince = v.unreachableSince ?? .now }
            return v.unreachableSince == nil
        }
        if first { logger.warning("\(what)", metadata: ["error": "\(error)"]) }
    }

    /// A change notification: runs a round now rather than at the next poll (one at a time;
    /// notifications during a pending round are folded into it).
    public func wakeCluster() {
        let start = cluster.withLockedValue { v in
            defer { v.wakePending = true }
            return !v.wakePending
        }
        guard start else { return }
        Task {
            cluster.withLockedValue { $0.wakePending = false }
            await clusterTick()
        }
    }

    /// Assigns the streams of new partitions as the controller would (to the live brokers with
    /// the fewest), then runs a round so that those assigned here open before this returns.
    func place(newStreams ids: [Int64]) async throws {
        try await clusterLock.withLock {
            let status = try await self.clusterStore.clusterStatus()
            var streams = self.cluster.withLockedValue { Array($0.placements.values) }
            let known = Set(streams.map(\.streamId))
            streams += ids.filter { !known.contains($0) }.map {
                StreamPlacement(streamId: $0, topic: "", partition: 0, epoch: 0, owner: nil, assigned: nil)
            }
            let plan = ClusterPlanner.controllerPlan(status: status, streams: streams, graceUntilMs: .max)
            let wanted = Set(ids)
            let mine = plan.assignments.filter { wanted.contains($0.streamId) }
            if !mine.isEmpty { try await self.clusterStore.assignStreams(mine.map { ($0.streamId, $0.node) }) }
            try await self.clusterRound()
        }
    }

    func clusterRound() async throws {
        let c = config.cluster
        let epoch = engine.brokerEpoch
            if cluster.withLockedValue({ $0.superseded }) { return }
            let loadsDue = cluster.withLockedValue { v in
                v.lastTrafficAt.map { ContinuousClock.now - $0 >= .milliseconds(c.heartbeatIntervalMs) } ?? true
            }
            if loadsDue { try await reportLoads() }
            let status = try await clusterStore.clusterStatus()
            let (reload, grace) = cluster.withLockedValue { v -> (Bool, Int64?) in
                let reload = v.loadedVersion != status.version
                v.status = status
                guard let since = v.unreachableSince else { return (reload, nil) }
                v.unreachableSince = nil
                let outageMs = Int64((ContinuousClock.now - since) / .milliseconds(1))
                let grace = ClusterPlanner.graceAfterOutage(sessionTimeoutMs: Int64(c.sessionTimeoutMs), outageMs: outageMs)
                v.graceUntilMs = status.nowMs + grace
                return (reload, grace)
            }
            if let grace { logger.notice("metadata store reachable again; no failover for \(grace) ms") }
            if let me = status.brokers.first(where: { $0.nodeId == config.nodeId }), me.recoveredEpoch >= epoch {
                supersede("this broker was failed over (its lease expired)")
            }
            if cluster.withLockedValue({ $0.superseded }) {
                for id in engine.openEpochs().keys { engine.close(streamId: id) }
                return
            }
            if reload { try await reloadPlacement(version: status.version) }
            try await controllerRound(status)
            try await reconcileStreams()
            let live = liveBrokers().map(\.nodeId)
            let coordinatorsMoved = cluster.withLockedValue { v in v.coordinatorNodes.map { $0 != live } ?? false }
            if coordinatorsMoved {
                cluster.withLockedValue { $0.coordinatorNodes = live }
                Task {
                    do {
                        try await self.loadTransactions()
                    } catch {
                        logger.warning("transactions not loaded after the live brokers changed; retrying", metadata: ["error": "\(error)"])
                        self.cluster.withLockedValue { $0.coordinatorNodes = [] }
                    }
                }
            }
    }

    /// Loads the transactions of the ids this broker coordinates (those that move here when
    /// the live brokers change), and resumes their markers.
    func loadTransactions() async throws {
        let live = liveBrokers().map(\.nodeId)
        cluster.withLockedValue { $0.coordinatorNodes = live }
        let me = config.nodeId
        try await transactions.load(io: self) { id in ClusterPlanner.coordinator(for: id, among: live) == me }
    }

    private func supersede(_ why: String) {
        let first = cluster.withLockedValue { v in
            defer { v.superseded = true }
            return !v.superseded
        }
        if first {
            logger.critical("this broker no longer serves any partition: \(why); restart it to rejoin")
            stopAccepting()
        }
    }

    /// Topics and stream placement, read again after the cluster's version moved.
    private func reloadPlacement(version: Int64) async throws {
        let topics = try await metadata.topics()
        let placements = try await clusterStore.streamPlacements()
        topicTable.withLockedValue { table in
            table = Dictionary(uniqueKeysWithValues: topics.map { ($0.name, TopicState($0)) })
        }
        cluster.withLockedValue { v in
            v.placements = Dictionary(uniqueKeysWithValues: placements.map { ($0.streamId, $0) })
            v.loadedVersion = version
        }
    }

    private func controllerRound(_ status: ClusterStatus) async throws {
        let held = try await clusterStore.acquireController(nodeId: config.nodeId, epoch: engine.brokerEpoch,
                                                            leaseMs: config.cluster.sessionTimeoutMs)
        let (became, streams, grace) = cluster.withLockedValue { v in
            defer { v.isController = held }
            return (held && !v.isController, Array(v.placements.values), v.graceUntilMs)
        }
        if became { logger.info("this broker is the controller") }
        guard held else { return }
        let plan = ClusterPlanner.controllerPlan(status: status, streams: streams, graceUntilMs: grace)
        for f in plan.failovers {
            let run = [Int64(f.node), f.epoch]
            if let last = cluster.withLockedValue({ $0.failoversRefused[run] }), last.duration(to: .now) < .seconds(5) { continue }
            let recovered: Int
            do {
                recovered = try await engine.recoverWAL(of: f.node, epochsBelow: f.epoch + 1)
            } catch let e as RecoveryError {
                // Its acked records cannot be reached from here (a file WAL on a disk of its
                // own): its partitions wait for it rather than open without them.
                let first = cluster.withLockedValue { $0.failoversRefused.updateValue(.now, forKey: run) == nil }
                if first { logger.error("cannot fail over broker", metadata: ["node": "\(f.node)", "error": "\(e)"]) }
                continue
            }
            logger.warning("failing over broker", metadata: ["node": "\(f.node)", "brokerEpoch": "\(f.epoch)", "partitions": "\(f.reassign.count)"])
            let done = try await clusterStore.failOver(nodeId: f.node, epoch: f.epoch,
                                                       reassign: f.reassign.map { ($0.streamId, $0.node) })
            logger.warning(done ? "broker failed over" : "broker started again before its failover; nothing moved",
                           metadata: ["node": "\(f.node)", "recoveredObjects": "\(recovered)"])
        }
        if !plan.assignments.isEmpty {
            try await assignAndRelease(plan.assignments.map { ($0.streamId, $0.node) })
        }
        if !plan.failovers.isEmpty || !plan.assignments.isEmpty, let s = try? await clusterStore.clusterStatus() {
            try await reloadPlacement(version: s.version)
            return
        }
        try await balanceRound(status)
    }

    /// The auto-balancer, every `balancer.interval.ms` on the controller: moves partitions so
    /// that every live broker's traffic stays near the average (ClusterPlanner.balance).
    private func balanceRound(_ status: ClusterStatus) async throws {
        let c = config.cluster
        let due = cluster.withLockedValue { v -> Bool in
            guard c.balancerEnabled else { return false }
            if let last = v.lastBalance, ContinuousClock.now - last < .milliseconds(c.balancerIntervalMs) { return false }
            v.lastBalance = .now
            return true
        }
        guard due else { return }
        let loads = try await clusterStore.streamLoads()
        let streams = cluster.withLockedValue { Array($0.placements.values) }
        // Draining brokers take no part: their partitions are moving off already.
        let moves = ClusterPlanner.balance(live: status.liveBrokers.filter { !$0.draining }.map(\.nodeId), streams: streams,
                                           loads: loads, config: c.balancer)
        guard !moves.isEmpty else { return }
        logger.info("balancing: moving partitions", metadata: ["moves": "\(moves.map { "\($0.streamId)->\($0.node)" })"])
        try await assignAndRelease(moves.map { ($0.streamId, $0.node) })
    }

    /// Reports each open partition's traffic (bytes/s in and out since the last report) for
    /// the balancer.
    private func reportLoads() async throws {
        let now = engine.traffic()
        let (before, since) = cluster.withLockedValue { v in
            defer {
                v.lastTraffic = now
                v.lastTrafficAt = .now
            }
            return (v.lastTraffic, v.lastTrafficAt)
        }
        guard let since else { return }
        let seconds = max((ContinuousClock.now - since) / .milliseconds(1), 1) / 1000
        let loads = now.map { id, t in
            let b = before[id] ?? (0, 0)
            // A stream opened again since starts its counters from zero.
            let dIn = t.bytesIn >= b.bytesIn ? t.bytesIn - b.bytesIn : t.bytesIn
            let dOut = t.bytesOut >= b.bytesOut ? t.bytesOut - b.bytesOut : t.bytesOut
            return StreamLoad(streamId: id, node: config.nodeId, bytesInPerSec: Int64(Double(dIn) / seconds),
                              bytesOutPerSec: Int64(Double(dOut) / seconds))
        }
        try await clusterStore.reportLoads(nodeId: config.nodeId, loads)
    }

    /// Opens what is assigned here and free, releases what is assigned elsewhere, drops what
    /// another broker has taken.
    private func reconcileStreams() async throws {
        let placements = cluster.withLockedValue { Array($0.placements.values) }
        var openHere = engine.openEpochs()
        // Streams of deleted topics: closed here (their placement is gone).
        let known = Set(placements.map(\.streamId))
        for id in openHere.keys where !known.contains(id) {
            engine.close(streamId: id)
            openHere[id] = nil
        }
        let plan = ClusterPlanner.brokerPlan(node: config.nodeId, streams: placements, openHere: openHere)
        for id in plan.drop {
            logger.warning("partition taken over by another broker; closing it here", metadata: ["stream": "\(id)"])
            engine.close(streamId: id)
        }
        for id in plan.release {
            if let epoch = await engine.release(streamId: id) {
                _ = try await clusterStore.releaseStream(streamId: id, epoch: epoch)
                logger.info("released partition", metadata: ["stream": "\(id)"])
            }
        }
        for (id, epoch) in plan.releaseStale {
            _ = try await clusterStore.releaseStream(streamId: id, epoch: epoch)
        }
        var opened = 0
        for id in plan.open {
            do {
                try await engine.open(streamId: id)
                opened += 1
            } catch let e as MetadataError where e.code == .fenced {
                // Another broker opened it first: the next round sees who.
                continue
            }
        }
        if !plan.release.isEmpty || !plan.releaseStale.isEmpty || opened > 0 {
            // Our own changes moved the version: read placement again now, not a round later.
            let s = try await clusterStore.clusterStatus()
            try await reloadPlacement(version: s.version)
            cluster.withLockedValue { $0.status = s }
        }
    }

    /// Whether this broker held the controller lease at its last cluster round: it alone
    /// does the cluster's chores (metadata snapshots).
    public var isController: Bool { cluster.withLockedValue { $0.isController && !$0.superseded } }

    /// Writes a snapshot of the metadata store to the bucket when this broker is the
    /// controller (`metadata.snapshot.interval.ms`) or is told to; a failure is logged and
    /// retried at the next interval. Nothing when snapshots are off (interval 0).
    public func snapshotMetadata(evenIfNotController: Bool = false) async {
        guard config.metadataSnapshotIntervalMs > 0, evenIfNotController || isController else { return }
        do {
            let key = try await MetadataSnapshots.write(metadata: metadata, store: engine.objectStore, cluster: clusterId,
                                                        keep: config.metadataSnapshotRetain)
            logger.debug("metadata snapshot written", metadata: ["key": "\(key)"])
        } catch {
            logger.warning("metadata snapshot failed; retrying next interval", metadata: ["error": "\(error)"])
        }
    }

    /// After a graceful shutdown (every acked batch uploaded and committed): gives up this
    /// broker's streams and ends its lease, so the controller moves its partitions at once
    /// instead of after `broker.session.timeout.ms`.
    public func leaveCluster() async {
        do {
            for (id, epoch) in engine.openEpochs() {
                _ = try await clusterStore.releaseStream(streamId: id, epoch: epoch)
            }
            _ = try await clusterStore.renewLease(nodeId: config.nodeId, epoch: engine.brokerEpoch, host: config.advertise.host,
                                                  port: config.advertise.port, internalPort: internalPort, rack: config.cluster.rack, leaseMs: 0)
        } catch {
            logger.warning("could not hand over partitions on shutdown; they move after broker.session.timeout.ms",
                           metadata: ["error": "\(error)"])
        }
    }

    // MARK: what requests see

    /// The live brokers as clients are told of them (this broker at least).
    func liveBrokers() -> [BrokerRecord] {
        let live = cluster.withLockedValue { $0.status?.liveBrokers } ?? []
        if live.contains(where: { $0.nodeId == config.nodeId }) { return live }
        let me = BrokerRecord(nodeId: config.nodeId, epoch: engine.brokerEpoch, host: config.advertise.host,
                              port: config.advertise.port, rack: config.cluster.rack, leaseExpiresMs: .max, recoveredEpoch: 0)
        return (live + [me]).sorted { $0.nodeId < $1.nodeId }
    }

    /// The broker serving a partition's stream and its epoch (the leader epoch), or nil when
    /// none does right now (a move or failover in progress).
    func leader(ofStream id: Int64) -> (node: Int32, epoch: Int64)? {
        if let o = engine.offsets(streamId: id) { return (config.nodeId, o.epoch) }
        let (p, live) = cluster.withLockedValue { ($0.placements[id], Set($0.liveNodes)) }
        guard let p, let owner = p.owner, owner != config.nodeId, live.contains(owner) else { return nil }
        return (owner, p.epoch)
    }

    var controllerId: Int32 {
        cluster.withLockedValue { v in
            guard let c = v.status?.controller, c.expiresMs > v.status!.nowMs else { return nil }
            return c.nodeId
        } ?? config.nodeId
    }

    /// The broker coordinating a group or transactional id.
    func coordinator(for key: String) -> BrokerRecord? {
        let live = liveBrokers()
        guard let n = ClusterPlanner.coordinator(for: key, among: live.map(\.nodeId)) else { return nil }
        return live.first { $0.nodeId == n }
    }

    /// Whether this broker is being drained, as last read of the cluster.
    var isDraining: Bool {
        cluster.withLockedValue { v in v.status?.brokers.first { $0.nodeId == config.nodeId }?.draining } ?? false
    }

    func isCoordinator(for key: String) -> Bool { coordinator(for: key)?.nodeId == config.nodeId }
}

/// Listens for the metadata store's change notifications (PostgreSQL LISTEN/NOTIFY) and runs
/// a cluster round on each, so moves do not wait for the next poll; until graceful shutdown.
public struct ClusterWatchService: Service {
    let broker: Broker

    public init(broker: Broker) { self.broker = broker }

    public func run() async {
        await cancelWhenGracefulShutdown {
            await broker.clusterStore.watchChanges { [broker] in broker.wakeCluster() }
            // Nothing to listen to (SQLite): stay until shutdown, since a service that returns
            // would stop the broker.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        }
    }
}
