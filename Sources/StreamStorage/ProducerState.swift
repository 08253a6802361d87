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

    /// Kafka's ProducerStateManager rules for a non-transactional idempotent batch.
    public func check(_ h: RecordBatchHeader) -> Check {
        guard h.hasProducerId else { return .accept }
        guard let e = entries[h.producerId] else { return .accept }  // unknown producer: any sequence
        if h.producerEpoch < e.producerEpoch { return .reject(.invalidProducerEpoch) }
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

    /// Records an appended batch (already assigned its offsets).
    public mutating func record(_ h: RecordBatchHeader) {
        guard h.hasProducerId else { return }
        var e = entries[h.producerId] ?? ProducerStateRecord(streamId: streamId, producerId: h.producerId, producerEpoch: h.producerEpoch, batches: [])
        if h.producerEpoch != e.producerEpoch {
            e.producerEpoch = h.producerEpoch
            e.batches.removeAll()
        }
        e.batches.append(.init(firstSequence: h.baseSequence, lastSequence: h.lastSequence, baseOffset: h.baseOffset, lastOffset: h.lastOffset,
                              maxTimestamp: h.maxTimestamp))
        if e.batches.count > Self.retainedBatches { e.batches.removeFirst(e.batches.count - Self.retainedBatches) }
        entries[h.producerId] = e
    }

}
