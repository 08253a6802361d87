import KafkaProtocol
import Metadata

/// Idempotent-producer bookkeeping for one stream: the last five batches per producer, as
/// Kafka keeps them, so a retried batch is answered with its original offsets.
public struct ProducerStateTable: Sendable {
    public static let retainedBatches = 5

    public enum Check: Equatable, Sendable {
        case accept
        /// Already appended: answer success with these offsets.
        case duplicate(baseOffset: Int64)
        case reject(ErrorCode)
    }

    public private(set) var entries: [Int64: ProducerStateRecord] = [:]
    let streamId: Int64

    public init(streamId: Int64, records: [ProducerStateRecord] = []) {
        self.streamId = streamId
        for r in records { entries[r.producerId] = r }
    }

    /// A transaction that a marker ended on this stream (Kafka's CompletedTxn).
    public struct CompletedTxn: Equatable, Sendable {
        public var producerId: Int64
        public var firstOffset: Int64
        /// The marker's offset.
        public var lastOffset: Int64
        public var aborted: Bool
    }

    /// Kafka's ProducerStateManager rules: idempotence sequences, producer epochs, and
    /// transactions (a plain batch from a producer with an open transaction is refused; a
    /// marker may not carry an older epoch and has no sequence).
    public func check(_ h: RecordBatchHeader) -> Check {
        guard h.hasProducerId else { return .accept }
        guard let e = entries[h.producerId] else { return .accept }  // unknown producer: any sequence
        if h.producerEpoch < e.producerEpoch { return .reject(.invalidProducerEpoch) }
        if h.isControl { return .accept }
        if !h.isTransactional && e.txnFirstOffset >= 0 { return .reject(.invalidTxnState) }
        if h.producerEpoch > e.producerEpoch {
            return h.baseSequence == 0 ? .accept : .reject(.outOfOrderSequenceNumber)
        }
        if let dup = e.batches.first(where: { $0.firstSequence == h.baseSequence && $0.lastSequence == h.lastSequence }) {
            return .duplicate(baseOffset: dup.baseOffset)
        }
        guard let last = e.batches.last else { return .accept }
        let expected = last.lastSequence == Int32.max ? 0 : last.lastSequence + 1
        return h.baseSequence == expected ? .accept : .reject(.outOfOrderSequenceNumber)
    }

    /// Records an appended batch (already assigned its offsets). `marker` is the control
    /// record of a control batch (nil for data); returns the transaction a marker ended.
    @discardableResult
    public mutating func record(_ h: RecordBatchHeader, marker: ControlMarker? = nil) -> CompletedTxn? {
        guard h.hasProducerId else { return nil }
        var e = entries[h.producerId] ?? ProducerStateRecord(streamId: streamId, producerId: h.producerId, producerEpoch: h.producerEpoch, batches: [])
        if h.producerEpoch != e.producerEpoch {
            e.producerEpoch = h.producerEpoch
            e.batches.removeAll()
        }
        if h.isControl {
            var done: CompletedTxn?
            if e.txnFirstOffset >= 0 {
                done = CompletedTxn(producerId: h.producerId, firstOffset: e.txnFirstOffset, lastOffset: h.baseOffset,
                                    aborted: marker?.isCommit != true)
            }
            e.txnFirstOffset = -1
            if let marker { e.coordinatorEpoch = marker.coordinatorEpoch }
            entries[h.producerId] = e
            return done
        }
        if h.isTransactional && e.txnFirstOffset < 0 { e.txnFirstOffset = h.baseOffset }
        e.batches.append(.init(firstSequence: h.baseSequence, lastSequence: h.lastSequence, baseOffset: h.baseOffset, lastOffset: h.lastOffset,
                              maxTimestamp: h.maxTimestamp))
        if e.batches.count > Self.retainedBatches { e.batches.removeFirst(e.batches.count - Self.retainedBatches) }
        entries[h.producerId] = e
        return nil
    }

    /// The first offset of the oldest open transaction, if any.
    public var firstOpenTxnOffset: Int64? {
        entries.values.lazy.map(\.txnFirstOffset).filter { $0 >= 0 }.min()
    }

}
