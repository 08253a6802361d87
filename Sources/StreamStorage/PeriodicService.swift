import ServiceLifecycle

/// Runs a pass every `interval` until graceful shutdown: the broker's background duties
/// (log retention, offset expiration, transaction timeouts, garbage collection, compaction).
public struct PeriodicService: Service {
    let intervalMs: Int
    /// Returns how long to pause before the next pass, in milliseconds; nil for the interval.
    let pass: @Sendable () async -> Int?

    /// Whatever `pass` returns is ignored: the pause is always the interval.
    public init(intervalMs: Int, pass: @escaping @Sendable () async -> Void) {
        self.intervalMs = intervalMs
        self.pass = {
            await pass()
            return nil
        }
    }

    private init(intervalMs: Int, pacedBy pass: @escaping @Sendable () async -> Int?) {
        self.intervalMs = intervalMs
        self.pass = pass
    }

    /// A pass that paces itself: it returns the pause before the next one (nil: the interval).
    /// A factory, not a second `init`: with a trailing closure the argument label does not
    /// count, and a pass returning a count (retention, offset expiry) was taken for a paced
    /// one, its 0 for a 0 ms pause, and the broker spun a core once its first pass had run.
    public static func paced(intervalMs: Int, _ pass: @escaping @Sendable () async -> Int?) -> PeriodicService {
        PeriodicService(intervalMs: intervalMs, pacedBy: pass)
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
