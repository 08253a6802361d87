import KafkaProtocol
import Logging
import Metadata
import NIOConcurrencyHelpers

/// What the transaction coordinator needs from the broker around it: producer ids, marker
/// writes into partitions, and the group offset store.
protocol TransactionIO: Sendable {
    func allocateProducerId() async throws -> Int64
    /// Writes the job's marker into one partition and waits until it is durable.
    func writeMarker(_ job: MarkerJob, partition: TxnPartition, coordinatorEpoch: Int32) async -> MarkerWrite
    func commitGroupOffsets(group: String, _ offsets: [CommittedOffset]) async throws
}

/// How writing one transaction marker into one partition went.
enum MarkerWrite: Equatable, Sendable {
    case written
    /// The partition no longer exists: nothing to mark.
    case gone
    /// The partition refuses the marker and always will (a newer producer epoch there: Kafka's
    /// INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED, on which its marker sender
    /// stops): the partition is given up, logged.
    case refused(String)
    /// This broker no longer owns the stream (fenced) or is stopping: stop writing this
    /// job's markers here; whoever loads the transaction next resumes them.
    case stop(String)
    /// Try again later (a timeout).
    case retry
}

/// Runs `TransactionCoordinatorStateMachine`: feeds it requests and the clock, stores what it
/// says before answering (in the metadata store's `transactions` table), and writes the
/// transaction markers after. One mutex orders every change and its store, so the stored
/// state never goes back in time; markers are written outside it.
final class TransactionCoordinator: Sendable {
    private let machine: NIOLockedValueBox<TransactionCoordinatorStateMachine>
    private let mutex = AsyncMutex()
    /// Marker jobs being written.
    private let writing = NIOLockedValueBox(Set<MarkerJob>())
    private let store: any MetadataStore
    private let logger: Logger
    /// Written into every marker's value; a restarted broker has a higher broker epoch.
    let coordinatorEpoch: Int32

    init(config: TransactionCoordinatorConfiguration, store: any MetadataStore, coordinatorEpoch: Int32, logger: Logger) {
        self.machine = NIOLockedValueBox(TransactionCoordinatorStateMachine(config: config))
        self.store = store
        self.coordinatorEpoch = coordinatorEpoch
        self.logger = logger
    }

    var config: TransactionCoordinatorConfiguration { machine.withLockedValue { $0.config } }

    /// Loads the stored transactions of the ids this broker coordinates (`owns`) and finishes
    /// those that were completing. Run at start and again whenever the live brokers change,
    /// since that moves transactional ids between coordinators.
    func load(io: some TransactionIO, owns: @Sendable (String) -> Bool = { _ in true }) async throws {
        let jobs: [MarkerJob] = try await mutex.withLock {
            let records = try await store.transactions()
            let loaded = records.compactMap(TransactionMetadata.init).filter { owns($0.transactionalId) }
            return machine.withLockedValue { m in
                m = TransactionCoordinatorStateMachine(config: m.config, loaded: loaded)
                return m.pendingMarkerJobs()
            }
        }
        for job in jobs {
            logger.info("resuming transaction markers", metadata: ["transactional.id": "\(job.transactionalId)", "commit": "\(job.commit)"])
            startMarkers(job, io: io)
        }
    }

    func snapshot() -> [TransactionMetadata] {
        machine.withLockedValue { Array($0.txns.values) }.sorted { $0.transactionalId < $1.transactionalId }
    }

    func transaction(producerId: Int64) -> TransactionMetadata? {
        machine.withLockedValue { $0.transaction(producerId: producerId) }
    }

    /// AddPartitionsToTxn VerifyOnly: see the state machine's verifyPartitions.
    func verifyPartitions(transactionalId id: String, producerId: Int64, producerEpoch: Int16,
                          partitions: [TxnPartition]) -> (error: ErrorCode, partitions: [TxnPartition: ErrorCode]) {
        machine.withLockedValue { $0.verifyPartitions(transactionalId: id, producerId: producerId, producerEpoch: producerEpoch, partitions: partitions) }
    }

    /// Partitions of a group with offsets held by an open transaction.
    func pendingOffsetPartitions(group: String) -> Set<TxnPartition> {
        machine.withLockedValue { m in
            Set(m.txns.values.flatMap { t in
                t.pendingOffsets.filter { $0.group == group }.map { TxnPartition(topic: $0.offset.topic, partition: $0.offset.partition) }
            })
        }
    }

    /// Whether `producerId` at `epoch` may write a transactional batch into `partition`:
    /// its transaction is open and holds the partition (AddPartitionsToTxn came first).
    func verifyTransactionalWrite(producerId: Int64, epoch: Int16, partition: TxnPartition) -> ErrorCode {
        guard let m = transaction(producerId: producerId) else { return .invalidTxnState }
        if epoch != m.producerEpoch { return .invalidProducerEpoch }
        return m.state == .ongoing && m.partitions.contains(partition) ? .none : .invalidTxnState
    }

    // MARK: events

    /// Runs one event: compute, store, then start markers. Returns the output to answer with
    /// (its error is COORDINATOR_NOT_AVAILABLE when the store failed).
    func run(_ id: String, io: some TransactionIO,
             _ event: @Sendable @escaping (inout TransactionCoordinatorStateMachine, Int64) -> TransactionOutput) async -> TransactionOutput {
        let out: TransactionOutput = await mutex.locked {
            let now = Broker.wallClockMs()
            let (previous, out) = machine.withLockedValue { m in (m.txns[id], event(&m, now)) }
            do {
                try await apply(out)
            } catch {
                logger.warning("transaction state not stored", metadata: ["transactional.id": "\(id)", "error": "\(error)"])
                machine.withLockedValue { $0.restore(id, previous) }
                return TransactionOutput.fail(.coordinatorNotAvailable)
            }
            return out
        }
        if let job = out.markers { startMarkers(job, io: io) }
        return out
    }

    private func apply(_ out: TransactionOutput) async throws {
        if let m = out.persist { try await store.putTransaction(m.record) }
        if let id = out.delete { try await store.deleteTransaction(transactionalId: id) }
    }

    func initProducerId(_ r: InitProducerIdRequest, transactionalId id: String, io: some TransactionIO) async -> TransactionOutput {
        var newId: Int64?
        while true {
            let fresh = newId
            let out = await run(id, io: io) { m, now in
                m.initProducerId(transactionalId: id, timeoutMs: r.transactionTimeoutMs, expectedProducerId: r.producerId,
                                 expectedEpoch: r.producerEpoch, newProducerId: fresh, now: now)
            }
            guard out.needsProducerId, newId == nil else { return out }
            do {
                newId = try await io.allocateProducerId()
            } catch {
                logger.warning("producer id allocation failed", metadata: ["error": "\(error)"])
                return .fail(.coordinatorNotAvailable)
            }
        }
    }

    /// The periodic check: aborts timed-out transactions, forgets expired ids.
    func abortTimedOut(io: some TransactionIO) async {
        let outs: [TransactionOutput] = await mutex.locked {
            let outs = machine.withLockedValue { $0.tick(now: Broker.wallClockMs()) }
            var done: [TransactionOutput] = []
            for o in outs {
                do {
                    try await apply(o)
                    done.append(o)
                } catch {
                    logger.warning("transaction timeout not stored", metadata: ["error": "\(error)"])
                }
            }
            return done
        }
        for o in outs {
            if let job = o.markers {
                logger.info("aborting timed-out transaction", metadata: ["transactional.id": "\(job.transactionalId)"])
                startMarkers(job, io: io)
            }
        }
    }

    // MARK: markers

    /// Starts writing a job's markers unless they are being written already (a reload after
    /// the live brokers changed finds the same job again).
    private func startMarkers(_ job: MarkerJob, io: some TransactionIO) {
        guard writing.withLockedValue({ $0.insert(job).inserted }) else { return }
        Task {
            await self.writeMarkers(job, io: io)
            _ = writing.withLockedValue { $0.remove(job) }
        }
    }

    /// Writes the markers (retrying each partition until it has its own, is gone or refuses it
    /// for good), then completes the transaction: committed offsets are written to their
    /// groups, and the new state stored. Stops early when the broker no longer owns a stream
    /// or stops, and when the transaction moved on (nothing left to complete).
    func writeMarkers(_ job: MarkerJob, io: some TransactionIO) async {
        var delay = 100
        var left = job.partitions
        while !left.isEmpty {
            var failed: [TxnPartition] = []
            var stop: String?
            await withTaskGroup(of: (TxnPartition, MarkerWrite).self) { g in
                for p in left {
                    g.addTask { (p, await io.writeMarker(job, partition: p, coordinatorEpoch: self.coordinatorEpoch)) }
                }
                for await (p, outcome) in g {
                    switch outcome {
                    case .written, .gone:
                        break
                    case .refused(let why):
                        logger.error("transaction marker refused by the partition; giving it up",
                                     metadata: ["transactional.id": "\(job.transactionalId)", "topic": "\(p.topic)",
                                                "partition": "\(p.partition)", "error": "\(why)"])
                    case .stop(let why):
                        stop = why
                        failed.append(p)
                    case .retry:
                        failed.append(p)
                    }
                }
            }
            if let stop {
                logger.warning("transaction markers not written here; left for the next load of the transaction",
                               metadata: ["transactional.id": "\(job.transactionalId)", "partitions": "\(failed.count)", "reason": "\(stop)"])
                return
            }
            left = failed
            if !left.isEmpty {
                let current = machine.withLockedValue { $0.txns[job.transactionalId] }
                guard let m = current, m.producerId == job.producerId, m.producerEpoch == job.producerEpoch,
                      m.state == (job.commit ? .prepareCommit : .prepareAbort) else { return }
                logger.warning("transaction markers not written; retrying", metadata: ["transactional.id": "\(job.transactionalId)", "partitions": "\(left.count)"])
                try? await Task.sleep(for: .milliseconds(delay))
                delay = min(delay * 2, 5000)
            }
        }
        while true {
            let ok: Bool = await mutex.locked {
                let (previous, out) = machine.withLockedValue { m in (m.txns[job.transactionalId], m.markersWritten(job, now: Broker.wallClockMs())) }
                do {
                    var byGroup: [String: [CommittedOffset]] = [:]
                    var order: [String] = []
                    for p in out.applyOffsets {
                        if byGroup[p.group] == nil { order.append(p.group) }
                        byGroup[p.group, default: []].append(p.offset)
                    }
                    for g in order { try await io.commitGroupOffsets(group: g, byGroup[g]!) }
                    try await apply(out)
                    return true
                } catch {
                    logger.warning("transaction completion not stored; retrying", metadata: ["transactional.id": "\(job.transactionalId)", "error": "\(error)"])
                    machine.withLockedValue { $0.restore(job.transactionalId, previous) }
                    return false
                }
            }
            if ok { return }
            try? await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, 5000)
        }
    }
}

extension Broker {
    /// Aborts transactions open longer than their `transaction.timeout.ms` and forgets idle
    /// ids, as Kafka's coordinator does every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    public func abortTimedOutTransactions() async {
        await transactions.abortTimedOut(io: self)
    }
}
