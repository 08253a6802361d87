import NIOConcurrencyHelpers
import ObjectStore

/// Counters behind `/metrics`: requests and latency by API, bytes produced and fetched.
public final class BrokerMetrics: Sendable {
    public struct ApiStats: Sendable {
        /// Requests handled: `duration.count`.
        public var requests: Int { duration.count }
        public var errors = 0
        public var duration = DurationHistogram()
    }

    public struct Snapshot: Sendable {
        public var apis: [String: ApiStats] = [:]
        public var producedBytes = 0
        public var producedRecords = 0
        public var fetchedBytes = 0
        public var connections = 0
        public var closedForBadInput = 0
    }

    private let state = NIOLockedValueBox(Snapshot())

    public init() {}

    public func snapshot() -> Snapshot { state.withLockedValue { $0 } }

    func request(_ api: String, seconds: Double, failed: Bool) {
        state.withLockedValue { s in
            var a = s.apis[api] ?? ApiStats()
            if failed { a.errors += 1 }
            a.duration.record(seconds)
            s.apis[api] = a
        }
    }

    func produced(bytes: Int, records: Int) {
        state.withLockedValue {
            $0.producedBytes += bytes
            $0.producedRecords += records
        }
    }

    func fetched(bytes: Int) { state.withLockedValue { $0.fetchedBytes += bytes } }
    func connection(opened: Bool) { state.withLockedValue { $0.connections += opened ? 1 : -1 } }
    func badInput() { state.withLockedValue { $0.closedForBadInput += 1 } }
}
