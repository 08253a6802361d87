#if canImport(Glibc)
import Glibc
#endif
import Broker
import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A real broker over an in-memory bucket and a throwaway SQLite file, for feeding fuzz
/// inputs through the frame decoder and `Broker.handle` (dispatch, handlers, storage).
final class FuzzBroker: Sendable {
    static let shared = FuzzBroker()

    let broker: Broker

    private init() {
        var log = Logger(label: "tern-fuzz")
        log.logLevel = .critical
        let logger = log
        var settings = BrokerConfig()
        settings.storage.uploadIntervalMs = 1
        settings.storage.logCacheBytes = 16 << 20
        settings.storage.blockCacheBytes = 16 << 20
        let path = "/tmp/tern-fuzz-\(getpid()).sqlite"
        let config = settings
        let broker = blocking { () -> Broker in
            try! await Broker.inProcess(config: config, metadataPath: path, logger: logger)
        }
        self.broker = broker
    }

    /// Splits `input` into request frames as a connection would and handles up to four,
    /// waiting at most 300 ms for each answer (a long-polling fetch is then cancelled, and
    /// must end promptly). A crash, a trap or a hang here is a finding.
    func handle(_ input: ByteBuffer) {
        let processor = NIOSingleStepByteToMessageProcessor(KafkaFrameDecoder(maxFrameSize: 1 << 20))
        var frames: [ByteBuffer] = []
        try? processor.process(buffer: input) { frames.append($0) }
        for frame in frames.prefix(4) {
            blocking {
                guard case .respond(let answer) = await self.broker.handle(frame: frame) else { return }
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { _ = await answer.value }
                    group.addTask { try? await Task.sleep(for: .milliseconds(300)) }
                    await group.next()
                    answer.cancel()
                    group.cancelAll()
                }
            }
        }
    }
}

/// Runs async work to completion from libFuzzer's synchronous callback.
private func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let done = DispatchSemaphore(value: 0)
    let result = NIOLockedValueBox<T?>(nil)
    Task {
        let value = await body()
        result.withLockedValue { $0 = value }
        done.signal()
    }
    done.wait()
    return result.withLockedValue { $0! }
}
