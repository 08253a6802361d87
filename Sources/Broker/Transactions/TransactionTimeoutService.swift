import ServiceLifecycle

/// Aborts transactions open longer than their `transaction.timeout.ms` every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`, as Kafka's coordinator does.
public struct TransactionTimeoutService: Service {
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
                await broker.transactions.abortTimedOut(io: broker)
            }
        }
    }
}
