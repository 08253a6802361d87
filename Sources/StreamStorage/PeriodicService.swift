import ServiceLifecycle

/// Runs a pass every `interval` until graceful shutdown: the broker's background duties
/// (log retention, offset expiration, transaction timeouts, garbage collection, compaction).
public struct PeriodicService: Service {
    let intervalMs: Int
    /// Returns how long to pause before the next pass, in milliseconds; nil for the interval.
    let pass: @Sendable () async -> Int?

    public init(intervalMs: Int, pass: @escaping @Sendable () async -> Void) {
        self.intervalMs = intervalMs
        self.pass = {
            await pass()
            return nil
        }
    }

    /// A pass that paces itself: it returns the pause before the next one (nil: the interval).
    public init(intervalMs: Int, paced pass: @escaping @Sendable () async -> Int?) {
        self.intervalMs = intervalMs
        self.pass = pass
    }

    public func run() async {
        await cancelWhenGracefulShutdown {
            var pause = intervalMs
            while !Task.isCancelled {
                do { try await Task.sleep(for: .milliseconds(pause)) } catch { return }
                pause = await pass() ?? intervalMs
            }
        }
    }
}
