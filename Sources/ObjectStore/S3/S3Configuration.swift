/// Where and how to reach an S3-compatible bucket.
public struct S3Configuration: Sendable {
    public var bucket: String
    /// Prepended to every key (`"tern/"`); empty for the whole bucket. Ends in `/` unless empty.
    public var prefix: String
    /// `https://s3.us-west-2.amazonaws.com`, `http://127.0.0.1:8333`, ... without a path.
    public var endpoint: String
    public var region: String
    /// Path-style (`endpoint/bucket/key`) instead of virtual-hosted-style (`bucket.endpoint/key`).
    public var pathStyle: Bool
    public var credentials: S3Credentials
    /// Send `UNSIGNED-PAYLOAD` instead of the body's SHA-256 (TLS endpoints only; ignored on http).
    public var unsignedPayload = false
    /// Connections kept per host.
    public var maxConnections = 64
    public var connectTimeoutMs = 5_000
    /// A request's deadline is this plus `timeoutMsPerMiB` per MiB of body.
    public var requestTimeoutMs = 30_000
    public var timeoutMsPerMiB = 1_000
    /// Attempts of one request, the first included.
    public var maxAttempts = 10
    public var retryBaseDelayMs = 50
    public var retryMaxDelayMs = 5_000
    /// Objects larger than this go up in parts of this size (S3's minimum part is 5 MiB).
    public var partSize = 16 << 20
    /// Parts uploading at once for one multipart object.
    public var partConcurrency = 4
    /// Keys per DeleteObjects request (S3 allows at most 1000).
    public var deleteBatchSize = 1000

    public init(bucket: String, prefix: String = "", endpoint: String? = nil, region: String = "us-east-1",
                pathStyle: Bool = false, credentials: S3Credentials) {
        self.bucket = bucket
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
        self.region = region
        self.endpoint = Self.trimmedEndpoint(endpoint ?? Self.awsEndpoint(region: region))
        self.pathStyle = pathStyle
        self.credentials = credentials
    }

    /// AWS's regional endpoint.
    public static func awsEndpoint(region: String) -> String {
        region == "us-east-1" ? "https://s3.amazonaws.com" : "https://s3.\(region).amazonaws.com"
    }

    static func trimmedEndpoint(_ e: String) -> String {
        var e = e
        while e.hasSuffix("/") { e.removeLast() }
        return e
    }

    /// Splits `s3://BUCKET[/PREFIX]` into bucket and prefix; nil when it is not one.
    public static func parseURL(_ url: String) -> (bucket: String, prefix: String)? {
        guard url.hasPrefix("s3://") else { return nil }
        let rest = url.dropFirst("s3://".count)
        let bucket = String(rest.prefix { $0 != "/" })
        guard Self.isValidBucketName(bucket) else { return nil }
        var prefix = String(rest.dropFirst(bucket.count))
        while prefix.hasPrefix("/") { prefix.removeFirst() }
        return (bucket, prefix)
    }

    /// S3's bucket naming rules (3-63 characters of lower case, digits, `.` and `-`, starting
    /// and ending with a letter or digit); lenient on `_` and upper case, which some
    /// S3-compatible servers allow with path-style addressing.
    public static func isValidBucketName(_ name: String) -> Bool {
        guard (3...63).contains(name.count), let first = name.first, let last = name.last,
              first.isLetter || first.isNumber, last.isLetter || last.isNumber else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
    }

    /// Credentials from the environment: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    /// `AWS_SESSION_TOKEN`, else `KAFKA_S3_ACCESS_KEY` / `KAFKA_S3_SECRET_KEY`.
    public static func credentials(from env: [String: String]) -> S3Credentials? {
        func nonEmpty(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        if let id = nonEmpty("AWS_ACCESS_KEY_ID"), let secret = nonEmpty("AWS_SECRET_ACCESS_KEY") {
            return S3Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: nonEmpty("AWS_SESSION_TOKEN"))
        }
        if let id = nonEmpty("KAFKA_S3_ACCESS_KEY"), let secret = nonEmpty("KAFKA_S3_SECRET_KEY") {
            return S3Credentials(accessKeyId: id, secretAccessKey: secret)
        }
        return nil
    }
}
