import Logging
import ServiceLifecycle

/// Applies topics' `retention.ms` and `retention.bytes` every
/// `log.retention.check.interval.ms`, as Kafka's log retention does: the log start offset
/// moves past whole object ranges that expired (durably, as DeleteRecords moves it), so
/// consumers can no longer read them. Deleting the objects themselves is garbage
/// collection's part.
public struct RetentionService: Service {
    let broker: Broker
    let interval: Duration

    public init(broker: Broker, intervalMs: Int) {
        self.broker = broker
        self.interval = .milliseconds(intervalMs)
    }

    public func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                await broker.applyRetention()
            }
        }
    }
}

extension Broker {
    /// One retention pass over every partition of every topic whose `cleanup.policy`
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
