import KafkaProtocol
import Metadata

/// Kafka's transaction states (TransactionState.scala), by their wire names.
public enum TransactionState: String, Sendable, CaseIterable {
    case empty = "Empty"
    case ongoing = "Ongoing"
    case prepareCommit = "PrepareCommit"
    case prepareAbort = "PrepareAbort"
    case completeCommit = "CompleteCommit"
    case completeAbort = "CompleteAbort"
    case prepareEpochFence = "PrepareEpochFence"
    case dead = "Dead"
}

public struct TxnPartition: Hashable, Comparable, Sendable {
    public var topic: String
    public var partition: Int32
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
}

/// An offset committed inside a transaction (TxnOffsetCommit): applied to the group's
/// offsets when the transaction commits, dropped when it aborts.
public struct PendingTxnOffset: Equatable, Sendable {
    public var group: String
    public var offset: CommittedOffset
    public init(group: String, offset: CommittedOffset) {
        self.group = group
        self.offset = offset
    }
}

/// Everything the coordinator knows of one transactional id (Kafka's TransactionMetadata).
public struct TransactionMetadata: Equatable, Sendable {
    public var transactionalId: String
    public var producerId: Int64
    public var producerEpoch: Int16
    public var lastProducerId: Int64 = -1
    public var lastProducerEpoch: Int16 = -1
    public var timeoutMs: Int32
    public var state: TransactionState = .empty
    public var partitions: Set<TxnPartition> = []
    /// Groups added with AddOffsetsToTxn.
    public var groups: Set<String> = []
    public var pendingOffsets: [PendingTxnOffset] = []
    /// Wall-clock ms when the current (or last) transaction started; -1 before the first.
    public var startMs: Int64 = -1
    public var updateMs: Int64

    public var record: TransactionRecord {
        let parts = partitions.sorted().map { "p\t\($0.topic)\t\($0.partition)" } + groups.sorted().map { "g\t\($0)" }
        let offsets = pendingOffsets.map { p in
            "\(p.group)\t\(p.offset.topic)\t\(p.offset.partition)\t\(p.offset.offset)\t\(p.offset.leaderEpoch)\t"
                + (p.offset.metadata.map { "+" + Self.escape($0) } ?? "-")
        }
        return TransactionRecord(transactionalId: transactionalId, producerId: producerId, producerEpoch: producerEpoch,
                                 lastProducerId: lastProducerId, lastProducerEpoch: lastProducerEpoch, timeoutMs: timeoutMs,
                                 state: state.rawValue, partitions: parts.joined(separator: "\n"),
                                 pendingOffsets: offsets.joined(separator: "\n"), startMs: startMs, updateMs: updateMs)
    }

    public init(transactionalId: String, producerId: Int64, producerEpoch: Int16, timeoutMs: Int32, now: Int64) {
        self.transactionalId = transactionalId
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.timeoutMs = timeoutMs
        self.updateMs = now
    }

    /// Rebuilds the metadata from its stored form; nil for an unknown state name.
    public init?(_ r: TransactionRecord) {
        guard let state = TransactionState(rawValue: r.state) else { return nil }
        self.init(transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch, timeoutMs: r.timeoutMs, now: r.updateMs)
        lastProducerId = r.lastProducerId
        lastProducerEpoch = r.lastProducerEpoch
        self.state = state
        startMs = r.startMs
        for line in r.partitions.split(separator: "\n") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            if f.count == 3, f[0] == "p", let p = Int32(f[2]) { partitions.insert(TxnPartition(topic: f[1], partition: p)) }
            if f.count == 2, f[0] == "g" { groups.insert(f[1]) }
        }
        for line in r.pendingOffsets.split(separator: "\n") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 6, let p = Int32(f[2]), let o = Int64(f[3]), let e = Int32(f[4]) else { continue }
            let meta: String? = f[5].hasPrefix("+") ? Self.unescape(String(f[5].dropFirst())) : nil
            pendingOffsets.append(PendingTxnOffset(group: f[0], offset: CommittedOffset(topic: f[1], partition: p, offset: o, leaderEpoch: e, metadata: meta)))
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        var out = ""
        var escaped = false
        for c in s {
            if escaped {
                out.append(c == "t" ? "\t" : c == "n" ? "\n" : c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}

/// Markers to write: one control batch per partition of a finished transaction.
public struct MarkerJob: Hashable, Sendable {
    public var transactionalId: String
    public var producerId: Int64
    public var producerEpoch: Int16
    public var commit: Bool
    public var partitions: [TxnPartition]
    public init(transactionalId: String, producerId: Int64, producerEpoch: Int16, commit: Bool, partitions: [TxnPartition]) {
        self.transactionalId = transactionalId
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.commit = commit
        self.partitions = partitions
    }
}

/// What the coordinator must do after an event: store `persist` (before answering), answer
/// with `error` (and the producer id/epoch for InitProducerId), then write `markers`.
public struct TransactionOutput: Equatable, Sendable {
    public var error: ErrorCode = .none
    public var producerId: Int64 = -1
    public var producerEpoch: Int16 = -1
    /// InitProducerId needs a fresh producer id: allocate one and repeat the event with it.
    public var needsProducerId = false
    public var persist: TransactionMetadata?
    public var markers: MarkerJob?
    /// Offsets that became visible (a committed transaction): write them to the groups.
    public var applyOffsets: [PendingTxnOffset] = []
    /// A transactional id that expired: forget it.
    public var delete: String?

    public init(error: ErrorCode = .none, producerId: Int64 = -1, producerEpoch: Int16 = -1, needsProducerId: Bool = false,
                persist: TransactionMetadata? = nil, markers: MarkerJob? = nil, applyOffsets: [PendingTxnOffset] = [], delete: String? = nil) {
        self.error = error
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.needsProducerId = needsProducerId
        self.persist = persist
        self.markers = markers
        self.applyOffsets = applyOffsets
        self.delete = delete
    }

    public static func fail(_ e: ErrorCode) -> Self { TransactionOutput(error: e) }
}

public struct TransactionCoordinatorConfiguration: Sendable {
    /// `transaction.max.timeout.ms`: longest transaction.timeout.ms a producer may ask for.
    public var maxTimeoutMs: Int32 = 900_000
    /// `transactional.id.expiration.ms`: an id idle this long without an open transaction is forgotten.
    public var idExpirationMs: Int64 = 604_800_000
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timeouts are checked.
    public var abortCheckIntervalMs: Int = 10_000

    public init() {}
}

/// The transaction coordinator as a pure state machine (Kafka's TransactionCoordinator and
/// TransactionMetadata transitions): requests and the clock in, `TransactionOutput` out.
/// No I/O; times are wall-clock milliseconds passed in, since they are stored and must mean
/// the same after a restart.
public struct TransactionCoordinatorStateMachine: Sendable {
    public let config: TransactionCoordinatorConfiguration
    public private(set) var txns: [String: TransactionMetadata] = [:]

    public init(config: TransactionCoordinatorConfiguration, loaded: [TransactionMetadata] = []) {
        self.config = config
        for t in loaded { txns[t.transactionalId] = t }
    }

    /// Puts back a transaction as it was before an event whose state could not be stored.
    public mutating func restore(_ id: String, _ previous: TransactionMetadata?) { txns[id] = previous }

    public func transaction(producerId: Int64) -> TransactionMetadata? {
        txns.values.first { $0.producerId == producerId }
    }

    // MARK: InitProducerId

    /// TransactionCoordinator.handleInitProducerId for a transactional id. `expected` is the
    /// producer id and epoch the client sends (v3+, KIP-360; -1 when it has none).
    /// prepareInitProducerIdTransit and TransactionMetadata.prepareIncrementProducerEpoch: an
    /// expected producer id must be the current one (or the previous one with an exhausted
    /// epoch: a retry of the rotation); the epoch is then checked only when no transaction is
    /// open. A bump without an expected epoch forgets the last epoch, so a zombie's retry with
    /// its old epoch is fenced rather than taken for a retry.
    public mutating func initProducerId(transactionalId id: String, timeoutMs: Int32, expectedProducerId: Int64 = -1,
                                 expectedEpoch: Int16 = -1, newProducerId: Int64? = nil, now: Int64) -> TransactionOutput {
        if id.isEmpty { return .fail(.invalidRequest) }
        if timeoutMs <= 0 || timeoutMs > config.maxTimeoutMs { return .fail(.invalidTransactionTimeout) }
        guard var m = txns[id], m.state != .dead else {
            guard let pid = newProducerId else { return TransactionOutput(needsProducerId: true) }
            let m = TransactionMetadata(transactionalId: id, producerId: pid, producerEpoch: 0, timeoutMs: timeoutMs, now: now)
            txns[id] = m
            return TransactionOutput(producerId: pid, producerEpoch: 0, persist: m)
        }
        let expects = expectedProducerId >= 0 || expectedEpoch >= 0
        if expects && expectedProducerId != m.producerId
            && !(expectedProducerId == m.lastProducerId && Self.isEpochExhausted(expectedEpoch)) {
            return .fail(.producerFenced)
        }
        switch m.state {
        case .prepareCommit, .prepareAbort, .prepareEpochFence:
            return .fail(.concurrentTransactions)
        case .ongoing:
            // Abort the open transaction under a fenced (bumped) epoch; the client retries and
            // then gets an epoch bumped once more (Kafka does the same).
            var out = fenceAndAbort(&m, now: now)
            out.error = .concurrentTransactions
            return out
        case .empty, .completeCommit, .completeAbort, .dead:
            if Self.isEpochExhausted(m.producerEpoch) && (!expects || expectedEpoch == m.producerEpoch) {
                // prepareProducerIdRotation: the last epoch is kept only for a client that sent it.
                guard let pid = newProducerId else { return TransactionOutput(needsProducerId: true) }
                m.lastProducerId = m.producerId
                m.lastProducerEpoch = expects ? m.producerEpoch : -1
                m.producerId = pid
                m.producerEpoch = 0
            } else if !expects {
                m.lastProducerId = m.producerId
                m.lastProducerEpoch = -1
                m.producerEpoch += 1
            } else if expectedEpoch == m.producerEpoch && !Self.isEpochExhausted(m.producerEpoch) {
                m.lastProducerId = m.producerId
                m.lastProducerEpoch = m.producerEpoch
                m.producerEpoch += 1
            } else if expectedEpoch == m.lastProducerEpoch {
                // A retry of the InitProducerId that bumped to the current epoch: same answer.
                return TransactionOutput(producerId: m.producerId, producerEpoch: m.producerEpoch)
            } else {
                return .fail(.producerFenced)
            }
            m.timeoutMs = timeoutMs
            m.state = .empty
            m.partitions = []
            m.groups = []
            m.pendingOffsets = []
            m.startMs = -1
            m.updateMs = now
            txns[id] = m
            return TransactionOutput(producerId: m.producerId, producerEpoch: m.producerEpoch, persist: m)
        }
    }

    /// TransactionMetadata.isEpochExhausted: the last epoch is kept for fencing.
    public static func isEpochExhausted(_ epoch: Int16) -> Bool { epoch >= Int16.max - 1 }

    /// Ongoing → PrepareEpochFence → PrepareAbort at epoch + 1: the producer that opened the
    /// transaction is fenced and the abort markers carry the new epoch.
    private mutating func fenceAndAbort(_ m: inout TransactionMetadata, now: Int64) -> TransactionOutput {
        m.state = .prepareEpochFence
        if m.producerEpoch < Int16.max { m.producerEpoch += 1 }
        m.lastProducerId = -1
        m.lastProducerEpoch = -1
        m.state = .prepareAbort
        m.updateMs = now
        txns[m.transactionalId] = m
        return TransactionOutput(persist: m, markers: MarkerJob(transactionalId: m.transactionalId, producerId: m.producerId,
                                                                producerEpoch: m.producerEpoch, commit: false, partitions: m.partitions.sorted()))
    }

    // MARK: AddPartitionsToTxn / AddOffsetsToTxn

    /// TransactionCoordinator.handleAddPartitionsToTransaction (the v0-3 client path).
    public mutating func addPartitions(transactionalId id: String, producerId: Int64, producerEpoch: Int16,
                                partitions: [TxnPartition], groups: [String] = [], now: Int64) -> TransactionOutput {
        if id.isEmpty { return .fail(.invalidRequest) }
        guard var m = txns[id], m.state != .dead, m.producerId == producerId else { return .fail(.invalidProducerIdMapping) }
        if m.producerEpoch != producerEpoch { return .fail(.producerFenced) }
        switch m.state {
        case .prepareCommit, .prepareAbort, .prepareEpochFence, .dead:
            return .fail(.concurrentTransactions)
        case .ongoing where Set(partitions).isSubset(of: m.partitions) && Set(groups).isSubset(of: m.groups):
            return TransactionOutput()
        case .ongoing:
            break
        case .empty, .completeCommit, .completeAbort:
            m.startMs = now
            m.partitions = []
            m.groups = []
            m.pendingOffsets = []
        }
        m.state = .ongoing
        m.partitions.formUnion(partitions)
        m.groups.formUnion(groups)
        m.updateMs = now
        txns[id] = m
        return TransactionOutput(persist: m)
    }

    /// TransactionCoordinator.handleVerifyPartitionsInTransaction (AddPartitionsToTxn v4+ with
    /// VerifyOnly): a transaction-wide error, or one code per partition (NONE when the
    /// partition is in the transaction, TRANSACTION_ABORTABLE when not). Changes nothing.
    public func verifyPartitions(transactionalId id: String, producerId: Int64, producerEpoch: Int16,
                                 partitions: [TxnPartition]) -> (error: ErrorCode, partitions: [TxnPartition: ErrorCode]) {
        if id.isEmpty { return (.invalidRequest, [:]) }
        guard let m = txns[id], m.producerId == producerId else { return (.invalidProducerIdMapping, [:]) }
        if m.producerEpoch != producerEpoch { return (.producerFenced, [:]) }
        if m.state == .prepareCommit || m.state == .prepareAbort { return (.concurrentTransactions, [:]) }
        return (.none, Dictionary(partitions.map { ($0, m.partitions.contains($0) ? ErrorCode.none : .transactionAbortable) },
                                  uniquingKeysWith: { a, _ in a }))
    }

    // MARK: TxnOffsetCommit

    /// Offsets committed inside the open transaction of `producerId`; they become the
    /// group's committed offsets when it commits. The checks are those of the transaction
    /// verification Kafka's group coordinator runs first (handleVerifyPartitionsInTransaction
    /// for the group's offsets partition): unknown id or producer id → INVALID_PRODUCER_ID_MAPPING,
    /// another epoch → PRODUCER_FENCED, a transaction completing → CONCURRENT_TRANSACTIONS, the
    /// group not added with AddOffsetsToTxn → TRANSACTION_ABORTABLE. With no offsets only the
    /// checks run.
    public mutating func txnOffsetCommit(transactionalId id: String, producerId: Int64, producerEpoch: Int16, group: String,
                                  offsets: [CommittedOffset], now: Int64) -> TransactionOutput {
        if id.isEmpty { return .fail(.invalidRequest) }
        guard var m = txns[id], m.producerId == producerId else { return .fail(.invalidProducerIdMapping) }
        if producerEpoch != m.producerEpoch { return .fail(.producerFenced) }
        if m.state == .prepareCommit || m.state == .prepareAbort { return .fail(.concurrentTransactions) }
        guard m.state == .ongoing, m.groups.contains(group) else { return .fail(.transactionAbortable) }
        if offsets.isEmpty { return TransactionOutput() }
        for o in offsets {
            m.pendingOffsets.removeAll { $0.group == group && $0.offset.topic == o.topic && $0.offset.partition == o.partition }
            m.pendingOffsets.append(PendingTxnOffset(group: group, offset: o))
        }
        m.updateMs = now
        txns[id] = m
        return TransactionOutput(persist: m)
    }

    /// Groups with offsets waiting on an open transaction (OffsetFetch's require_stable).
    public func hasPendingOffsets(group: String) -> Bool {
        txns.values.contains { $0.pendingOffsets.contains { $0.group == group } }
    }

    // MARK: EndTxn

    /// TransactionCoordinator.handleEndTransaction for a client's EndTxn.
    public mutating func endTransaction(transactionalId id: String, producerId: Int64, producerEpoch: Int16, commit: Bool,
                                 now: Int64) -> TransactionOutput {
        if id.isEmpty { return .fail(.invalidRequest) }
        guard var m = txns[id], m.state != .dead, m.producerId == producerId else { return .fail(.invalidProducerIdMapping) }
        if m.producerEpoch != producerEpoch { return .fail(.producerFenced) }
        switch (m.state, commit) {
        case (.ongoing, _):
            m.state = commit ? .prepareCommit : .prepareAbort
            m.updateMs = now
            txns[id] = m
            return TransactionOutput(persist: m, markers: MarkerJob(transactionalId: id, producerId: m.producerId, producerEpoch: m.producerEpoch,
                                                                    commit: commit, partitions: m.partitions.sorted()))
        case (.completeCommit, true), (.completeAbort, false):
            return TransactionOutput()  // a retry of an EndTxn that finished
        case (.prepareCommit, true), (.prepareAbort, false):
            return .fail(.concurrentTransactions)
        default:
            return .fail(.invalidTxnState)
        }
    }

    /// Every marker of a transaction is written: PrepareCommit → CompleteCommit (its offsets
    /// become visible), PrepareAbort → CompleteAbort. Stale reports change nothing.
    public mutating func markersWritten(_ job: MarkerJob, now: Int64) -> TransactionOutput {
        guard var m = txns[job.transactionalId], m.producerId == job.producerId, m.producerEpoch == job.producerEpoch,
              m.state == (job.commit ? .prepareCommit : .prepareAbort) else { return TransactionOutput() }
        let offsets = job.commit ? m.pendingOffsets : []
        m.state = job.commit ? .completeCommit : .completeAbort
        m.partitions = []
        m.groups = []
        m.pendingOffsets = []
        m.updateMs = now
        txns[job.transactionalId] = m
        return TransactionOutput(persist: m, applyOffsets: offsets)
    }

    // MARK: time

    /// Transactions open longer than their timeout are aborted under a fenced epoch
    /// (abortTimedOutTransactions); ids idle past `transactional.id.expiration.ms` with no
    /// open transaction are forgotten.
    public mutating func tick(now: Int64) -> [TransactionOutput] {
        var out: [TransactionOutput] = []
        for id in txns.keys.sorted() {
            guard var m = txns[id] else { continue }
            switch m.state {
            case .ongoing where m.startMs + Int64(m.timeoutMs) <= now:
                out.append(fenceAndAbort(&m, now: now))
            case .empty, .completeAbort, .completeCommit, .dead:
                // (A `where` here would guard only the last pattern.)
                if m.updateMs + config.idExpirationMs <= now {
                    txns[id] = nil
                    out.append(TransactionOutput(delete: id))
                }
            default:
                break
            }
        }
        return out
    }

    /// Marker jobs of transactions that were completing when the coordinator stopped.
    public func pendingMarkerJobs() -> [MarkerJob] {
        txns.values.sorted { $0.transactionalId < $1.transactionalId }.compactMap { m in
            guard m.state == .prepareCommit || m.state == .prepareAbort else { return nil }
            return MarkerJob(transactionalId: m.transactionalId, producerId: m.producerId, producerEpoch: m.producerEpoch,
                             commit: m.state == .prepareCommit, partitions: m.partitions.sorted())
        }
    }
}
