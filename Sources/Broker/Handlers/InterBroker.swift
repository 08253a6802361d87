import KafkaClient
import KafkaProtocol
import Logging
import Metadata
import NIOConcurrencyHelpers

/// Requests between brokers. Each broker of a cluster has an internal listener
/// (`internal.listeners`, registered with its lease) that answers only these APIs:
/// - WriteTxnMarkers: a transaction coordinator writes its markers into partitions served by
///   other brokers;
/// - AddPartitionsToTxn v4+ with VerifyOnly: a partition's broker asks the coordinator whether
///   a transactional batch belongs to an open transaction (Kafka's KIP-890 verification);
/// - TxnOffsetCommit: a group's coordinator hands offsets it accepted to the transaction's
///   coordinator, which holds them until the transaction ends;
/// - ReleaseStreams (Tern's own): whoever assigned streams elsewhere (a reassignment, a drain,
///   the balancer) tells the broker serving them to close them for the move now, rather than
///   when its change notification arrives.
/// Clients cannot call them: the client listener does not serve WriteTxnMarkers, and the
/// internal one serves nothing else.
extension Broker {
    public enum Listener: Sendable {
        case client, `internal`
    }

    static let internalApis: Set<ApiKey> = [.apiVersions, .writeTxnMarkers, .addPartitionsToTxn, .txnOffsetCommit, .releaseStreams]

    static func serves(_ api: ApiKey, on listener: Listener) -> Bool {
        switch listener {
        case .client: api != .writeTxnMarkers && api != .releaseStreams
        case .internal: internalApis.contains(api)
        }
    }

    /// The internal listener's port once bound (0 before, and when there is none).
    public func setInternalPort(_ port: Int) { internalPortBox.withLockedValue { $0 = port } }
    var internalPort: Int { internalPortBox.withLockedValue { $0 } }

    // MARK: serving

    /// WriteTxnMarkers from another broker's transaction coordinator: each marker written into
    /// each named partition this broker serves (NOT_LEADER_OR_FOLLOWER for the others, so the
    /// coordinator looks again), answered once durable.
    func writeTxnMarkers(_ r: WriteTxnMarkersRequest) async -> WriteTxnMarkersResponse {
        var resp = WriteTxnMarkersResponse()
        for m in r.markers {
            var result = WriteTxnMarkersResponse.WritableTxnMarkerResult()
            result.producerId = m.producerId
            let job = MarkerJob(transactionalId: "", producerId: m.producerId, producerEpoch: m.producerEpoch,
                                commit: m.transactionResult, partitions: [])
            for t in m.topics {
                var tr = WriteTxnMarkersResponse.WritableTxnMarkerResult.WritableTxnMarkerTopicResult()
                tr.name = t.name
                tr.partitions = await withTaskGroup(of: (Int32, ErrorCode).self) { g in
                    for p in t.partitionIndexes {
                        g.addTask {
                            let outcome = await self.writeLocalMarker(job, partition: TxnPartition(topic: t.name, partition: p),
                                                                      coordinatorEpoch: m.coordinatorEpoch)
                            return (p, Self.markerErrorCode(outcome))
                        }
                    }
                    var codes: [Int32: ErrorCode] = [:]
                    for await (p, code) in g { codes[p] = code }
                    return t.partitionIndexes.map { p in
                        var pr = WriteTxnMarkersResponse.WritableTxnMarkerResult.WritableTxnMarkerTopicResult.WritableTxnMarkerPartitionResult()
                        pr.partitionIndex = p
                        pr.errorCode = codes[p]!.rawValue
                        return pr
                    }
                }
                result.topics.append(tr)
            }
            resp.markers.append(result)
        }
        return resp
    }

    /// ReleaseStreams: reads the placement now (a cluster round), which releases every stream
    /// assigned away from this broker once what it acked is committed, and answers for each
    /// stream asked about: NONE when it is not open here any more, NO_REASSIGNMENT_IN_PROGRESS
    /// when it is still assigned here.
    func releaseStreams(_ r: ReleaseStreamsRequest) async -> ReleaseStreamsResponse {
        await clusterTick()
        var resp = ReleaseStreamsResponse()
        resp.streams = r.streams.map { s in
            var out = ReleaseStreamsResponse.ReleasedStreamResult()
            out.streamId = s.streamId
            out.errorCode = (engine.offsets(streamId: s.streamId) == nil ? ErrorCode.none : .noReassignmentInProgress).rawValue
            return out
        }
        return resp
    }

    /// Assigns streams to other brokers and tells each stream's current broker to close it
    /// for the move (ReleaseStreams, in the background: the change notification is the
    /// fallback when the call fails).
    func assignAndRelease(_ moves: [(streamId: Int64, node: Int32)]) async throws {
        try await clusterStore.assignStreams(moves)
        let owners = cluster.withLockedValue { v in moves.compactMap { m in v.placements[m.streamId]?.owner.map { ($0, m.streamId) } } }
        for (owner, ids) in Dictionary(grouping: owners, by: \.0).mapValues({ $0.map(\.1) }) where owner != config.nodeId {
            var request = ReleaseStreamsRequest()
            request.streams = ids.map { id in
                var s = ReleaseStreamsRequest.ReleasedStream()
                s.streamId = id
                return s
            }
            Task {
                do {
                    _ = try await peers.send(request, to: owner, broker: self)
                } catch {
                    logger.debug("ReleaseStreams not sent; the change notification will do", metadata: ["to": "\(owner)", "error": "\(error)"])
                }
            }
        }
    }

    /// How a marker write is told to the coordinator that asked for it, and back.
    static func markerErrorCode(_ w: MarkerWrite) -> ErrorCode {
        switch w {
        case .written: .none
        case .gone: .unknownTopicOrPartition
        case .refused: .invalidProducerEpoch
        case .stop: .notLeaderOrFollower
        case .retry: .requestTimedOut
        }
    }

    static func markerWrite(_ code: ErrorCode) -> MarkerWrite {
        switch code {
        case .none: .written
        case .unknownTopicOrPartition: .gone
        case .invalidProducerEpoch, .transactionCoordinatorFenced, .producerFenced: .refused("\(code)")
        default: .retry  // not the leader (moving), timed out, or a code we do not expect
        }
    }

    // MARK: calling

    /// Writes a transaction marker where the partition is served: here, or through the
    /// serving broker's internal listener. A partition without a serving broker (moving,
    /// failing over) is retried by the coordinator.
    func writeMarkerAnywhere(_ job: MarkerJob, partition p: TxnPartition, coordinatorEpoch: Int32) async -> MarkerWrite {
        guard let sid = streamId(p.topic, p.partition) else { return .gone }
        guard let leader = leader(ofStream: sid) else { return .retry }
        if leader.node == config.nodeId { return await writeLocalMarker(job, partition: p, coordinatorEpoch: coordinatorEpoch) }
        var marker = WriteTxnMarkersRequest.WritableTxnMarker()
        marker.producerId = job.producerId
        marker.producerEpoch = job.producerEpoch
        marker.transactionResult = job.commit
        marker.coordinatorEpoch = coordinatorEpoch
        var topic = WriteTxnMarkersRequest.WritableTxnMarker.WritableTxnMarkerTopic()
        topic.name = p.topic
        topic.partitionIndexes = [p.partition]
        marker.topics = [topic]
        var request = WriteTxnMarkersRequest()
        request.markers = [marker]
        do {
            let resp = try await peers.send(request, to: leader.node, broker: self)
            let code = resp.markers.first?.topics.first?.partitions.first.map { ErrorCode(rawValue: $0.errorCode) ?? .unknownServerError }
            return Self.markerWrite(code ?? .unknownServerError)
        } catch {
            logger.warning("transaction marker not sent", metadata: ["to": "\(leader.node)", "topic": "\(p.topic)",
                                                                     "partition": "\(p.partition)", "error": "\(error)"])
            return .retry
        }
    }

    /// Whether a transactional batch may go into `partition`: asked of this broker's
    /// transaction coordinator, or of the broker that coordinates `transactionalId`.
    func verifyTransactionalWrite(transactionalId: String?, producerId: Int64, epoch: Int16, partition: TxnPartition) async -> ErrorCode {
        if let id = transactionalId, let c = coordinator(for: id), c.nodeId != config.nodeId {
            return await verifyRemoteTransactionalWrite(transactionalId: id, coordinator: c, producerId: producerId, epoch: epoch,
                                                        partition: partition)
        }
        return transactions.verifyTransactionalWrite(producerId: producerId, epoch: epoch, partition: partition)
    }

    /// Whether a transactional batch of `producerId` may go into `partition`, asked of the
    /// transaction's coordinator when that is another broker (AddPartitionsToTxn v4,
    /// VerifyOnly). A yes is remembered until a marker for the producer reaches the partition,
    /// so only the first batch of each transaction per partition pays the round trip.
    func verifyRemoteTransactionalWrite(transactionalId: String, coordinator: BrokerRecord, producerId: Int64, epoch: Int16,
                                        partition: TxnPartition) async -> ErrorCode {
        let key = VerifiedWrite(producerId: producerId, epoch: epoch, partition: partition)
        if verifiedWrites.withLockedValue({ $0.contains(key) }) { return .none }
        var t = AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction()
        t.transactionalId = transactionalId
        t.producerId = producerId
        t.producerEpoch = epoch
        t.verifyOnly = true
        var topic = AddPartitionsToTxnRequest.AddPartitionsToTxnTopic()
        topic.name = partition.topic
        topic.partitions = [partition.partition]
        t.topics = [topic]
        var request = AddPartitionsToTxnRequest()
        request.transactions = [t]
        let code: ErrorCode
        do {
            let resp = try await peers.send(request, to: coordinator.nodeId, broker: self, version: 4)
            if resp.errorCode != 0 {
                code = ErrorCode(rawValue: resp.errorCode) ?? .unknownServerError
            } else {
                let raw = resp.resultsByTransaction.first?.topicResults.first?.resultsByPartition.first?.partitionErrorCode
                code = raw.map { ErrorCode(rawValue: $0) ?? .unknownServerError } ?? .unknownServerError
            }
        } catch {
            logger.warning("transaction verification not sent", metadata: ["to": "\(coordinator.nodeId)", "error": "\(error)"])
            return .notEnoughReplicas  // retriable: the producer tries again
        }
        switch code {
        case .none:
            verifiedWrites.withLockedValue { _ = $0.insert(key) }
            return .none
        case .notCoordinator, .coordinatorNotAvailable, .coordinatorLoadInProgress, .concurrentTransactions:
            return .notEnoughReplicas  // the coordinator is moving: retriable for the producer
        case .invalidProducerEpoch, .producerFenced:
            return .invalidProducerEpoch
        default:
            return .invalidTxnState
        }
    }

    /// A marker for the producer reached the partition: its transaction there is over.
    func forgetVerifiedWrites(producerId: Int64, partition: TxnPartition) {
        verifiedWrites.withLockedValue { s in s = s.filter { !($0.producerId == producerId && $0.partition == partition) } }
    }
}

/// A transactional write into a partition that the coordinator confirmed.
struct VerifiedWrite: Hashable, Sendable {
    var producerId: Int64
    var epoch: Int16
    var partition: TxnPartition
}

/// Connections to other brokers' internal listeners, one per broker, opened on first use and
/// again after one fails.
final class PeerConnections: Sendable {
    private let connections = NIOLockedValueBox<[Int32: (address: BrokerAddress, connection: KafkaConnection)]>([:])
    private let configuration: KafkaClientConfiguration

    init(nodeId: Int32) {
        var c = KafkaClientConfiguration()
        c.clientId = "tern-broker-\(nodeId)"
        c.connectTimeout = .seconds(3)
        c.requestTimeout = .seconds(30)
        configuration = c
    }

    func send<R: KafkaRequest>(_ request: R, to node: Int32, broker: Broker, version: Int16? = nil) async throws -> R.Response {
        guard let peer = broker.liveBrokers().first(where: { $0.nodeId == node }), peer.internalPort > 0 else {
            throw KafkaClientError(.connectionFailed, "broker \(node) has no internal listener registered")
        }
        let address = BrokerAddress(host: peer.host, port: peer.internalPort)
        let connection = try await connection(to: node, at: address)
        do {
            return try await connection.send(request, version: version)
        } catch {
            connections.withLockedValue { c in if c[node]?.connection === connection { c[node] = nil } }
            await connection.close()
            throw error
        }
    }

    private func connection(to node: Int32, at address: BrokerAddress) async throws -> KafkaConnection {
        let cached = connections.withLockedValue { c -> KafkaConnection? in
            guard let e = c[node], e.address == address, e.connection.isActive else { return nil }
            return e.connection
        }
        if let cached { return cached }
        let fresh = try await KafkaConnection.connect(to: address, configuration: configuration)
        let (kept, extra) = connections.withLockedValue { c -> (KafkaConnection, KafkaConnection?) in
            if let e = c[node], e.address == address, e.connection.isActive { return (e.connection, fresh) }
            c[node] = (address, fresh)
            return (fresh, nil)
        }
        if let extra { await extra.close() }
        return kept
    }

    func closeAll() async {
        for c in connections.withLockedValue({ c in defer { c = [:] }; return c.values.map(\.connection) }) { await c.close() }
    }
}
