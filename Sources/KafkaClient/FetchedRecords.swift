import KafkaProtocol
import NIOCore

/// A record as a consumer sees it: absolute offset and timestamp.
public struct ConsumerRecord: Sendable {
    public var partition: Int32
    public var offset: Int64
    public var timestamp: Int64
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [(String, ByteBuffer?)]
}

/// Turns the `records` bytes of one partition of a Fetch response into records.
public enum FetchedRecords {
    /// The records at or after `fetchOffset`, and the offset to fetch next (past the last
    /// whole batch, control batches included). A trailing partial batch is left for the next
    /// fetch, as Kafka's consumers do.
    public static func decode(_ records: ByteBuffer, partition: Int32, fetchOffset: Int64) throws -> (records: [ConsumerRecord], nextOffset: Int64) {
        var out: [ConsumerRecord] = []
        var next = fetchOffset
        for (header, bytes) in RecordBatch.split(records) {
            next = max(next, header.lastOffset + 1)
            if header.isControl { continue }
            guard header.magic == 2 else {
                throw KafkaClientError(.protocolViolation, "batch at offset \(header.baseOffset) has message format v\(header.magic); only v2 is read")
            }
            let decoded: [Record]
            do {
                decoded = try Record.decodeAll(batch: bytes)
            } catch {
                throw KafkaClientError(.protocolViolation, "batch at offset \(header.baseOffset) cannot be decoded: \(error)")
            }
            for r in decoded {
                let offset = header.baseOffset + Int64(r.offsetDelta)
                guard offset >= fetchOffset else { continue }
                out.append(ConsumerRecord(partition: partition, offset: offset,
                                          timestamp: header.isLogAppendTime ? header.maxTimestamp : header.baseTimestamp + r.timestampDelta,
                                          key: r.key, value: r.value, headers: r.headers))
            }
        }
        return (out, next)
    }

}
