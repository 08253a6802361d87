import NIOCore
import ServiceLifecycle

/// Runs the engine's commit queue for the life of the broker. On graceful shutdown it
/// flushes the WAL buffer (at most `flushTimeout`) and returns once the last commit is written.
public struct StorageService: Service {
    public let engine: StreamEngine
    public let flushTimeout: TimeAmount

    public init(engine: StreamEngine, flushTimeout: TimeAmount) {
        self.engine = engine
        self.flushTimeout = flushTimeout
    }

    public func run() async {
        async let committed: Void = engine.runCommitter()
        // Stopped after the Kafka listener (which flushes first): wait for our turn.
        try? await gracefulShutdown()
        await engine.shutdown(timeout: flushTimeout)
        await committed
    }
}
