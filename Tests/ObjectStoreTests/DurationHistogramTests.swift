import ObjectStore
import Testing

@Suite struct DurationHistogramTests {
    /// Prometheus buckets are cumulative; a duration on a bound falls in that bucket, one past
    /// the last bound only in +Inf.
    @Test func bucketsAreCumulativeAndInfCountsEverything() {
        var h = DurationHistogram()
        for s in [0.0005, 0.005, 0.02, 0.02, 30.0] { h.record(s) }
        let lines = Set(h.prometheusLines("t", labels: "type=\"PUT\"").split(separator: "\n").map(String.init))
        #expect(lines.contains("t_bucket{type=\"PUT\",le=\"0.001\"} 1"))
        #expect(lines.contains("t_bucket{type=\"PUT\",le=\"0.005\"} 2"))
        #expect(lines.contains("t_bucket{type=\"PUT\",le=\"0.025\"} 4"))
        #expect(lines.contains("t_bucket{type=\"PUT\",le=\"10.0\"} 4"))
        #expect(lines.contains("t_bucket{type=\"PUT\",le=\"+Inf\"} 5"))
        #expect(lines.contains("t_count{type=\"PUT\"} 5"))
        #expect(h.sum == 30.0455)
        let plain = h.prometheusLines("u")
        #expect(plain.contains("u_bucket{le=\"+Inf\"} 5\n") && plain.contains("u_count 5\n"))
    }
}
