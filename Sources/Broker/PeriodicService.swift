import ServiceLifecycle

/// Runs a pass every `interval` until graceful shutdown: the broker's background duties
/// (log retention, offset expiration).
public struct PeriodicService: Service {
    let interval: Duration
    let pass: @Sendable () async -> Void

    public init(intervalMs: Int, pass: @escaping @Sendable () async -> Void) {
        self.interval = .milliseconds(intervalMs)
        self.pass = pass
    }

    public func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                await pass()
            }
        }
    }
}
