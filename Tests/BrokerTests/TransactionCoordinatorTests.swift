import Broker
import KafkaProtocol
import Metadata
import Testing

/// The transaction coordinator state machine without I/O: each test names the Kafka
/// behaviour (TransactionCoordinator, TransactionMetadata) it pins.
@Suite struct TransactionCoordinatorTests {
    static let tp0 = TxnPartition(topic: "t", partition: 0)
    static let tp1 = TxnPartition(topic: "t", partition: 1)

    var m = TransactionCoordinatorStateMachine(config: TransactionCoordinatorConfiguration())
    var now: Int64 = 1_000_000

    /// A fresh transactional id with producer id 7 at epoch 0.
    mutating func initFresh(_ id: String = "tx", timeoutMs: Int32 = 60_000) -> TransactionOutput {
        let first = m.initProducerId(transactionalId: id, timeoutMs: timeoutMs, now: now)
        #expect(first.needsProducerId)
        return m.initProducerId(transactionalId: id, timeoutMs: timeoutMs, newProducerId: 7, now: now)
    }

    mutating func begin(_ id: String = "tx", epoch: Int16 = 0, _ parts: [TxnPartition] = [tp0]) -> TransactionOutput {
        m.addPartitions(transactionalId: id, producerId: 7, producerEpoch: epoch, partitions: parts, now: now)
    }

    @Test mutating func initAllocatesThenBumpsEpoch() {
        let out = initFresh()
        #expect(out.error == .none && out.producerId == 7 && out.producerEpoch == 0)
        #expect(out.persist?.state == .empty)
        let again = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, now: now)
        #expect(again.error == .none && again.producerId == 7 && again.producerEpoch == 1)
        // prepareIncrementProducerEpoch without an expected epoch: the last epoch is forgotten.
        #expect(again.persist?.lastProducerEpoch == -1)
    }

    @Test mutating func initRefusesBadTimeoutAndEmptyId() {
        #expect(m.initProducerId(transactionalId: "tx", timeoutMs: 900_001, now: now).error == .invalidTransactionTimeout)
        #expect(m.initProducerId(transactionalId: "tx", timeoutMs: 0, now: now).error == .invalidTransactionTimeout)
        #expect(m.initProducerId(transactionalId: "", timeoutMs: 1000, now: now).error == .invalidRequest)
        var c = TransactionCoordinatorConfiguration()
        c.maxTimeoutMs = 5000
        var small = TransactionCoordinatorStateMachine(config: c)
        #expect(small.initProducerId(transactionalId: "tx", timeoutMs: 5001, now: now).error == .invalidTransactionTimeout)
        #expect(small.initProducerId(transactionalId: "tx", timeoutMs: 5000, now: now).needsProducerId)
    }

    @Test mutating func initWithUnknownExpectedEpochIsFenced() {
        _ = initFresh()
        // KIP-360: the client sends its current id and epoch; the epoch is bumped and the old
        // one remembered, so a retry of that call gets the same answer.
        let bump = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 0, now: now)
        #expect(bump.error == .none && bump.producerEpoch == 1 && bump.persist?.lastProducerEpoch == 0)
        let retry = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 0, now: now)
        #expect(retry.error == .none && retry.producerEpoch == 1 && retry.persist == nil)
        #expect(m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 5, now: now).error == .producerFenced)
        // Another producer id than the current one (and not a rotation retry) is fenced.
        #expect(m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 8, expectedEpoch: 1, now: now).error == .producerFenced)
        let next = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 1, now: now)
        #expect(next.error == .none && next.producerEpoch == 2)
    }

    /// TransactionMetadata.prepareIncrementProducerEpoch: "There is no danger of this producer
    /// being fenced, because a new producer calling InitProducerId would have caused the last
    /// epoch to be set to -1." A zombie at epoch 0 that retries InitProducerId with its epoch
    /// after a new instance (no expected epoch) took epoch 1 must be fenced, not handed epoch 1.
    @Test mutating func zombieRetryAfterNewInstanceIsFenced() {
        _ = initFresh()
        let newInstance = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, now: now)
        #expect(newInstance.error == .none && newInstance.producerEpoch == 1)
        let zombie = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 0, now: now)
        #expect(zombie.error == .producerFenced)
        #expect(m.txns["tx"]?.producerEpoch == 1)
    }

    /// prepareInitProducerIdTransit checks only the producer id while a transaction is open:
    /// a stale epoch of the same producer id fences and aborts it (CONCURRENT_TRANSACTIONS).
    @Test mutating func initWithStaleEpochDuringOngoingAborts() {
        _ = initFresh()
        _ = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 0, now: now)  // epoch 1
        _ = begin(epoch: 1)
        let out = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 0, now: now)
        #expect(out.error == .concurrentTransactions && out.persist?.state == .prepareAbort && out.persist?.producerEpoch == 2)
        _ = m.markersWritten(out.markers!, now: now)
        // The fence forgot the last epoch: the stale epoch is now fenced.
        #expect(m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: 0, now: now).error == .producerFenced)
    }

    @Test mutating func rotationRetryGetsTheNewProducerId() {
        _ = initFresh()
        var t = m.txns["tx"]!
        t.producerEpoch = Int16.max - 1
        m = TransactionCoordinatorStateMachine(config: m.config, loaded: [t])
        let out = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: Int16.max - 1,
                                   newProducerId: 9, now: now)
        #expect(out.error == .none && out.producerId == 9 && out.producerEpoch == 0)
        let retry = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, expectedProducerId: 7, expectedEpoch: Int16.max - 1, now: now)
        #expect(retry.error == .none && retry.producerId == 9 && retry.producerEpoch == 0 && retry.persist == nil)
    }

    @Test mutating func initExhaustedEpochGetsNewProducerId() {
        _ = initFresh()
        var t = m.txns["tx"]!
        t.producerEpoch = Int16.max - 1
        m = TransactionCoordinatorStateMachine(config: m.config, loaded: [t])
        #expect(m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, now: now).needsProducerId)
        let out = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, newProducerId: 9, now: now)
        #expect(out.producerId == 9 && out.producerEpoch == 0)
        #expect(m.txns["tx"]!.lastProducerId == 7)
    }

    @Test mutating func addPartitionsMovesEmptyToOngoing() {
        _ = initFresh()
        now += 5
        let out = begin()
        #expect(out.error == .none && out.persist?.state == .ongoing && out.persist?.startMs == now)
        // Adding the same partitions again stores nothing.
        #expect(begin().persist == nil)
        let more = begin(epoch: 0, [Self.tp1])
        #expect(more.persist?.partitions == [Self.tp0, Self.tp1])
        #expect(more.persist?.startMs == now)
    }

    @Test mutating func addPartitionsChecksProducer() {
        #expect(begin().error == .invalidProducerIdMapping)  // unknown id
        _ = initFresh()
        #expect(m.addPartitions(transactionalId: "tx", producerId: 8, producerEpoch: 0, partitions: [Self.tp0], now: now).error == .invalidProducerIdMapping)
        #expect(begin(epoch: 1).error == .producerFenced)
        #expect(m.addPartitions(transactionalId: "", producerId: 7, producerEpoch: 0, partitions: [Self.tp0], now: now).error == .invalidRequest)
    }

    @Test mutating func commitGoesThroughPrepareToComplete() {
        _ = initFresh()
        _ = begin()
        let end = m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now)
        #expect(end.error == .none && end.persist?.state == .prepareCommit)
        #expect(end.markers == MarkerJob(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, partitions: [Self.tp0]))
        // While markers are written: the same EndTxn again, and new work, must wait.
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .concurrentTransactions)
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: false, now: now).error == .invalidTxnState)
        #expect(begin().error == .concurrentTransactions)
        #expect(m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, now: now).error == .concurrentTransactions)
        let done = m.markersWritten(end.markers!, now: now)
        #expect(done.persist?.state == .completeCommit && done.persist?.partitions == [])
        // A retried commit succeeds; an abort after commit is refused.
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .none)
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: false, now: now).error == .invalidTxnState)
        // The next transaction starts from CompleteCommit.
        #expect(begin().persist?.state == .ongoing)
    }

    @Test mutating func abortGoesThroughPrepareAbort() {
        _ = initFresh()
        _ = begin()
        let end = m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: false, now: now)
        #expect(end.persist?.state == .prepareAbort && end.markers?.commit == false)
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: false, now: now).error == .concurrentTransactions)
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .invalidTxnState)
        #expect(m.markersWritten(end.markers!, now: now).persist?.state == .completeAbort)
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: false, now: now).error == .none)
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .invalidTxnState)
    }

    @Test mutating func endTxnInEmptyIsInvalid() {
        _ = initFresh()
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .invalidTxnState)
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 1, commit: true, now: now).error == .producerFenced)
        #expect(m.endTransaction(transactionalId: "nope", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .invalidProducerIdMapping)
    }

    @Test mutating func initDuringOngoingFencesAndAborts() {
        _ = initFresh()
        _ = begin()
        // A new instance with the same transactional id: the open transaction is aborted under
        // epoch 1, and the new instance is told to retry.
        let out = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, now: now)
        #expect(out.error == .concurrentTransactions)
        #expect(out.persist?.state == .prepareAbort && out.persist?.producerEpoch == 1)
        #expect(out.markers == MarkerJob(transactionalId: "tx", producerId: 7, producerEpoch: 1, commit: false, partitions: [Self.tp0]))
        // The zombie (epoch 0) is fenced everywhere.
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .producerFenced)
        _ = m.markersWritten(out.markers!, now: now)
        let retry = m.initProducerId(transactionalId: "tx", timeoutMs: 60_000, now: now)
        #expect(retry.error == .none && retry.producerEpoch == 2)
        #expect(begin(epoch: 0).error == .producerFenced)
        #expect(begin(epoch: 2).error == .none)
    }

    @Test mutating func timeoutAbortsWithBumpedEpoch() {
        _ = initFresh(timeoutMs: 1000)
        _ = begin()
        #expect(m.tick(now: now + 999).isEmpty)
        let outs = m.tick(now: now + 1000)
        #expect(outs.count == 1)
        #expect(outs[0].persist?.state == .prepareAbort && outs[0].persist?.producerEpoch == 1)
        #expect(outs[0].markers?.commit == false && outs[0].markers?.partitions == [Self.tp0])
        // The timed-out producer cannot commit.
        #expect(m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now).error == .producerFenced)
        #expect(m.tick(now: now + 5000).isEmpty)  // already aborting
        _ = m.markersWritten(outs[0].markers!, now: now)
        #expect(m.txns["tx"]?.state == .completeAbort)
    }

    @Test mutating func idleIdsExpire() {
        _ = initFresh()
        #expect(m.tick(now: now + 604_800_000 - 1).isEmpty)
        let outs = m.tick(now: now + 604_800_000)
        #expect(outs == [TransactionOutput(delete: "tx")])
        #expect(m.txns["tx"] == nil)
    }

    @Test mutating func txnOffsetsAreAppliedOnlyOnCommit() {
        _ = initFresh()
        let o = CommittedOffset(topic: "in", partition: 0, offset: 42, leaderEpoch: -1, metadata: "a\tb")
        // Before AddOffsetsToTxn the group is not part of the transaction.
        #expect(m.txnOffsetCommit(transactionalId: "tx", producerId: 7, producerEpoch: 0, group: "g", offsets: [o], now: now).error == .transactionAbortable)
        #expect(m.addPartitions(transactionalId: "tx", producerId: 7, producerEpoch: 0, partitions: [], groups: ["g"], now: now).error == .none)
        #expect(m.txnOffsetCommit(transactionalId: "tx", producerId: 7, producerEpoch: 1, group: "g", offsets: [o], now: now).error == .producerFenced)
        #expect(m.txnOffsetCommit(transactionalId: "tx", producerId: 7, producerEpoch: 0, group: "g", offsets: [o], now: now).error == .none)
        #expect(m.hasPendingOffsets(group: "g"))
        let end = m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now)
        #expect(end.markers?.partitions == [])
        // Stored form round-trips (the offsets wait in the store until the commit completes).
        #expect(TransactionMetadata(end.persist!.record) == end.persist!)
        let done = m.markersWritten(end.markers!, now: now)
        #expect(done.applyOffsets == [PendingTxnOffset(group: "g", offset: o)])
        #expect(!m.hasPendingOffsets(group: "g"))
    }

    /// The verification Kafka's group coordinator runs before a TxnOffsetCommit
    /// (handleVerifyPartitionsInTransaction): the producer id, then the epoch, then a
    /// transaction completing, then whether the group is in the transaction.
    @Test mutating func txnOffsetCommitIsVerifiedLikeKafka() {
        let o = CommittedOffset(topic: "in", partition: 0, offset: 1, leaderEpoch: -1, metadata: nil)
        func commit(_ id: String = "tx", pid: Int64 = 7, epoch: Int16 = 0, offsets: [CommittedOffset]) -> TransactionOutput {
            m.txnOffsetCommit(transactionalId: id, producerId: pid, producerEpoch: epoch, group: "g", offsets: offsets, now: now)
        }
        #expect(commit("", offsets: [o]).error == .invalidRequest)
        #expect(commit(offsets: [o]).error == .invalidProducerIdMapping)
        _ = initFresh()
        #expect(commit(pid: 8, offsets: [o]).error == .invalidProducerIdMapping)
        #expect(commit(epoch: 1, offsets: [o]).error == .producerFenced)
        _ = m.addPartitions(transactionalId: "tx", producerId: 7, producerEpoch: 0, partitions: [Self.tp0], groups: ["g"], now: now)
        // No offsets: checked only, nothing stored.
        let check = commit(offsets: [])
        #expect(check.error == .none && check.persist == nil)
        #expect(!m.hasPendingOffsets(group: "g"))
        _ = m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now)
        #expect(commit(offsets: [o]).error == .concurrentTransactions)
    }

    /// AddPartitionsToTxn v4 VerifyOnly (handleVerifyPartitionsInTransaction): nothing changes.
    @Test mutating func verifyPartitionsChecksWithoutAdding() {
        #expect(m.verifyPartitions(transactionalId: "", producerId: 7, producerEpoch: 0, partitions: [Self.tp0]).error == .invalidRequest)
        #expect(m.verifyPartitions(transactionalId: "tx", producerId: 7, producerEpoch: 0, partitions: [Self.tp0]).error == .invalidProducerIdMapping)
        _ = initFresh()
        _ = begin()
        #expect(m.verifyPartitions(transactionalId: "tx", producerId: 8, producerEpoch: 0, partitions: [Self.tp0]).error == .invalidProducerIdMapping)
        #expect(m.verifyPartitions(transactionalId: "tx", producerId: 7, producerEpoch: 1, partitions: [Self.tp0]).error == .producerFenced)
        let v = m.verifyPartitions(transactionalId: "tx", producerId: 7, producerEpoch: 0, partitions: [Self.tp0, Self.tp1])
        #expect(v.error == .none && v.partitions == [Self.tp0: ErrorCode.none, Self.tp1: .transactionAbortable])
        #expect(m.txns["tx"]?.partitions == [Self.tp0])
        _ = m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: false, now: now)
        #expect(m.verifyPartitions(transactionalId: "tx", producerId: 7, producerEpoch: 0, partitions: [Self.tp0]).error == .concurrentTransactions)
    }

    @Test mutating func abortedOffsetsAreDropped() {
        _ = initFresh()
        let o = CommittedOffset(topic: "in", partition: 0, offset: 42, leaderEpoch: -1, metadata: nil)
        _ = m.addPartitions(transactionalId: "tx", producerId: 7, producerEpoch: 0, partitions: [Self.tp0], groups: ["g"], now: now)
        _ = m.txnOffsetCommit(transactionalId: "tx", producerId: 7, producerEpoch: 0, group: "g", offsets: [o], now: now)
        let end = m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: false, now: now)
        #expect(m.markersWritten(end.markers!, now: now).applyOffsets.isEmpty)
    }

    @Test mutating func restartResumesPreparedTransactions() {
        _ = initFresh()
        _ = begin()
        let end = m.endTransaction(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, now: now)
        // What the store holds is all a restarted coordinator knows.
        let reloaded = TransactionCoordinatorStateMachine(config: m.config, loaded: [TransactionMetadata(end.persist!.record)!])
        #expect(reloaded.pendingMarkerJobs() == [end.markers!])
        #expect(reloaded.txns["tx"]?.state == .prepareCommit)
    }

    @Test mutating func staleMarkerReportChangesNothing() {
        _ = initFresh()
        _ = begin()
        let job = MarkerJob(transactionalId: "tx", producerId: 7, producerEpoch: 0, commit: true, partitions: [Self.tp0])
        #expect(m.markersWritten(job, now: now).persist == nil)
        #expect(m.txns["tx"]?.state == .ongoing)
    }
}
