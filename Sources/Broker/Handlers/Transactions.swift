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

    /// KafkaApis.handleAddPartitionsToTxnRequest (v3 and below): when a partition is unknown
    /// the whole request fails, that one with UNKNOWN_TOPIC_OR_PARTITION and the others with
    /// OPERATION_NOT_ATTEMPTED. Otherwise the coordinator answers every partition alike.
    func addPartitionsToTxn(_ r: AddPartitionsToTxnRequest, version: Int16) async -> AddPartitionsToTxnResponse {
        // Kafka collects the partitions into a set keyed by topic: merge repeats.
        var order: [String] = []
        var partitions: [String: [Int32]] = [:]
        for t in r.v3AndBelowTopics {
            if partitions[t.name] == nil { order.append(t.name) }
            for p in t.partitions where !(partitions[t.name]?.contains(p) ?? false) { partitions[t.name, default: []].append(p) }
        }
        let anyUnknown = order.contains { name in partitions[name]!.contains { streamId(name, $0) == nil } }
        var coordinatorAnswer = ErrorCode.none
        if !anyUnknown {
            let id = r.v3AndBelowTransactionalId, pid = r.v3AndBelowProducerId, epoch = r.v3AndBelowProducerEpoch
            let added = order.flatMap { name in partitions[name]!.map { TxnPartition(topic: name, partition: $0) } }
            let out = await transactions.run(id, io: self) { m, now in
                m.addPartitions(transactionalId: id, producerId: pid, producerEpoch: epoch, partitions: added, now: now)
            }
            coordinatorAnswer = Self.fencedError(out.error, version: version, since: 2)
        }
        var resp = AddPartitionsToTxnResponse()
        resp.resultsByTopicV3AndBelow = order.map { name in
            var tr = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult()
            tr.name = name
            tr.resultsByPartition = partitions[name]!.map { p in
                var pr = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult.AddPartitionsToTxnPartitionResult()
                pr.partitionIndex = p
                let code: ErrorCode = !anyUnknown ? coordinatorAnswer
                    : streamId(name, p) == nil ? .unknownTopicOrPartition : .operationNotAttempted
                pr.partitionErrorCode = code.rawValue
                return pr
            }
            return tr
        }
        return resp
    }

    /// KafkaApis.handleAddOffsetsToTxnRequest: the group's offsets partition joins the
    /// transaction (here: the group itself).
    func addOffsetsToTxn(_ r: AddOffsetsToTxnRequest, version: Int16) async -> AddOffsetsToTxnResponse {
        var resp = AddOffsetsToTxnResponse()
        if r.groupId.isEmpty {
            resp.errorCode = ErrorCode.invalidGroupId.rawValue
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
        let out = await transactions.run(r.transactionalId, io: self) { m, now in
            m.endTransaction(transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch,
                             commit: r.committed, now: now)
        }
        var resp = EndTxnResponse()
        resp.errorCode = Self.fencedError(out.error, version: version, since: 2).rawValue
        return resp
    }

    /// TxnOffsetCommit: unknown topics and partitions get UNKNOWN_TOPIC_OR_PARTITION, an empty
    /// group id INVALID_GROUP_ID; the rest are held by the transaction and written to the
    /// group's offsets only when it commits.
    func txnOffsetCommit(_ r: TxnOffsetCommitRequest, version: Int16) async -> TxnOffsetCommitResponse {
        var results: [[ErrorCode?]] = r.topics.map { t in
            t.partitions.map { p in
                if r.groupId.isEmpty { return .invalidGroupId }
                if streamId(t.name, p.partitionIndex) == nil { return .unknownTopicOrPartition }
                if let m = p.committedMetadata, m.utf8.count > config.offsetMetadataMaxBytes { return .offsetMetadataTooLarge }
                return nil
            }
        }
        var offsets: [CommittedOffset] = []
        for (ti, t) in r.topics.enumerated() {
            for (pi, p) in t.partitions.enumerated() where results[ti][pi] == nil {
                offsets.append(CommittedOffset(topic: t.name, partition: p.partitionIndex, offset: p.committedOffset,
                                               leaderEpoch: version >= 2 ? p.committedLeaderEpoch : -1, metadata: p.committedMetadata))
            }
        }
        if !offsets.isEmpty {
            let held = offsets
            let out = await transactions.run(r.transactionalId, io: self) { m, now in
                m.txnOffsetCommit(transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch,
                                  group: r.groupId, offsets: held, now: now)
            }
            let code = Self.fencedError(out.error, version: version, since: 3)
            results = results.map { $0.map { $0 ?? code } }
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

    func writeMarker(_ job: MarkerJob, partition p: TxnPartition, coordinatorEpoch: Int32) async -> Bool {
        guard let sid = streamId(p.topic, p.partition) else { return true }  // the topic is gone
        let batch = ControlMarker(isCommit: job.commit, coordinatorEpoch: coordinatorEpoch)
            .batch(producerId: job.producerId, producerEpoch: job.producerEpoch, timestamp: Self.wallClockMs())
        guard let header = RecordBatchHeader(peeking: batch) else { return false }
        let ticket = await engine.append(streamId: sid, batch: batch, header: header, timeout: .seconds(30))
        // Flush now rather than at the next WAL interval: the producer's next transaction
        // waits (CONCURRENT_TRANSACTIONS) until every marker is durable.
        engine.flush()
        switch await ticket.result() {
        case .success: return true
        case .failure(.unknownStream): return true
        case .failure(let e):
            logger.warning("transaction marker not written", metadata: ["topic": "\(p.topic)", "partition": "\(p.partition)", "error": "\(e)"])
            return false
        }
    }

    func commitGroupOffsets(group: String, _ offsets: [CommittedOffset]) async throws {
        try await metadata.commitOffsets(group: group, offsets)
    }
}
