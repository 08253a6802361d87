/// Durations counted into fixed Prometheus buckets, for `/metrics` histograms.
public struct DurationHistogram: Sendable, Equatable {
    /// Upper bounds (seconds) of the buckets.
    public static let bounds: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// Counts per bucket, not cumulative; durations above the last bound are only in `count`.
    public private(set) var bucketCounts = [Int](repeating: 0, count: DurationHistogram.bounds.count)
    public private(set) var count = 0
    public private(set) var sum = 0.0

    public init() {}

    public mutating func record(_ seconds: Double) {
        count += 1
        sum += seconds
        if let i = Self.bounds.firstIndex(where: { seconds <= $0 }) { bucketCounts[i] += 1 }
    }

    /// The Prometheus text lines of this histogram: `name_bucket`, `name_sum`, `name_count`,
    /// each with `labels` (e.g. `api="Produce"`; empty for none).
    public func prometheusLines(_ name: String, labels: String = "") -> String {
        let sep = labels.isEmpty ? "" : ","
        let plain = labels.isEmpty ? "" : "{\(labels)}"
        var out = ""
        var cumulative = 0
        for (i, le) in Self.bounds.enumerated() {
            cumulative += bucketCounts[i]
            out += "\(name)_bucket{\(labels)\(sep)le=\"\(le)\"} \(cumulative)\n"
        }
        out += "\(name)_bucket{\(labels)\(sep)le=\"+Inf\"} \(count)\n"
        out += "\(name)_sum\(plain) \(sum)\n"
        out += "\(name)_count\(plain) \(count)\n"
        return out
    }
}
