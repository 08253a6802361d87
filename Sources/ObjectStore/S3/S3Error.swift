/// An error answer from an S3 server, or a failure to get one.
///
/// `code` is S3's error code (`NoSuchKey`, `SlowDown`, `SignatureDoesNotMatch`, ...) from the
/// XML body; for answers without a body (HEAD) it is derived from the status.
public struct S3Error: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The server answered with an error status.
        case response
        /// No answer: connection refused or reset, timeout, TLS failure. The request may or
        /// may not have taken effect.
        case transport
        /// The answer could not be understood.
        case protocolViolation
    }

    public var kind: Kind
    public var status: Int
    public var code: String
    public var message: String
    public var requestId: String?
    /// Where S3 says the bucket lives (`x-amz-bucket-region`, or `<Region>` in the XML).
    public var region: String?

    public init(kind: Kind, status: Int = 0, code: String, message: String, requestId: String? = nil, region: String? = nil) {
        self.kind = kind
        self.status = status
        self.code = code
        self.message = message
        self.requestId = requestId
        self.region = region
    }

    /// Worth another attempt: the server or the network may do better next time.
    public var isRetryable: Bool {
        switch kind {
        case .transport: return true
        case .protocolViolation: return false
        case .response:
            if status >= 500 || status == 429 { return true }
            return ["SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                    "ThrottlingException", "OperationAborted", "ConditionalRequestConflict"].contains(code)
        }
    }

    /// The request may have taken effect although it did not report success.
    public var outcomeUnknown: Bool { kind == .transport || (kind == .response && status >= 500) }

    public var description: String {
        var s = kind == .response ? "S3 \(status) \(code): \(message)" : "S3 \(code): \(message)"
        if let requestId { s += " (request id \(requestId))" }
        return s
    }

    /// Reads an S3 `<Error>` document; falls back on the status for empty bodies (HEAD).
    static func from(status: Int, body: [UInt8], requestId: String?, bucketRegion: String?) -> S3Error {
        if !body.isEmpty, let root = XMLElementNode.parse(body), root.name == "Error" {
            return S3Error(kind: .response, status: status, code: root["Code"] ?? "HTTP\(status)",
                           message: root["Message"] ?? "", requestId: root["RequestId"] ?? requestId,
                           region: bucketRegion ?? root["Region"])
        }
        let code: String
        switch status {
        case 301: code = "PermanentRedirect"
        case 304: code = "NotModified"
        case 400: code = "BadRequest"
        case 403: code = "Forbidden"
        case 404: code = "NotFound"
        case 412: code = "PreconditionFailed"
        case 416: code = "InvalidRange"
        case 503: code = "ServiceUnavailable"
        default: code = "HTTP\(status)"
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        return S3Error(kind: .response, status: status, code: code, message: text, requestId: requestId, region: bucketRegion)
    }
}
