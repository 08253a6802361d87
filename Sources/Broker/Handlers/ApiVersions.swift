import KafkaProtocol
import NIOCore

extension Broker {
    /// What we advertise: the versions we serve, except Produce, advertised from 0 because
    /// librdkafka before 2.11.1 enables compression only when Produce v0-2 is listed.
    static func advertisedVersions(_ listener: Listener = .client) -> [ApiVersionsResponse.ApiVersion] {
        ApiKey.allCases.filter { serves($0, on: listener) }.map { api in
            var v = ApiVersionsResponse.ApiVersion()
            v.apiKey = api.rawValue
            v.minVersion = api == .produce ? 0 : api.versions.lowerBound
            v.maxVersion = api.versions.upperBound
            return v
        }
    }

    func apiVersions(_ r: ApiVersionsRequest, listener: Listener) -> ApiVersionsResponse {
        var resp = ApiVersionsResponse()
        resp.apiKeys = Self.advertisedVersions(listener)
        return resp
    }

    /// The answer to an ApiVersions request of a version we do not know: UNSUPPORTED_VERSION
    /// and our list, in v0 with header v0, as Kafka does.
    func unsupportedApiVersions(correlationId: Int32) -> ByteBuffer {
        var resp = ApiVersionsResponse()
        resp.errorCode = ErrorCode.unsupportedVersion.rawValue
        resp.apiKeys = Self.advertisedVersions()
        var b = ByteBuffer()
        b.writeInteger(Int32(0))
        ResponseHeader.encode(correlationId: correlationId, flexible: false, into: &b)
        resp.encode(into: &b, version: 0)
        b.setInteger(Int32(b.readableBytes - 4), at: 0)
        return b
    }
}
