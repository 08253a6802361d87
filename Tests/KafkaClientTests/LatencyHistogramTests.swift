import Foundation
import KafkaClient
import Testing

@Suite struct LatencyHistogramTests {
    /// Exact percentiles of `values` at HdrHistogram's rank (p% of the count, rounded).
    static func exact(_ sorted: [UInt64], _ p: Double) -> UInt64 {
        sorted[max(1, Int(p / 100 * Double(sorted.count) + 0.5)) - 1]
    }

    @Test func smallValuesAreExact() {
        var h = LatencyHistogram()
        for v in 1...1000 as ClosedRange<UInt64> { h.record(v) }
        #expect(h.count == 1000)
        #expect(h.value(atPercentile: 50) == 500)
        #expect(h.value(atPercentile: 99) == 990)
        #expect(h.value(atPercentile: 99.9) == 999)
        #expect(h.value(atPercentile: 100) == 1000)
        #expect(h.max == 1000 && h.min == 1)
        #expect(h.mean == 500.5)
    }

    @Test func largeValuesAreWithinATenthOfAPercent() {
        var rng = SystemRandomNumberGenerator()
        var values: [UInt64] = []
        var h = LatencyHistogram()
        for _ in 0..<50_000 {
            // Spread over nine decades: 1 µs to 1000 s.
            let v = UInt64(pow(10, Double.random(in: 0...9, using: &rng)))
            values.append(v)
            h.record(v)
        }
        for p in [1.0, 25, 50, 90, 99, 99.9, 99.99] {
            let want = Self.exact(values.sorted(), p)
            let got = h.value(atPercentile: p)
            #expect(got >= want, "p\(p): \(got) < \(want)")
            #expect(Double(got) - Double(want) <= Double(want) / 1024 + 1, "p\(p): \(got) vs \(want)")
        }
        #expect(h.max == values.max())
        #expect(h.value(atPercentile: 100) == values.max())
    }

    @Test func mergeAddsCounts() {
        var a = LatencyHistogram()
        var b = LatencyHistogram()
        for v in 0..<100 as Range<UInt64> { a.record(v) }
        for v in 100..<300 as Range<UInt64> { b.record(v * 1000) }
        a.merge(b)
        #expect(a.count == 300)
        #expect(a.max == 299_000)
        #expect(a.min == 0)
        #expect(a.value(atPercentile: 100.0 / 3) == 99)
    }

    @Test func emptyAndHugeValues() {
        var h = LatencyHistogram()
        #expect(h.value(atPercentile: 99) == 0 && h.mean == 0)
        h.record(.max)
        #expect(h.max == LatencyHistogram.highestTrackable)
        #expect(h.value(atPercentile: 50) == LatencyHistogram.highestTrackable)
    }
}

