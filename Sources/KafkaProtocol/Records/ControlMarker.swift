import NIOCore

/// A transaction marker: the one record of a control batch that ends a producer's
/// transaction on a partition (Kafka's EndTransactionMarker). Key: version 0 (int16) and
/// type (int16, 0 = ABORT, 1 = COMMIT); value: version 0 (int16) and the coordinator epoch
/// (int32).
public struct ControlMarker: Sendable, Equatable {
    public static let abortType: Int16 = 0
    public static let commitType: Int16 = 1

    public var isCommit: Bool
    public var coordinatorEpoch: Int32

    public init(isCommit: Bool, coordinatorEpoch: Int32) {
        self.isCommit = isCommit
        self.coordinatorEpoch = coordinatorEpoch
    }

    /// Attribute bits of a marker batch: transactional and control.
    public static let attributes: Int16 = 0x10 | 0x20

    /// A control batch holding this marker for `producerId` at `producerEpoch`
    /// (base offset 0, to be stamped when appended).
    public func batch(producerId: Int64, producerEpoch: Int16, timestamp: Int64) -> ByteBuffer {
        var key = ByteBuffer()
        key.writeInteger(Int16(0))
        key.writeInteger(isCommit ? Self.commitType : Self.abortType)
        var value = ByteBuffer()
        value.writeInteger(Int16(0))
        value.writeInteger(coordinatorEpoch)
        var e = RecordBatchEncoder(baseTimestamp: timestamp)
        e.producerId = producerId
        e.producerEpoch = producerEpoch
        e.baseSequence = -1
        e.attributes = Self.attributes
        e.append(key: key, value: value)
        return e.finish()
    }

    /// The marker in a control batch; nil when the batch holds no readable marker (Kafka
    /// ignores control records of unknown types).
    public init?(controlBatch batch: ByteBuffer) {
        guard let records = try? Record.decodeAll(batch: batch, limit: 1 << 20), let r = records.first,
              var key = r.key, let version = key.readInteger(as: Int16.self), version >= 0,
              let type = key.readInteger(as: Int16.self), type == Self.abortType || type == Self.commitType
        else { return nil }
        var epoch: Int32 = -1
        if var value = r.value, value.readInteger(as: Int16.self) != nil, let e = value.readInteger(as: Int32.self) { epoch = e }
        self.init(isCommit: type == Self.commitType, coordinatorEpoch: epoch)
    }
}
