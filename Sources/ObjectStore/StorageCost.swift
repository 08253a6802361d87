import NIOConcurrencyHelpers

/// An S3 API request as S3 bills it: each attempt of each operation.
public enum S3Operation: String, Sendable, CaseIterable {
    case putObject = "PutObject"
    case createMultipartUpload = "CreateMultipartUpload"
    case uploadPart = "UploadPart"
    case completeMultipartUpload = "CompleteMultipartUpload"
    case abortMultipartUpload = "AbortMultipartUpload"
    case getObject = "GetObject"
    case headObject = "HeadObject"
    case listObjectsV2 = "ListObjectsV2"
    case deleteObjects = "DeleteObjects"
    case deleteObject = "DeleteObject"

    /// The price tier of S3 Standard: PUT, COPY, POST and LIST requests; GET and all other
    /// requests; DELETE and CANCEL requests (free).
    public enum Tier: String, Sendable { case putPostList = "PUT/POST/LIST", getAndOther = "GET/other", free }

    public var tier: Tier {
        switch self {
        // DeleteObjects is a POST: billed as one, unlike a single DELETE.
        case .putObject, .createMultipartUpload, .uploadPart, .completeMultipartUpload, .listObjectsV2, .deleteObjects: return .putPostList
        case .getObject, .headObject: return .getAndOther
        case .abortMultipartUpload, .deleteObject: return .free
        }
    }

    /// The request kind of the object-store protocol: what a non-S3 store would have sent.
    public static func equivalent(_ r: ObjectStoreRequest) -> S3Operation {
        switch r {
        case .put: return .putObject
        case .get: return .getObject
        case .head: return .headObject
        case .list: return .listObjectsV2
        case .delete: return .deleteObjects
        }
    }
}

/// Counts S3 requests by operation and the bytes they moved, including every retry (S3
/// bills attempts). Fed by `S3ObjectStore`.
public final class S3RequestCounter: Sendable {
    public struct Counts: Sendable, Equatable {
        public var requests = 0
        public var bytesUp = 0
        public var bytesDown = 0
        public init() {}
    }

    private let counts = NIOLockedValueBox<[S3Operation: Counts]>([:])

    public init() {}

    public func record(_ op: S3Operation, bytesUp: Int, bytesDown: Int) {
        counts.withLockedValue {
            $0[op, default: Counts()].requests += 1
            $0[op, default: Counts()].bytesUp += bytesUp
            $0[op, default: Counts()].bytesDown += bytesDown
        }
    }

    public func snapshot() -> [S3Operation: Counts] { counts.withLockedValue { $0 } }
}

/// AWS S3 Standard's published prices (us-east-1, first 50 TB), for an estimate of what a
/// broker's traffic and data cost per month. Data transfer inside a region is free and not
/// counted.
public struct S3Pricing: Sendable, Equatable {
    /// Dollars per 1000 PUT, COPY, POST or LIST requests.
    public var putPostListPer1000 = 0.005
    /// Dollars per 1000 GET (and other) requests.
    public var getPer1000 = 0.0004
    /// Dollars per GB stored for a month (S3 counts a GB as 2^30 bytes).
    public var storagePerGBMonth = 0.023

    public static let standard = S3Pricing()
    public static let secondsPerMonth = 30.0 * 24 * 3600

    public init() {}

    /// Monthly cost of requests at these per-second rates, by tier.
    public func requestCostPerMonth(ratesPerSecond: [S3Operation: Double]) -> Double {
        var total = 0.0
        for (op, rate) in ratesPerSecond {
            let perRequest: Double
            switch op.tier {
            case .putPostList: perRequest = putPostListPer1000 / 1000
            case .getAndOther: perRequest = getPer1000 / 1000
            case .free: perRequest = 0
            }
            total += rate * Self.secondsPerMonth * perRequest
        }
        return total
    }

    /// Monthly cost of keeping `bytes` stored.
    public func storageCostPerMonth(bytes: Int) -> Double {
        Double(bytes) / Double(1 << 30) * storagePerGBMonth
    }
}
