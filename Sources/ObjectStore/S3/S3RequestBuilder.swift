import Crypto
import NIOCore

/// Turns an S3 operation into a URL and signed headers: addressing style, key encoding,
/// payload hash and SigV4. Public so that the test-only `s3sig-check` tool signs through
/// exactly the code the store uses.
public struct S3RequestBuilder: Sendable {
    public let scheme: String
    /// The `host` header as sent and signed: lower case, port only when not the default.
    public let host: String
    public let bucket: String
    public let pathStyle: Bool
    public let unsignedPayload: Bool
    public let signer: SigV4Signer

    public init(_ config: S3Configuration) throws {
        let e = config.endpoint
        guard let sep = e.range(of: "://") else { throw S3Error(kind: .protocolViolation, code: "InvalidEndpoint", message: "endpoint '\(e)' has no scheme (http:// or https://)") }
        let scheme = e[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw S3Error(kind: .protocolViolation, code: "InvalidEndpoint", message: "endpoint '\(e)': scheme must be http or https")
        }
        var authority = String(e[sep.upperBound...])
        if let slash = authority.firstIndex(of: "/") {
            guard authority[slash...].allSatisfy({ $0 == "/" }) else {
                throw S3Error(kind: .protocolViolation, code: "InvalidEndpoint", message: "endpoint '\(e)' must not have a path")
            }
            authority = String(authority[..<slash])
        }
        guard !authority.isEmpty, !authority.contains("@") else {
            throw S3Error(kind: .protocolViolation, code: "InvalidEndpoint", message: "endpoint '\(e)' has no host")
        }
        // Drop the port when it is the scheme's default, as botocore does: `host` must be
        // signed exactly as the server sees it.
        var host = authority.lowercased()
        let defaultPort = scheme == "https" ? ":443" : ":80"
        if host.hasSuffix(defaultPort) && !host.hasSuffix("]") { host.removeLast(defaultPort.count) }
        self.scheme = scheme
        self.bucket = config.bucket
        self.pathStyle = config.pathStyle
        self.host = config.pathStyle ? host : "\(config.bucket.lowercased()).\(host)"
        self.unsignedPayload = config.unsignedPayload && scheme == "https"
        self.signer = SigV4Signer(credentials: config.credentials, region: config.region)
    }

    /// The request path for a full object key (prefix included), or for the bucket when nil.
    public func path(key: String?) -> String {
        let encodedKey = key.map { SigV4Signer.uriEncode($0, keepSlash: true) }
        if pathStyle {
            return "/" + SigV4Signer.uriEncode(bucket, keepSlash: false) + (encodedKey.map { "/" + $0 } ?? "")
        }
        return "/" + (encodedKey ?? "")
    }

    /// URL and headers (host and the SigV4 ones added) of one request. `date` is seconds since
    /// the epoch.
    public func build(method: String, key: String?, query: [(String, String)], headers: [(String, String)],
                      body: ObjectBody?, date: Int) -> (url: String, headers: [(String, String)]) {
        let path = self.path(key: key)
        let queryString = SigV4Signer.canonicalQuery(query)
        var all = headers.filter { $0.0.lowercased() != "host" }
        all.insert(("host", host), at: 0)
        let payloadHash: String
        if unsignedPayload {
            payloadHash = SigV4Signer.unsignedPayload
        } else if let body, body.readableBytes > 0 {
            var sha = SHA256()
            body.withEachPart { sha.update(bufferPointer: $0) }
            payloadHash = SigV4Signer.hex(sha.finalize())
        } else {
            payloadHash = SigV4Signer.emptyPayloadHash
        }
        signer.sign(method: method, path: path, query: query, headers: &all, payloadHash: payloadHash, date: date)
        let url = "\(scheme)://\(host)\(path)" + (queryString.isEmpty ? "" : "?" + queryString)
        return (url, all)
    }
}
