import Logging

extension Broker {
    /// One retention pass (every `log.retention.check.interval.ms`, as Kafka's log retention)
    /// over every partition of every topic whose `cleanup.policy`
    /// includes `delete`; returns how many partitions' log start offsets moved.
    @discardableResult
    public func applyRetention(now: Int64 = Broker.wallClockMs()) async -> Int {
        var moved = 0
        for t in allTopics() where t.configs["cleanup.policy"]?.contains("delete") ?? true {
            let ms = t.configs["retention.ms"].flatMap { Int64($0) } ?? TopicConfigs.defaultRetentionMs
            let bytes = t.configs["retention.bytes"].flatMap { Int64($0) } ?? config.retentionBytes
            for (partition, sid) in t.streamIds.enumerated() {
                guard let target = engine.retentionStart(streamId: sid, retentionMs: ms, retentionBytes: bytes, now: now) else { continue }
                do {
                    let start = try await engine.advanceLogStart(streamId: sid, to: target)
                    moved += 1
                    logger.info("retention moved the log start", metadata: ["topic": "\(t.name)", "partition": "\(partition)", "start": "\(start)"])
                } catch {
                    logger.warning("retention could not move the log start", metadata: ["topic": "\(t.name)", "partition": "\(partition)", "error": "\(error)"])
                }
            }
        }
        return moved
    }
}
