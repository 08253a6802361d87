import KafkaProtocol

/// Transactions before the transaction coordinator exists (issue 8).
///
/// FindCoordinator for a transactional id answers COORDINATOR_NOT_AVAILABLE and
/// InitProducerId with a transactional id fails the same way, so no transaction can begin.
/// The APIs that act on a transaction answer as a Kafka broker that hosts no partition of
/// the transaction-state topic: NOT_COORDINATOR (`TransactionStateManager.getTransactionState`),
/// which sends a client back to FindCoordinator, and from there to its retry backoff.
/// The read-only APIs tell the truth: there are no transactions.
extension Broker {
    /// KafkaApis.handleAddPartitionsToTxnRequest (v3 and below): when a partition is unknown
    /// the whole request fails, that one with UNKNOWN_TOPIC_OR_PARTITION and the others with
    /// OPERATION_NOT_ATTEMPTED. Otherwise TransactionCoordinator.handleAddPartitionsToTransaction
    /// answers every partition: INVALID_REQUEST for an empty transactional id, else
    /// NOT_COORDINATOR.
    func addPartitionsToTxn(_ r: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
        // Kafka collects the partitions into a set keyed by topic: merge repeats.
        var order: [String] = []
        var partitions: [String: [Int32]] = [:]
        for t in r.v3AndBelowTopics {
            if partitions[t.name] == nil { order.append(t.name) }
            for p in t.partitions where !(partitions[t.name]?.contains(p) ?? false) { partitions[t.name, default: []].append(p) }
        }
        let anyUnknown = order.contains { name in partitions[name]!.contains { streamId(name, $0) == nil } }
        let coordinatorAnswer: ErrorCode = r.v3AndBelowTransactionalId.isEmpty ? .invalidRequest : .notCoordinator
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

    /// KafkaApis.handleAddOffsetsToTxnRequest → TransactionCoordinator.handleAddPartitionsToTransaction.
    func addOffsetsToTxn(_ r: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
        var resp = AddOffsetsToTxnResponse()
        resp.errorCode = (r.transactionalId.isEmpty ? ErrorCode.invalidRequest : .notCoordinator).rawValue
        return resp
    }

    /// KafkaApis.handleEndTxnRequest → TransactionCoordinator.endTransaction.
    func endTxn(_ r: EndTxnRequest) -> EndTxnResponse {
        var resp = EndTxnResponse()
        resp.errorCode = (r.transactionalId.isEmpty ? ErrorCode.invalidRequest : .notCoordinator).rawValue
        return resp
    }

    /// TxnOffsetCommit goes to the group coordinator (this broker). KafkaApis
    /// (handleTxnOffsetCommitRequest) answers unknown topics and partitions with
    /// UNKNOWN_TOPIC_OR_PARTITION; the coordinator refuses an empty group id with
    /// INVALID_GROUP_ID (GroupCoordinatorService.commitTransactionalOffsets), and otherwise
    /// first verifies the transaction with its coordinator, which it cannot find
    /// (AddPartitionsToTxnManager.addOrVerifyTransaction: COORDINATOR_NOT_AVAILABLE for every
    /// partition). Nothing is stored.
    func txnOffsetCommit(_ r: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
        let coordinatorAnswer: ErrorCode = r.groupId.isEmpty ? .invalidGroupId : .coordinatorNotAvailable
        var resp = TxnOffsetCommitResponse()
        resp.topics = r.topics.map { t in
            var tr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic()
            tr.name = t.name
            tr.partitions = t.partitions.map { p in
                var pr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic.TxnOffsetCommitResponsePartition()
                pr.partitionIndex = p.partitionIndex
                pr.errorCode = (streamId(t.name, p.partitionIndex) == nil ? ErrorCode.unknownTopicOrPartition : coordinatorAnswer).rawValue
                return pr
            }
            return tr
        }
        return resp
    }

    /// The state names TransactionState.fromName knows; other filters are reported back as
    /// unknown (TransactionStateManager.listTransactionStates).
    static let transactionStateNames: Set<String> = [
        "Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence",
    ]

    /// No transactions: an empty list, with unknown state filters named as Kafka does.
    func listTransactions(_ r: ListTransactionsRequest) -> ListTransactionsResponse {
        var resp = ListTransactionsResponse()
        resp.unknownStateFilters = r.stateFilters.filter { !Self.transactionStateNames.contains($0) }
        return resp
    }

    /// TransactionCoordinator.handleDescribeTransactions: INVALID_REQUEST for an empty id,
    /// TRANSACTIONAL_ID_NOT_FOUND for every other (none exists).
    func describeTransactions(_ r: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
        var resp = DescribeTransactionsResponse()
        resp.transactionStates = r.transactionalIds.map { id in
            var s = DescribeTransactionsResponse.TransactionState()
            s.transactionalId = id
            s.errorCode = (id.isEmpty ? ErrorCode.invalidRequest : .transactionalIdNotFound).rawValue
            return s
        }
        return resp
    }
}
