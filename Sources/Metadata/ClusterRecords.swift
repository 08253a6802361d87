/// A registered broker as the metadata store holds it. Lease times are the database's clock.
public struct BrokerRecord: Sendable, Equatable {
    public var nodeId: Int32
    /// Bumped by every start of the node.
    public var epoch: Int64
    public var host: String
    public var port: Int
    /// The internal listener's port (other brokers' requests: transaction markers); 0 when
    /// the node has none.
    public var internalPort: Int
    public var rack: String?
    public var leaseExpiresMs: Int64
    /// The highest epoch of this node whose WAL another broker has fenced and recovered.
    public var recoveredEpoch: Int64
    /// Being drained (`broker.draining`): its partitions move to other brokers and none is
    /// placed or balanced onto it, until the flag is cleared. Survives its restarts.
    public var draining: Bool

    public init(nodeId: Int32, epoch: Int64, host: String, port: Int, internalPort: Int = 0, rack: String?,
                leaseExpiresMs: Int64, recoveredEpoch: Int64, draining: Bool = false) {
        self.draining = draining
        self.nodeId = nodeId
        self.epoch = epoch
        self.host = host
        self.port = port
        self.internalPort = internalPort
        self.rack = rack
        self.leaseExpiresMs = leaseExpiresMs
        self.recoveredEpoch = recoveredEpoch
    }
}

/// Who holds the controller lease, until when (database clock).
public struct ControllerLease: Sendable, Equatable {
    public var nodeId: Int32
    public var brokerEpoch: Int64
    public var expiresMs: Int64

    public init(nodeId: Int32, brokerEpoch: Int64, expiresMs: Int64) {
        self.nodeId = nodeId
        self.brokerEpoch = brokerEpoch
        self.expiresMs = expiresMs
    }
}

/// What every broker reads on each tick: cheap (no per-partition rows).
public struct ClusterStatus: Sendable, Equatable {
    /// The database's clock when read.
    public var nowMs: Int64
    /// Bumped by every change to topics or stream placement; unchanged means nothing to reload.
    public var version: Int64
    public var brokers: [BrokerRecord]
    public var controller: ControllerLease?

    public init(nowMs: Int64, version: Int64, brokers: [BrokerRecord], controller: ControllerLease?) {
        self.nowMs = nowMs
        self.version = version
        self.brokers = brokers
        self.controller = controller
    }

    /// Brokers whose lease has not expired, by node id.
    public var liveBrokers: [BrokerRecord] {
        brokers.filter { $0.leaseExpiresMs > nowMs }.sorted { $0.nodeId < $1.nodeId }
    }
}

/// Where a partition's stream lives: who owns it now (opened it at `epoch`; nil once released)
/// and who should (the controller's or an operator's choice).
public struct StreamPlacement: Sendable, Equatable {
    public var streamId: Int64
    public var topic: String
    public var partition: Int32
    public var epoch: Int64
    public var owner: Int32?
    public var assigned: Int32?

    public init(streamId: Int64, topic: String, partition: Int32, epoch: Int64, owner: Int32?, assigned: Int32?) {
        self.streamId = streamId
        self.topic = topic
        self.partition = partition
        self.epoch = epoch
        self.owner = owner
        self.assigned = assigned
    }
}

/// A partition's traffic on the broker serving it, as that broker last reported it.
public struct StreamLoad: Sendable, Equatable {
    public var streamId: Int64
    public var node: Int32
    public var bytesInPerSec: Int64
    public var bytesOutPerSec: Int64

    public init(streamId: Int64, node: Int32, bytesInPerSec: Int64, bytesOutPerSec: Int64) {
        self.streamId = streamId
        self.node = node
        self.bytesInPerSec = bytesInPerSec
        self.bytesOutPerSec = bytesOutPerSec
    }

    public var total: Int64 { bytesInPerSec + bytesOutPerSec }
}

/// The part of the metadata store that makes a cluster: leases, the controller, placement.
public protocol ClusterStore: Sendable {
    /// Renews the node's lease for `leaseMs` from now (database clock) and records where
    /// clients reach it. False when the node has started again since (a newer epoch) or this
    /// run was failed over: this process is a zombie and must stop serving.
    func renewLease(nodeId: Int32, epoch: Int64, host: String, port: Int, internalPort: Int, rack: String?, leaseMs: Int64) async throws -> Bool
    func clusterStatus() async throws -> ClusterStatus
    func streamPlacements() async throws -> [StreamPlacement]
    /// Takes or keeps the controller lease; true when this node holds it afterwards.
    func acquireController(nodeId: Int32, epoch: Int64, leaseMs: Int64) async throws -> Bool
    /// Sets or clears a broker's draining flag; false when there is no such broker.
    func setDraining(nodeId: Int32, _ draining: Bool) async throws -> Bool
    /// Sets who should own each stream.
    func assignStreams(_ assignments: [(streamId: Int64, node: Int32)]) async throws
    /// The owner gives a stream up (flushed and committed): compare-and-set on its epoch.
    func releaseStream(streamId: Int64, epoch: Int64) async throws -> Bool
    /// After the controller fenced and recovered a dead node's WAL: releases the streams it
    /// owned and moves its assignments, only if the node has not started again since
    /// (its epoch is still `epoch`). False when it has.
    func failOver(nodeId: Int32, epoch: Int64, reassign: [(streamId: Int64, node: Int32)]) async throws -> Bool
    /// Replaces what this broker last reported of its partitions' traffic.
    func reportLoads(nodeId: Int32, _ loads: [StreamLoad]) async throws
    /// Every broker's last report.
    func streamLoads() async throws -> [StreamLoad]
    /// Calls `onChange` whenever topics or placement change (PostgreSQL LISTEN/NOTIFY), until
    /// the task is cancelled; returns at once where there is nothing to listen to.
    func watchChanges(_ onChange: @escaping @Sendable () -> Void) async
}
