/// The `s3.*` settings of `tern serve`, used when `object.store` is `s3://BUCKET[/PREFIX]`.
/// Credentials never come from settings: only from the environment (see `S3Configuration`).
public struct S3Settings: Sendable, Equatable {
    /// nil: AWS's endpoint for the region.
    public var endpoint: String?
    public var region = "us-east-1"
    public var pathStyle = false
    public var unsignedPayload = false
    public var maxConnections = 64
    public var requestTimeoutMs = 30_000
    public var maxAttempts = 10
    public var partSize = 16 << 20

    public init() {}

    static let entries: [BrokerConfig.Setting] = [
        .init(name: "s3.endpoint", flag: "--s3-endpoint", defaultValue: "https://s3.<region>.amazonaws.com", help: "S3 endpoint URL (http:// or https://, no path)"),
        .init(name: "s3.region", flag: "--s3-region", defaultValue: "us-east-1", help: "S3 region, used in signatures"),
        .init(name: "s3.path.style", flag: "--s3-path-style", defaultValue: "false", help: "path-style URLs (endpoint/bucket/key) instead of bucket.endpoint/key"),
        .init(name: "s3.unsigned.payload", flag: nil, defaultValue: "false", help: "send UNSIGNED-PAYLOAD instead of the body's SHA-256 (https endpoints only)"),
        .init(name: "s3.max.connections", flag: nil, defaultValue: "64", help: "HTTP connections kept to the S3 endpoint"),
        .init(name: "s3.request.timeout.ms", flag: nil, defaultValue: "30000", help: "S3 request deadline (plus 1 s per MiB of body)"),
        .init(name: "s3.max.attempts", flag: nil, defaultValue: "10", help: "attempts of one S3 request on transient errors (exponential backoff)"),
        .init(name: "s3.part.size", flag: nil, defaultValue: "16777216", help: "objects above this size are uploaded in parts of this size"),
    ]

    static func resolve(_ raw: [String: String]) throws -> S3Settings {
        var s = S3Settings()
        let int = SettingValues(raw).int, bool = SettingValues(raw).bool
        if let v = raw["s3.endpoint"]?.trimmingWhitespace(), !v.isEmpty {
            guard v.hasPrefix("http://") || v.hasPrefix("https://"), v.split(separator: "/", omittingEmptySubsequences: true).count == 2 else {
                throw ConfigError("s3.endpoint: expected http://HOST[:PORT] or https://HOST[:PORT], got '\(v)'")
            }
            s.endpoint = v
        }
        if let v = raw["s3.region"]?.trimmingWhitespace() {
            guard !v.isEmpty, v.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw ConfigError("s3.region: expected a region name such as us-east-1, got '\(v)'")
            }
            s.region = v
        }
        if let b = try bool("s3.path.style") { s.pathStyle = b }
        if let b = try bool("s3.unsigned.payload") { s.unsignedPayload = b }
        if let n = try int("s3.max.connections", 1...1024) { s.maxConnections = n }
        if let n = try int("s3.request.timeout.ms", 100...600_000) { s.requestTimeoutMs = n }
        if let n = try int("s3.max.attempts", 1...100) { s.maxAttempts = n }
        if let n = try int("s3.part.size", 5 << 20...(5 << 30)) { s.partSize = n }
        return s
    }
}
