import KafkaProtocol
import Metadata
import NIOCore
import StreamStorage

/// The transactional APIs, answered by this broker's transaction coordinator (FindCoordinator
/// with key type 1 names this broker). Errors follow Kafka's TransactionCoordinator; clients
/// older than KIP-588 get INVALID_PRODUCER_EPOCH where newer ones get PRODUCER_FENCED
/// (KafkaApis maps it per request version).
extension Broker {
    static func fencedError(_ e: ErrorCode, version: Int16, since firstVersion: Int16) -> ErrorCode {
        e == .producerFenced && version < firstVersion ? .invalidProducerEpoch : e
    }

    /// KafkaApis.handleAddPartitionsToTxnRequest. Versions 0-3 (clients) name one transaction;
    /// 4+ (KIP-890, from brokers) a batch of them, each answered on its own under
    /// `results_by_transaction`, some only verified (VerifyOnly: is the partition in the
    /// transaction? nothing is added). In either form, when a partition is unknown that
    /// transaction fails: that partition with UNKNOWN_TOPIC_OR_PARTITION, the others with
    /// OPERATION_NOT_ATTEMPTED; otherwise the coordinator answers each of its partitions.
    func addPartitionsToTxn(_ r: AddPartitionsToTxnRequest, version: Int16) async -> AddPartitionsToTxnResponse {
        var resp = AddPartitionsToTxnResponse()
        if version < 4 {
            let topics = r.v3AndBelowTopics.map { ($0.name, $0.partitions) }
            resp.resultsByTopicV3AndBelow = Self.topicResults(await addPartitionsToTxn(
                transactionalId: r.v3AndBelowTransactionalId, producerId: r.v3AndBelowProducerId,
                producerEpoch: r.v3AndBelowProducerEpoch, verifyOnly: false, topics: topics, version: version))
            return resp
        }
        // The transactions are a map keyed by transactional id in Kafka: a repeat replaces.
        var order: [String] = []
        var byId: [String: AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction] = [:]
        for t in r.transactions {
            if byId[t.transactionalId] == nil { order.append(t.transactionalId) }
            byId[t.transactionalId] = t
        }
        for id in order {
            let t = byId[id]!
            var result = AddPartitionsToTxnResponse.AddPartitionsToTxnResult()
            result.transactionalId = id
            result.topicResults = Self.topicResults(await addPartitionsToTxn(
                transactionalId: id, producerId: t.producerId, producerEpoch: t.producerEpoch, verifyOnly: t.verifyOnly,
                topics: t.topics.map { ($0.name, $0.partitions) }, version: version))
            resp.resultsByTransaction.append(result)
        }
        return resp
    }

    static func topicResults(_ codes: [(name: String, partitions: [(Int32, ErrorCode)])]) -> [AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult] {
        codes.map { t in
            var tr = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult()
            tr.name = t.name
            tr.resultsByPartition = t.partitions.map { p, code in
                var pr = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult.AddPartitionsToTxnPartitionResult()
                pr.partitionIndex = p
                pr.partitionErrorCode = code.rawValue
                return pr
            }
            return tr
        }
    }

    /// One transaction of an AddPartitionsToTxn request: the code of each partition, by topic
    /// in request order (repeats merged, as Kafka collects them into a set).
    private func addPartitionsToTxn(transactionalId id: String, producerId pid: Int64, producerEpoch epoch: Int16, verifyOnly: Bool,
                                    topics: [(String, [Int32])],
                                    version: Int16) async -> [(name: String, partitions: [(Int32, ErrorCode)])] {
        var order: [String] = []
        var partitions: [String: [Int32]] = [:]
        for (name, ps) in topics {
            if partitions[name] == nil { order.append(name) }
            for p in ps where !(partitions[name]?.contains(p) ?? false) { partitions[name, default: []].append(p) }
        }
        guard isCoordinator(for: id) else {
            return order.map { name in (name, partitions[name]!.map { ($0, ErrorCode.notCoordinator) }) }
        }
        let anyUnknown = order.contains { name in partitions[name]!.contains { streamId(name, $0) == nil } }
        if anyUnknown {
            return order.map { name in
                (name, partitions[name]!.map { p in (p, streamId(name, p) == nil ? ErrorCode.unknownTopicOrPartition : .operationNotAttempted) })
            }
        }
        let added = order.flatMap { name in partitions[name]!.map { TxnPartition(topic: name, partition: $0) } }
        if verifyOnly {
            let (error, codes) = transactions.verifyPartitions(transactionalId: id, producerId: pid, producerEpoch: epoch, partitions: added)
            return order.map { name in
                (name, partitions[name]!.map { p in (p, error != .none ? error : codes[TxnPartition(topic: name, partition: p)] ?? .none) })
            }
        }
        let out = await transactions.run(id, io: self) { m, now in
            m.addPartitions(transactionalId: id, producerId: pid, producerEpoch: epoch, partitions: added, now: now)
        }
        let code = Self.fencedError(out.error, version: version, since: 2)
        return order.map { name in (name, partitions[name]!.map { ($0, code) }) }
    }

    /// KafkaApis.handleAddOffsetsToTxnRequest: the group's offsets partition joins the
    /// transaction (here: the group itself). Kafka checks nothing of the group id here (an
    /// empty one maps to an offsets partition like any other); TxnOffsetCommit refuses it.
    func addOffsetsToTxn(_ r: AddOffsetsToTxnRequest, version: Int16) async -> AddOffsetsToTxnResponse {
        var resp = AddOffsetsToTxnResponse()
        guard isCoordinator(for: r.transactionalId) else {
            resp.errorCode = ErrorCode.notCoordinator.rawValue
            return resp
        }
        let out = await transactions.run(r.transactionalId, io: self) { m, now in
            m.addPartitions(transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch,
                            partitions: [], groups: [r.groupId], now: now)
        }
        resp.errorCode = Self.fencedError(out.error, version: version, since: 2).rawValue
        return resp
    }

    /// KafkaApis.handleEndTxnRequest → TransactionCoordinator.endTransaction. Answered once
    /// PrepareCommit/PrepareAbort is stored; the markers follow.
    func endTxn(_ r: EndTxnRequest, version: Int16) async -> EndTxnResponse {
        guard isCoordinator(for: r.transactionalId) else {
            var resp = EndTxnResponse()
            resp.errorCode = ErrorCode.notCoordinator.rawValue
            return resp
        }
        let out = await transactions.run(r.transactionalId, io: self) { m, now in
            m.endTransaction(transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch,
                             commit: r.committed, now: now)
        }
        var resp = EndTxnResponse()
        resp.errorCode = Self.fencedError(out.error, version: version, since: 2).rawValue
        return resp
    }

    /// TxnOffsetCommit as KafkaApis.handleTxnOffsetCommitRequest and the group coordinator
    /// answer it, in their order: unknown topics and partitions get UNKNOWN_TOPIC_OR_PARTITION;
    /// for the rest, an empty group id is INVALID_GROUP_ID; then the transaction is verified
    /// (the coordinator's verify-only check of the offsets partition: a fenced epoch comes back
    /// as INVALID_PRODUCER_EPOCH at every version, since AddPartitionsToTxnManager maps
    /// PRODUCER_FENCED so; a group not in the transaction is TRANSACTION_ABORTABLE from v4,
    /// INVALID_TXN_STATE before); then the group's member, instance and generation (v3+
    /// fields); then each partition's metadata size. What passes is held by the transaction
    /// and written to the group's offsets only when it commits.
    func txnOffsetCommit(_ r: TxnOffsetCommitRequest, version: Int16) async -> TxnOffsetCommitResponse {
        var results: [[ErrorCode?]] = r.topics.map { t in
            t.partitions.map { p in streamId(t.name, p.partitionIndex) == nil ? .unknownTopicOrPartition : nil }
        }
        if results.contains(where: { $0.contains(nil) }) {
            var verdict: ErrorCode?
            if r.groupId.isEmpty { verdict = .invalidGroupId } else if !isCoordinator(for: r.groupId) { verdict = .notCoordinator }
            var offsets: [CommittedOffset] = []
            for (ti, t) in r.topics.enumerated() {
                for (pi, p) in t.partitions.enumerated() where results[ti][pi] == nil {
                    if let m = p.committedMetadata, m.utf8.count > config.offsetMetadataMaxBytes { continue }
                    offsets.append(CommittedOffset(topic: t.name, partition: p.partitionIndex, offset: p.committedOffset,
                                                   leaderEpoch: version >= 2 ? p.committedLeaderEpoch : -1, metadata: p.committedMetadata))
                }
            }
            if verdict == nil {
                let membership = groups.validateTxnOffsetCommit(groupId: r.groupId, memberId: r.memberId, instanceId: r.groupInstanceId,
                                                                generation: r.generationId)
                // The transaction is verified before the group is looked at; a refused group
                // holds nothing.
                let held = membership == nil ? offsets : []
                switch await holdTxnOffsets(r, held) {
                case .none: verdict = membership
                case .producerFenced: verdict = .invalidProducerEpoch
                case .transactionAbortable where version < 4: verdict = .invalidTxnState
                case let error: verdict = error
                }
            }
            _ = answer(&results, r.topics.map(\.partitions), metadata: \.committedMetadata, verdict: verdict)
        }
        var resp = TxnOffsetCommitResponse()
        resp.topics = zip(r.topics, results).map { t, codes in
            var tr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic()
            tr.name = t.name
            tr.partitions = zip(t.partitions, codes).map { p, code in
                var pr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic.TxnOffsetCommitResponsePartition()
                pr.partitionIndex = p.partitionIndex
                pr.errorCode = (code ?? .unknownServerError).rawValue
                return pr
            }
            return tr
        }
        return resp
    }

    /// Gives offsets a group accepted to the transaction's coordinator, here or on another
    /// broker (the internal TxnOffsetCommit), which holds them until the transaction ends.
    /// Returns the coordinator's verdict on the transaction.
    private func holdTxnOffsets(_ r: TxnOffsetCommitRequest, _ held: [CommittedOffset]) async -> ErrorCode {
        guard let c = coordinator(for: r.transactionalId) else { return .coordinatorNotAvailable }
        if c.nodeId == config.nodeId {
            return await transactions.run(r.transactionalId, io: self) { m, now in
                m.txnOffsetCommit(transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch,
                                  group: r.groupId, offsets: held, now: now)
            }.error
        }
        var forward = r
        var byTopic: [String: [TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic.TxnOffsetCommitRequestPartition]] = [:]
        var order: [String] = []
        for o in held {
            var p = TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic.TxnOffsetCommitRequestPartition()
            p.partitionIndex = o.partition
            p.committedOffset = o.offset
            p.committedLeaderEpoch = o.leaderEpoch
            p.committedMetadata = o.metadata
            if byTopic[o.topic] == nil { order.append(o.topic) }
            byTopic[o.topic, default: []].append(p)
        }
        // Nothing to hold still asks for the verdict: a topic named "" (no topic has that
        // name) carries it.
        if order.isEmpty {
            order = [""]
            byTopic[""] = [.init()]
        }
        forward.topics = order.map { name in
            var t = TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic()
            t.name = name
            t.partitions = byTopic[name]!
            return t
        }
        do {
            let resp = try await peers.send(forward, to: c.nodeId, broker: self, version: 3)
            let code = resp.topics.first?.partitions.first.map { ErrorCode(rawValue: $0.errorCode) ?? .unknownServerError }
            return code ?? .unknownServerError
        } catch {
            logger.warning("transactional offsets not handed to the coordinator", metadata: ["to": "\(c.nodeId)", "error": "\(error)"])
            return .coordinatorNotAvailable
        }
    }

    /// The internal TxnOffsetCommit (from the group's coordinator, which checked the group):
    /// holds the offsets in the transaction and answers its verdict on every partition.
    func holdTxnOffsets(_ r: TxnOffsetCommitRequest) async -> TxnOffsetCommitResponse {
        var code = ErrorCode.notCoordinator
        if isCoordinator(for: r.transactionalId) {
            let held = r.topics.filter { !$0.name.isEmpty }.flatMap { t in
                t.partitions.map { p in
                    CommittedOffset(topic: t.name, partition: p.partitionIndex, offset: p.committedOffset,
                                    leaderEpoch: p.committedLeaderEpoch, metadata: p.committedMetadata)
                }
            }
            code = await transactions.run(r.transactionalId, io: self) { m, now in
                m.txnOffsetCommit(transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch,
                                  group: r.groupId, offsets: held, now: now)
            }.error
        }
        var resp = TxnOffsetCommitResponse()
        resp.topics = r.topics.map { t in
            var tr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic()
            tr.name = t.name
            tr.partitions = t.partitions.map { p in
                var pr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic.TxnOffsetCommitResponsePartition()
                pr.partitionIndex = p.partitionIndex
                pr.errorCode = code.rawValue
                return pr
            }
            return tr
        }
        return resp
    }

    /// The state names TransactionState.fromName knows; other filters are reported back as
    /// unknown (TransactionStateManager.listTransactionStates).
    static let transactionStateNames: Set<String> = Set(TransactionState.allCases.map(\.rawValue))

    /// TransactionStateManager.listTransactionStates: filtered by state, producer id and (v1)
    /// by having run at least `durationFilter` ms.
    func listTransactions(_ r: ListTransactionsRequest) -> ListTransactionsResponse {
        var resp = ListTransactionsResponse()
        resp.unknownStateFilters = r.stateFilters.filter { !Self.transactionStateNames.contains($0) }
        let now = Self.wallClockMs()
        resp.transactionStates = transactions.snapshot().filter { m in
            (r.stateFilters.isEmpty || r.stateFilters.contains(m.state.rawValue))
                && (r.producerIdFilters.isEmpty || r.producerIdFilters.contains(m.producerId))
                && (r.durationFilter < 0 || (m.state == .ongoing && m.startMs >= 0 && now - m.startMs >= r.durationFilter))
        }.map { m in
            var s = ListTransactionsResponse.TransactionState()
            s.transactionalId = m.transactionalId
            s.producerId = m.producerId
            s.transactionState = m.state.rawValue
            return s
        }
        return resp
    }

    /// TransactionCoordinator.handleDescribeTransactions: INVALID_REQUEST for an empty id,
    /// TRANSACTIONAL_ID_NOT_FOUND for an unknown one.
    func describeTransactions(_ r: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
        let known = Dictionary(transactions.snapshot().map { ($0.transactionalId, $0) }, uniquingKeysWith: { a, _ in a })
        var resp = DescribeTransactionsResponse()
        resp.transactionStates = r.transactionalIds.map { id in
            var s = DescribeTransactionsResponse.TransactionState()
            s.transactionalId = id
            guard !id.isEmpty else {
                s.errorCode = ErrorCode.invalidRequest.rawValue
                return s
            }
            guard isCoordinator(for: id) else {
                s.errorCode = ErrorCode.notCoordinator.rawValue
                return s
            }
            guard let m = known[id] else {
                s.errorCode = ErrorCode.transactionalIdNotFound.rawValue
                return s
            }
            s.transactionState = m.state.rawValue
            s.transactionTimeoutMs = m.timeoutMs
            s.transactionStartTimeMs = m.startMs
            s.producerId = m.producerId
            s.producerEpoch = m.producerEpoch
            var byTopic: [String: [Int32]] = [:]
            for p in m.partitions.sorted() { byTopic[p.topic, default: []].append(p.partition) }
            s.topics = byTopic.keys.sorted().map { t in
                var d = DescribeTransactionsResponse.TransactionState.TopicData()
                d.topic = t
                d.partitions = byTopic[t]!
                return d
            }
            return s
        }
        return resp
    }
}

extension Broker: TransactionIO {
    func allocateProducerId() async throws -> Int64 { try await metadata.allocateProducerId() }

    func writeMarker(_ job: MarkerJob, partition p: TxnPartition, coordinatorEpoch: Int32) async -> MarkerWrite {
        await writeMarkerAnywhere(job, partition: p, coordinatorEpoch: coordinatorEpoch)
    }

    /// Writes a marker into a partition this broker serves.
    func writeLocalMarker(_ job: MarkerJob, partition p: TxnPartition, coordinatorEpoch: Int32) async -> MarkerWrite {
        guard let sid = streamId(p.topic, p.partition) else { return .gone }  // the topic is gone
        forgetVerifiedWrites(producerId: job.producerId, partition: p)
        let batch = ControlMarker(isCommit: job.commit, coordinatorEpoch: coordinatorEpoch)
            .batch(producerId: job.producerId, producerEpoch: job.producerEpoch, timestamp: Self.wallClockMs())
        guard let header = RecordBatchHeader(peeking: batch) else { return .refused("marker batch unreadable") }
        let ticket = await engine.append(streamId: sid, batch: batch, header: header, timeout: .seconds(30))
        // Flush now rather than at the next WAL interval: the producer's next transaction
        // waits (CONCURRENT_TRANSACTIONS) until every marker is durable.
        engine.flush()
        switch await ticket.result() {
        case .success: return .written
        case .failure(.unknownStream): return .gone
        case .failure(.rejected(let code)): return .refused("\(code)")
        case .failure(.fenced):
            // Moved away (the coordinator finds its new broker next time), unless this whole
            // broker was replaced.
            if !cluster.withLockedValue({ $0.superseded }) { return .retry }
            return .stop("the stream of \(p.topic)-\(p.partition) is owned by another broker")
        case .failure(.shuttingDown): return .stop("shutting down")
        case .failure(.timedOut):
            logger.warning("transaction marker not written", metadata: ["topic": "\(p.topic)", "partition": "\(p.partition)", "error": "timed out"])
            return .retry
        }
    }

    func commitGroupOffsets(group: String, _ offsets: [CommittedOffset]) async throws {
        try await metadata.commitOffsets(group: group, offsets)
    }
}
