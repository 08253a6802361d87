import KafkaProtocol
import Logging
import Metadata
import NIOConcurrencyHelpers
import NIOCore
import ObjectStore
import StreamStorage

/// The Kafka-facing broker: decodes requests, dispatches them to handlers, and owns the
/// topic table. Storage lives in `StreamEngine`, durable state in the `MetadataStore`.
public final class Broker: Sendable {
    public let config: BrokerConfig
    public let engine: StreamEngine
    let metadata: any MetadataStore
    public let metrics: BrokerMetrics
    let logger: Logger
    let clusterId: String
    let topicTable = NIOLockedValueBox<[String: TopicState]>([:])
    /// Serializes changes to topics: creation, deletion, configs, partitions.
    let topicLock = AsyncMutex()
    /// The group coordinator, classic and KIP-848 (membership in memory; offsets in `metadata`).
    let groups: GroupCoordinator
    /// The transaction coordinator (state in the metadata store's `transactions` table).
    let transactions: TransactionCoordinator
    private let readyBox = NIOLockedValueBox(false)
    /// What this broker last read of the cluster (ClusterMembership.swift).
    let cluster = NIOLockedValueBox(ClusterView())
    /// One cluster round at a time.
    let clusterLock = AsyncMutex()
    /// The internal listener's port, registered with the lease (InterBroker.swift).
    let internalPortBox = NIOLockedValueBox(0)
    /// Connections to other brokers' internal listeners.
    let peers: PeerConnections
    /// Transactional writes the (remote) coordinator confirmed, until their markers arrive.
    let verifiedWrites = NIOLockedValueBox(Set<VerifiedWrite>())

    public init(config: BrokerConfig, engine: StreamEngine, metadata: any MetadataStore, clusterId: String,
                metrics: BrokerMetrics, logger: Logger) {
        self.config = config
        self.engine = engine
        self.metadata = metadata
        self.clusterId = clusterId
        self.metrics = metrics
        self.logger = logger
        self.groups = GroupCoordinator(config: config.groupCoordinator, logger: logger)
        self.peers = PeerConnections(nodeId: config.nodeId)
        self.transactions = TransactionCoordinator(config: config.transactionCoordinator, store: metadata,
                                                   coordinatorEpoch: Int32(truncatingIfNeeded: engine.brokerEpoch), logger: logger)
    }

    public var isReady: Bool { readyBox.withLockedValue { $0 } }

    /// Joins the cluster (lease, placement; the controller's duties when it holds that lease)
    /// and opens the streams of the partitions assigned here (each at a new epoch). The broker
    /// is ready once its owner calls `markReady()`.
    public func start() async throws {
        try await renewLease()
        try await clusterLock.withLock { try await self.clusterRound() }
        // After the streams: transactions that were completing write their markers now.
        try await loadTransactions()
    }

    /// `/readyz` answers ready from now on, unless the broker was superseded meanwhile.
    /// `tern serve` calls it once its signal handlers are in place, so that a SIGTERM sent
    /// after readiness is always a graceful shutdown.
    public func markReady() {
        readyBox.withLockedValue { $0 = !cluster.withLockedValue { $0.superseded } }
    }

    public func stopAccepting() { readyBox.withLockedValue { $0 = false } }

    /// Unloads the groups on shutdown: parked JoinGroup/SyncGroup requests are answered
    /// NOT_COORDINATOR instead of waiting for a rebalance that will not finish.
    public func unloadGroups() { groups.shutdown() }

    // MARK: topics

    func topic(_ name: String) -> TopicState? { topicTable.withLockedValue { $0[name] } }
    func topic(id: KafkaUUID) -> TopicState? { topicTable.withLockedValue { $0.values.first { $0.id == id } } }
    public func allTopics() -> [TopicState] { topicTable.withLockedValue { Array($0.values) }.sorted { $0.name < $1.name } }

    func streamId(_ topic: String, _ partition: Int32) -> Int64? {
        guard let t = self.topic(topic), partition >= 0, Int(partition) < t.streamIds.count else { return nil }
        return t.streamIds[Int(partition)]
    }

    /// Why a partition cannot be read or written here: it does not exist, or another broker
    /// serves it (the client refreshes its metadata and goes there).
    func partitionError(_ topic: String, _ partition: Int32) -> ErrorCode {
        guard let id = streamId(topic, partition) else { return .unknownTopicOrPartition }
        return engine.offsets(streamId: id) == nil ? .notLeaderOrFollower : .none
    }

    func maxMessageBytes(_ t: TopicState) -> Int32 {
        t.configs["max.message.bytes"].flatMap { Int32($0) } ?? config.messageMaxBytes
    }

    enum CreateError: Error {
        case exists
        case failed(String)
    }

    /// Creates a topic and opens its streams.
    func createTopic(name: String, partitions: Int, configs: [String: String]) async throws(CreateError) -> TopicState {
        do {
            let created = try await topicLock.withLock {
                if self.topic(name) != nil { throw CreateError.exists }
                let record = try await metadata.createTopic(name: name, topicId: KafkaUUID.random().hex, partitions: partitions, configs: configs)
                let t = TopicState(record)
                topicTable.withLockedValue { $0[name] = t }
                try await place(newStreams: record.streamIds)
                logger.info("created topic", metadata: ["topic": "\(name)", "partitions": "\(partitions)"])
                return t
            }
            // A snapshot at once, not at the next interval: a rebuild from the bucket can
            // place a topic's records only if some snapshot names the topic.
            await snapshotMetadata(evenIfNotController: true)
            return created
        } catch let e as CreateError {
            throw e
        } catch let e as MetadataError where e.code == .topicExists {
            // Created by another broker since this one last read the topics: read them now.
            await clusterTick()
            throw .exists
        } catch {
            throw .failed("\(error)")
        }
    }

    func deleteTopic(name: String) async throws -> Bool {
        try await topicLock.withLock {
            guard let record = try await metadata.deleteTopic(name: name) else { return false }
            topicTable.withLockedValue { $0[name] = nil }
            for id in record.streamIds { engine.close(streamId: id) }
            logger.info("deleted topic", metadata: ["topic": "\(name)"])
            return true
        }
    }

    // MARK: dispatch

    /// What a connection does after a request: send a response, send nothing (acks=0), or
    /// close because the request could not be understood.
    public enum Outcome: Sendable {
        case respond(Answer)
        case noResponse
        case close(String)
    }

    /// Handles one request frame (without its length prefix). Work that must happen in
    /// request order (offset assignment) is done before this returns; waiting for durability
    /// or for data happens behind the returned answer. `clientHost` is the peer as Kafka prints it
    /// (`/127.0.0.1`), reported for group members.
    public func handle(frame: ByteBuffer, clientHost: String = "", listener: Listener = .client) async -> Outcome {
        guard let (key, version, correlationId) = RequestHeader.peek(frame) else {
            metrics.badInput()
            return .close("request shorter than a request header")
        }
        guard let api = ApiKey(rawValue: key), Self.serves(api, on: listener) else {
            // Kafka closes the connection on an API key it does not know.
            metrics.badInput()
            return .close("unknown API key \(key)")
        }
        if api == .apiVersions && !api.versions.contains(version) {
            // Kafka answers a too-new ApiVersions with its own list at v0, so the client can retry.
            return .respond(.ready(unsupportedApiVersions(correlationId: correlationId)))
        }
        guard api.versions.contains(version), api != .produce || version >= 3 else {
            metrics.badInput()
            return .close("unsupported version \(version) of \(api)")
        }
        var body = frame
        let header: RequestHeader
        do {
            header = try RequestHeader(from: &body, flexible: api.firstFlexibleVersion.map { version >= $0 } ?? false)
        } catch {
            metrics.badInput()
            return .close("bad request header: \(error)")
        }
        let start = ContinuousClock.now
        do {
            let outcome = try await dispatch(api, header: header, body: &body, clientHost: clientHost, listener: listener)
            if case .respond(let answer) = outcome {
                let metrics = self.metrics
                answer.whenReady { _ in metrics.request("\(api)", seconds: (ContinuousClock.now - start).seconds, failed: false) }
            } else {
                metrics.request("\(api)", seconds: (ContinuousClock.now - start).seconds, failed: false)
            }
            return outcome
        } catch {
            metrics.badInput()
            metrics.request("\(api)", seconds: (ContinuousClock.now - start).seconds, failed: true)
            return .close("cannot decode \(api) v\(version): \(error)")
        }
    }

    private func dispatch(_ api: ApiKey, header: RequestHeader, body: inout ByteBuffer, clientHost: String,
                          listener: Listener) async throws -> Outcome {
        let v = header.apiVersion
        switch api {
        case .apiVersions:
            let r = try ApiVersionsRequest(from: &body, version: v)
            return respond(header, apiVersions(r, listener: listener))
        case .metadata:
            let r = try MetadataRequest(from: &body, version: v)
            return respond(header, await metadata(r, version: v))
        case .createTopics:
            let r = try CreateTopicsRequest(from: &body, version: v)
            return respond(header, await createTopics(r, version: v))
        case .deleteTopics:
            let r = try DeleteTopicsRequest(from: &body, version: v)
            return respond(header, await deleteTopics(r, version: v))
        case .produce:
            let r = try ProduceRequest(from: &body, version: v)
            return await produce(r, header: header)
        case .fetch:
            let r = try FetchRequest(from: &body, version: v)
            return .respond(.frameTask {
                let response = await self.fetch(r, version: v)
                // The record sets go out as they are (RecordsSplice); room up front for the
                // rest, and for the small record sets, which are copied.
                let copied = response.responses.reduce(0) {
                    $0 + $1.partitions.reduce(0) { n, p in
                        let bytes = (p.records?.readableBytes ?? 0) + p.recordsContinued.readableBytes
                        return n + 64 + (RecordsSplice.isCopied(bytes: bytes) ? bytes : 0)
                    }
                }
                let splice = RecordsSplice()
                let b = RecordsSplice.$current.withValue(splice) { self.encode(header, response, capacity: 256 + copied, extra: splice) }
                // Nothing left out (small or no records, as a tail read's often are): one buffer.
                return splice.bytes == 0 ? .whole(b) : .parts(splice.parts(of: b))
            })
        case .listOffsets:
            let r = try ListOffsetsRequest(from: &body, version: v)
            return .respond(.task { self.encode(header, await self.listOffsets(r)) })
        case .offsetForLeaderEpoch:
            let r = try OffsetForLeaderEpochRequest(from: &body, version: v)
            return respond(header, offsetForLeaderEpoch(r))
        case .describeConfigs:
            let r = try DescribeConfigsRequest(from: &body, version: v)
            return respond(header, describeConfigs(r, version: v))
        case .initProducerId:
            let r = try InitProducerIdRequest(from: &body, version: v)
            return respond(header, await initProducerId(r, version: v))
        case .findCoordinator:
            let r = try FindCoordinatorRequest(from: &body, version: v)
            return respond(header, findCoordinator(r, version: v))
        case .offsetCommit:
            let r = try OffsetCommitRequest(from: &body, version: v)
            return respond(header, await offsetCommit(r, version: v))
        case .offsetFetch:
            let r = try OffsetFetchRequest(from: &body, version: v)
            return respond(header, await offsetFetch(r, version: v))
        case .alterConfigs:
            let r = try AlterConfigsRequest(from: &body, version: v)
            return respond(header, await alterConfigs(r))
        case .incrementalAlterConfigs:
            let r = try IncrementalAlterConfigsRequest(from: &body, version: v)
            return respond(header, await incrementalAlterConfigs(r))
        case .createPartitions:
            let r = try CreatePartitionsRequest(from: &body, version: v)
            return respond(header, await createPartitions(r))
        case .deleteRecords:
            let r = try DeleteRecordsRequest(from: &body, version: v)
            return respond(header, await deleteRecords(r))
        // Group membership lives in the coordinator's memory: on any other broker, NOT_COORDINATOR
        // sends the client back to FindCoordinator.
        case .joinGroup:
            let r = try JoinGroupRequest(from: &body, version: v)
            guard isCoordinator(for: r.groupId) else { return respond(header, ClassicGroup.joinError(.notCoordinator, memberId: r.memberId)) }
            return joinGroup(r, header: header, clientHost: clientHost)
        case .syncGroup:
            let r = try SyncGroupRequest(from: &body, version: v)
            guard isCoordinator(for: r.groupId) else { return respond(header, ClassicGroup.syncError(.notCoordinator)) }
            return syncGroup(r, header: header)
        case .heartbeat:
            let r = try HeartbeatRequest(from: &body, version: v)
            guard isCoordinator(for: r.groupId) else {
                var resp = HeartbeatResponse()
                resp.errorCode = ErrorCode.notCoordinator.rawValue
                return respond(header, resp)
            }
            return respond(header, heartbeat(r))
        case .leaveGroup:
            let r = try LeaveGroupRequest(from: &body, version: v)
            guard isCoordinator(for: r.groupId) else {
                var resp = LeaveGroupResponse()
                resp.errorCode = ErrorCode.notCoordinator.rawValue
                return respond(header, resp)
            }
            return respond(header, leaveGroup(r, version: v))
        case .listGroups:
            return respond(header, await listGroups(try ListGroupsRequest(from: &body, version: v)))
        case .describeGroups:
            return respond(header, await describeGroups(try DescribeGroupsRequest(from: &body, version: v), version: v))
        case .deleteGroups:
            return respond(header, await deleteGroups(try DeleteGroupsRequest(from: &body, version: v)))
        case .offsetDelete:
            return respond(header, await offsetDelete(try OffsetDeleteRequest(from: &body, version: v)))
        case .consumerGroupHeartbeat:
            let r = try ConsumerGroupHeartbeatRequest(from: &body, version: v)
            guard isCoordinator(for: r.groupId) || !config.groupCoordinator.consumerProtocolEnabled else {
                var resp = ConsumerGroupHeartbeatResponse()
                resp.errorCode = ErrorCode.notCoordinator.rawValue
                return respond(header, resp)
            }
            return respond(header, consumerGroupHeartbeat(r, header: header, clientHost: clientHost))
        case .consumerGroupDescribe:
            return respond(header, consumerGroupDescribe(try ConsumerGroupDescribeRequest(from: &body, version: v)))
        case .saslHandshake:
            return respond(header, saslHandshake(try SaslHandshakeRequest(from: &body, version: v)))
        case .saslAuthenticate:
            return respond(header, saslAuthenticate(try SaslAuthenticateRequest(from: &body, version: v)))
        case .addPartitionsToTxn:
            return respond(header, await addPartitionsToTxn(try AddPartitionsToTxnRequest(from: &body, version: v), version: v))
        case .addOffsetsToTxn:
            return respond(header, await addOffsetsToTxn(try AddOffsetsToTxnRequest(from: &body, version: v), version: v))
        case .endTxn:
            return respond(header, await endTxn(try EndTxnRequest(from: &body, version: v), version: v))
        case .txnOffsetCommit:
            let r = try TxnOffsetCommitRequest(from: &body, version: v)
            return respond(header, listener == .internal ? await holdTxnOffsets(r) : await txnOffsetCommit(r, version: v))
        case .listTransactions:
            return respond(header, listTransactions(try ListTransactionsRequest(from: &body, version: v)))
        case .describeTransactions:
            return respond(header, describeTransactions(try DescribeTransactionsRequest(from: &body, version: v)))
        case .describeProducers:
            return respond(header, describeProducers(try DescribeProducersRequest(from: &body, version: v)))
        case .describeAcls:
            return respond(header, describeAcls(try DescribeAclsRequest(from: &body, version: v)))
        case .createAcls:
            return respond(header, createAcls(try CreateAclsRequest(from: &body, version: v)))
        case .deleteAcls:
            return respond(header, deleteAcls(try DeleteAclsRequest(from: &body, version: v)))
        case .describeCluster:
            return respond(header, describeCluster(try DescribeClusterRequest(from: &body, version: v), version: v))
        case .describeLogDirs:
            return respond(header, describeLogDirs(try DescribeLogDirsRequest(from: &body, version: v)))
        case .alterPartitionReassignments:
            return respond(header, await alterPartitionReassignments(try AlterPartitionReassignmentsRequest(from: &body, version: v)))
        case .listPartitionReassignments:
            return respond(header, await listPartitionReassignments(try ListPartitionReassignmentsRequest(from: &body, version: v)))
        case .describeTopicPartitions:
            return respond(header, describeTopicPartitions(try DescribeTopicPartitionsRequest(from: &body, version: v)))
        case .writeTxnMarkers:
            return respond(header, await writeTxnMarkers(try WriteTxnMarkersRequest(from: &body, version: v)))
        case .releaseStreams:
            let r = try ReleaseStreamsRequest(from: &body, version: v)
            return .respond(.task { self.encode(header, await self.releaseStreams(r)) })
        }
    }

    func respond<M: KafkaMessage>(_ header: RequestHeader, _ message: M) -> Outcome {
        .respond(.ready(encode(header, message)))
    }

    /// Frames a response: length, response header, body. With `extra`, the record sets it
    /// kept out of the buffer count in the length.
    func encode<M: KafkaMessage>(_ header: RequestHeader, _ message: M, capacity: Int = 256, extra: RecordsSplice? = nil) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: capacity)
        b.writeInteger(Int32(0))
        ResponseHeader.encode(correlationId: header.correlationId,
                              flexible: ResponseHeader.isFlexible(apiKey: header.apiKey, version: header.apiVersion), into: &b)
        message.encode(into: &b, version: header.apiVersion)
        b.setInteger(Int32(b.readableBytes - 4 + (extra?.bytes ?? 0)), at: 0)
        return b
    }
}

/// A mutex for async critical sections (topic creation), FIFO.
final class AsyncMutex: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    /// `withLock` for a body that cannot throw.
    func locked<T: Sendable>(_ body: () async -> T) async -> T {
        // The body does not throw, so neither does withLock.
        try! await withLock(body)
    }

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let acquired = state.withLockedValue { s -> Bool in
                if !s.locked {
                    s.locked = true
                    return true
                }
                s.waiters.append(c)
                return false
            }
            if acquired { c.resume() }
        }
        defer {
            let next = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
                if s.waiters.isEmpty {
                    s.locked = false
                    return nil
                }
                return s.waiters.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
