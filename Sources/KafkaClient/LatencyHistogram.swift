/// Latencies in microseconds, counted in HdrHistogram's layout at 3 significant digits: every
/// value below 2048 µs has its own counter; above, each power of two is split into 1024
/// buckets, so a reported percentile is at most 0.1% above the true value (HdrHistogram's
/// `highestEquivalentValue`). The largest value is kept exactly. Fixed size (256 KiB),
/// `record` is O(1) with no allocation; values above 2^41 µs (25 days) count as that.
///
/// Written here rather than taken from hdrhistogram-swift: the layout is forty lines, and
/// the load generator needs only record, merge and percentiles.
public struct LatencyHistogram: Sendable {
    static let subBuckets = 2048
    static let halfSubBuckets = 1024
    /// Shifts 1…30 cover values up to 2^41 - 1.
    static let maxShift = 30
    static let size = subBuckets + maxShift * halfSubBuckets
    public static let highestTrackable: UInt64 = (1 << 41) - 1

    private var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var max: UInt64 = 0
    public private(set) var min: UInt64 = .max
    private var sum: UInt64 = 0

    public init() {
        counts = [UInt64](repeating: 0, count: Self.size)
    }

    static func index(_ v: UInt64) -> Int {
        if v < UInt64(subBuckets) { return Int(v) }
        let shift = (63 - v.leadingZeroBitCount) - 10
        return subBuckets + (shift - 1) * halfSubBuckets + (Int(v >> UInt64(shift)) - halfSubBuckets)
    }

    /// The largest value counted in bucket `i`.
    static func highestEquivalent(_ i: Int) -> UInt64 {
        if i < subBuckets { return UInt64(i) }
        let shift = UInt64((i - subBuckets) / halfSubBuckets + 1)
        let sub = UInt64((i - subBuckets) % halfSubBuckets + halfSubBuckets)
        return (sub << shift) + (1 << shift) - 1
    }

    public var isEmpty: Bool { count == 0 }

    public mutating func record(_ microseconds: UInt64) {
        let v = Swift.min(microseconds, Self.highestTrackable)
        counts[Self.index(v)] &+= 1
        count &+= 1
        sum &+= v
        if v > max { max = v }
        if v < min { min = v }
    }

    public mutating func merge(_ other: LatencyHistogram) {
        guard !other.isEmpty else { return }
        for i in 0..<Self.size where other.counts[i] != 0 { counts[i] &+= other.counts[i] }
        count &+= other.count
        sum &+= other.sum
        max = Swift.max(max, other.max)
        min = Swift.min(min, other.min)
    }

    /// The mean in microseconds (0 when empty).
    public var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }

    /// The value at `percentile` (0…100): the smallest bucket holding at least that share of
    /// the values, reported as its highest value (never above the maximum). 0 when empty.
    public func value(atPercentile percentile: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let p = Swift.min(Swift.max(percentile, 0), 100)
        // HdrHistogram's rank: rounded to the nearest, so that 99.9% of 1000 is the 999th
        // value and not the 1000th by a floating-point hair.
        let target = Swift.max(1, UInt64(p / 100 * Double(count) + 0.5))
        var seen: UInt64 = 0
        for i in 0..<Self.size {
            seen &+= counts[i]
            if seen >= target { return Swift.min(Self.highestEquivalent(i), max) }
        }
        return max
    }
}
