import NIOConcurrencyHelpers
import ObjectStore

/// What the bucket holds and what it costs: `GET /admin/storage` (JSON, for
/// `tern admin storage`) and the cost gauges of `/metrics`.
///
/// Requests are counted as S3 bills them (every attempt, by operation) when the store is S3;
/// for a local directory they are the requests S3 would have received. Rates are averages
/// since the broker started. Objects and bytes come from a listing of the bucket (under the
/// prefix), made only when `/admin/storage` is asked: a listing of a big bucket costs
/// requests too, so `/metrics` shows the last one rather than making its own.
public final class StorageReporter: Sendable {
    let store: any ObjectStore
    let meter: ObjectStoreMeter
    let s3Requests: S3RequestCounter?
    let objectStoreURL: String
    let pricing: S3Pricing
    let started = ContinuousClock.now
    private let lastListing = NIOLockedValueBox<(objects: Int, bytes: Int)?>(nil)

    public init(store: any ObjectStore, meter: ObjectStoreMeter, s3Requests: S3RequestCounter?, objectStoreURL: String,
                pricing: S3Pricing = .standard) {
        self.store = store
        self.meter = meter
        self.s3Requests = s3Requests
        self.objectStoreURL = objectStoreURL
        self.pricing = pricing
    }

    struct Requests {
        var counts: [S3Operation: S3RequestCounter.Counts]
        var seconds: Double
        var rates: [S3Operation: Double] { counts.mapValues { Double($0.requests) / max(seconds, 1) } }
    }

    func requests() -> Requests {
        let seconds = (ContinuousClock.now - started).seconds
        if let s3Requests { return Requests(counts: s3Requests.snapshot(), seconds: seconds) }
        var counts: [S3Operation: S3RequestCounter.Counts] = [:]
        for (r, c) in meter.snapshot() {
            counts[S3Operation.equivalent(r), default: .init()].requests += c.requests
            counts[S3Operation.equivalent(r), default: .init()].bytesUp += c.bytesOut
            counts[S3Operation.equivalent(r), default: .init()].bytesDown += c.bytesIn
        }
        return Requests(counts: counts, seconds: seconds)
    }

    /// Lists the bucket and renders the report as JSON.
    public func report() async throws -> String {
        let objects = try await store.list(prefix: "")
        let listing = (objects: objects.count, bytes: objects.reduce(0) { $0 + $1.size })
        lastListing.withLockedValue { $0 = listing }
        let r = requests()
        let requestCost = pricing.requestCostPerMonth(ratesPerSecond: r.rates)
        let storageCost = pricing.storageCostPerMonth(bytes: listing.bytes)
        var ops: [String] = []
        for op in S3Operation.allCases {
            let c = r.counts[op] ?? .init()
            ops.append("\"\(op.rawValue)\": {\"count\": \(c.requests), \"per_second\": \(Self.num(Double(c.requests) / max(r.seconds, 1))), \"tier\": \"\(op.tier.rawValue)\"}")
        }
        let up = r.counts.values.reduce(0) { $0 + $1.bytesUp }
        let down = r.counts.values.reduce(0) { $0 + $1.bytesDown }
        return """
        {"object_store": "\(Self.escape(objectStoreURL))", "objects": \(listing.objects), "bytes": \(listing.bytes), \
        "uptime_seconds": \(Self.num(r.seconds)), "requests_counted": "\(s3Requests == nil ? "equivalent S3 requests" : "S3 requests sent")", \
        "requests": {\(ops.joined(separator: ", "))}, "bytes_up": \(up), "bytes_down": \(down), \
        "estimated_monthly_cost_usd": {"requests": \(Self.num(requestCost)), "storage": \(Self.num(storageCost)), "total": \(Self.num(requestCost + storageCost))}, \
        "prices_usd": {"put_post_list_per_1000": \(pricing.putPostListPer1000), "get_per_1000": \(pricing.getPer1000), "storage_per_gb_month": \(pricing.storagePerGBMonth)}}

        """
    }

    /// Prometheus lines: S3 requests by operation, the estimated monthly cost, and the last
    /// listing's objects and bytes.
    public func metrics() -> String {
        let r = requests()
        var out = "# HELP tern_object_store_s3_requests_total S3 requests by operation, retries included (equivalent requests for a local store).\n"
        out += "# TYPE tern_object_store_s3_requests_total counter\n"
        for op in S3Operation.allCases { out += "tern_object_store_s3_requests_total{op=\"\(op.rawValue)\"} \(r.counts[op]?.requests ?? 0)\n" }
        out += "# HELP tern_object_store_estimated_monthly_cost_usd Estimated S3 Standard cost per month: requests at the rate since start, storage from the last listing.\n"
        out += "# TYPE tern_object_store_estimated_monthly_cost_usd gauge\n"
        out += "tern_object_store_estimated_monthly_cost_usd{part=\"requests\"} \(Self.num(pricing.requestCostPerMonth(ratesPerSecond: r.rates)))\n"
        if let listing = lastListing.withLockedValue({ $0 }) {
            out += "tern_object_store_estimated_monthly_cost_usd{part=\"storage\"} \(Self.num(pricing.storageCostPerMonth(bytes: listing.bytes)))\n"
            out += "# HELP tern_object_store_stored_objects Objects in the bucket at the last listing (tern admin storage).\n"
            out += "# TYPE tern_object_store_stored_objects gauge\ntern_object_store_stored_objects \(listing.objects)\n"
            out += "# HELP tern_object_store_stored_bytes Bytes in the bucket at the last listing (tern admin storage).\n"
            out += "# TYPE tern_object_store_stored_bytes gauge\ntern_object_store_stored_bytes \(listing.bytes)\n"
        }
        return out
    }

    static func num(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        return "\(v)"
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: if c.value < 0x20 { out += "\\u00\(c.value < 16 ? "0" : "")\(String(c.value, radix: 16))" } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }
}
