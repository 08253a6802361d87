import Crypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// S3 credentials: an access key pair and, for temporary credentials, a session token.
public struct S3Credentials: Sendable, Equatable {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// AWS Signature Version 4 for S3, header authentication.
///
/// Pure computation, no I/O; checked byte for byte against botocore's `S3SigV4Auth` by
/// `tests/test_sigv4_crosscheck.py`. S3 differs from other services in two ways that matter
/// here: the canonical URI is the path exactly as sent (encoded once, never normalised), and
/// every request carries `x-amz-content-sha256` (the payload's SHA-256 or `UNSIGNED-PAYLOAD`).
public struct SigV4Signer: Sendable {
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Headers never signed: hop-by-hop headers and ones that proxies rewrite (botocore's list).
    static let unsignedHeaders: Set<String> = [
        "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id", "authorization",
    ]

    public var credentials: S3Credentials
    public var region: String
    public var service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// Adds `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (with a session
    /// token) and `authorization` to `headers`, which must already hold `host` as sent.
    ///
    /// - Parameters:
    ///   - path: the request path exactly as sent, already percent-encoded (see `uriEncode`).
    ///   - query: raw (unencoded) query parameters; encoded and sorted here.
    ///   - payloadHash: hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    ///   - date: seconds since the epoch.
    public func sign(method: String, path: String, query: [(String, String)], headers: inout [(String, String)],
                     payloadHash: String, date: Int) {
        let stamp = Self.timestamp(date)
        headers.removeAll { ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"].contains($0.0.lowercased()) }
        headers.append(("x-amz-date", stamp))
        headers.append(("x-amz-content-sha256", payloadHash))
        if let token = credentials.sessionToken { headers.append(("x-amz-security-token", token)) }

        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(headers)
        let canonicalRequest = [
            method.uppercased(), path, Self.canonicalQuery(query), canonicalHeaders + "\n", signedHeaders, payloadHash,
        ].joined(separator: "\n")
        let day = String(stamp.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", stamp, scope, Self.hex(SHA256.hash(data: Array(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: signingKey(day: day)))
        headers.append(("authorization",
                        "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
    }

    func signingKey(day: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key))
        }
        let kDate = hmac(SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8)), day)
        return hmac(hmac(hmac(kDate, region), service), "aws4_request")
    }

    /// Lower-cased names, values trimmed with inner runs of whitespace collapsed, repeated
    /// names joined by `,` in the order given, sorted by name.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (String, String) {
        var byName: [String: [String]] = [:]
        for (name, value) in headers {
            let n = name.lowercased()
            if unsignedHeaders.contains(n) { continue }
            byName[n, default: []].append(value.split(whereSeparator: \.isWhitespace).joined(separator: " "))
        }
        let names = byName.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let canonical = names.map { "\($0):\(byName[$0]!.joined(separator: ","))" }.joined(separator: "\n")
        return (canonical, names.joined(separator: ";"))
    }

    /// Both names and values encoded with only unreserved characters left as they are,
    /// sorted by encoded name, then by encoded value.
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0, keepSlash: false), uriEncode($0.1, keepSlash: false)) }
            .sorted { a, b in a.0 != b.0 ? Array(a.0.utf8).lexicographicallyPrecedes(Array(b.0.utf8))
                                         : Array(a.1.utf8).lexicographicallyPrecedes(Array(b.1.utf8)) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// RFC 3986 percent-encoding of UTF-8 bytes: `A-Z a-z 0-9 - . _ ~` stay, and `/` too in
    /// paths (an object key's slashes are path separators in S3 URLs, not `%2F`).
    public static func uriEncode(_ text: String, keepSlash: Bool) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where keepSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(digits[Int(b >> 4)])
                out.append(digits[Int(b & 15)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
    public static func timestamp(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in digest {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func hex(_ digest: SHA256.Digest) -> String { hex(Array(digest)) }
    public static func hex(_ code: HashedAuthenticationCode<SHA256>) -> String { hex(Array(code)) }
}
