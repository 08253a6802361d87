import NIOCore

/// Why the broker cannot use a bucket, in words an operator can act on.
public struct S3AccessError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public var underlying: S3Error
}

extension S3ObjectStore {
    /// Checks at startup that the bucket is reachable, readable and writable: one listing,
    /// then a conditional PUT and a DELETE of a probe object under the prefix. Throws an
    /// `S3AccessError` that says what is wrong (credentials, bucket, region, endpoint).
    public func checkAccess(probeName: String) async throws {
        let where_ = "bucket '\(config.bucket)' at \(config.endpoint)"
        do {
            // A few attempts only: an operator waits for this answer.
            _ = try await retrying("startup LIST", maxAttempts: min(config.maxAttempts, 4)) {
                try await self.send(.GET, key: nil, query: [("list-type", "2"), ("prefix", self.config.prefix), ("max-keys", "1")])
            }
        } catch let e as S3Error {
            throw S3AccessError(description: explain(e, where_: where_, doing: "list"), underlying: e)
        }
        let probe = config.prefix + "meta/startup-check/" + probeName
        do {
            try await putSingle(probe, ObjectBody(ByteBuffer(string: "tern startup check\n")), ifNoneMatch: true)
            try await retrying("startup DELETE") { _ = try await self.send(.DELETE, key: probe, accept: [404]) }
        } catch let e as S3Error {
            throw S3AccessError(description: explain(e, where_: where_, doing: "write to"), underlying: e)
        }
    }

    private func explain(_ e: S3Error, where_: String, doing: String) -> String {
        let key = config.credentials.accessKeyId
        let region = config.region
        if e.kind == .transport {
            return "cannot reach S3 endpoint \(config.endpoint): \(e.message)"
        }
        switch e.code {
        case "NoSuchBucket":
            return "bucket '\(config.bucket)' does not exist at \(config.endpoint) (NoSuchBucket)"
        case "InvalidAccessKeyId":
            return "bad S3 credentials: access key id '\(key)' is unknown to \(config.endpoint) (InvalidAccessKeyId); check AWS_ACCESS_KEY_ID or KAFKA_S3_ACCESS_KEY"
        case "SignatureDoesNotMatch":
            return "bad S3 credentials: the secret key does not match access key id '\(key)' (SignatureDoesNotMatch); check AWS_SECRET_ACCESS_KEY or KAFKA_S3_SECRET_KEY"
        case "InvalidToken", "ExpiredToken", "TokenRefreshRequired":
            return "bad S3 credentials: the session token was refused (\(e.code)); check AWS_SESSION_TOKEN"
        case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException", "AuthorizationQueryParametersError":
            if let actual = e.region, actual != region {
                return "wrong region: \(where_) is in region '\(actual)', not '\(region)'; set --s3-region \(actual) (\(e.code))"
            }
            if e.code == "PermanentRedirect" || e.message.contains("region") {
                return "wrong region: \(where_) is not in region '\(region)' (\(e.code): \(e.message)); check --s3-region"
            }
        case "AccessDenied", "Forbidden", "AllAccessDisabled":
            return "access denied: access key id '\(key)' may not \(doing) \(where_) (\(e.code)\(e.message.isEmpty ? "" : ": " + e.message))"
        case "NotFound" where e.status == 404:
            return "bucket '\(config.bucket)' does not exist at \(config.endpoint) (404)"
        default:
            if e.status == 301 || e.status == 307 {
                return "wrong region: \(where_) is not in region '\(region)' (HTTP \(e.status)); check --s3-region"
            }
        }
        return "cannot \(doing) \(where_): \(e)"
    }
}
