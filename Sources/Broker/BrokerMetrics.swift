import NIOConcurrencyHelpers

/// Counters behind `/metrics`: requests and latency by API, bytes produced and fetched.
public final class BrokerMetrics: Sendable {
    /// Upper bounds (seconds) of the latency histogram buckets.
    public static let buckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    public struct ApiStats: Sendable {
        public var requests = 0
        public var errors = 0
        public var seconds = 0.0
        public var bucketCounts = [Int](repeating: 0, count: BrokerMetrics.buckets.count)
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
            a.requests += 1
            if failed { a.errors += 1 }
            a.seconds += seconds
            if let i = Self.buckets.firstIndex(where: { seconds <= $0 }) { a.bucketCounts[i] += 1 }
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
