import NIOCore

/// Request header v1 (classic) or v2 (flexible: tagged fields follow the client id).
public struct RequestHeader: Sendable, Equatable {
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationId: Int32
    public var clientId: String?

    public init(apiKey: Int16, apiVersion: Int16, correlationId: Int32, clientId: String?) {
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.correlationId = correlationId
        self.clientId = clientId
    }

    /// Reads the fixed part (key, version, correlation id): enough to answer even when the
    /// API or version is unknown.
    public static func peek(_ buffer: ByteBuffer) -> (apiKey: Int16, apiVersion: Int16, correlationId: Int32)? {
        guard let k = buffer.getInteger(at: buffer.readerIndex, as: Int16.self),
              let v = buffer.getInteger(at: buffer.readerIndex + 2, as: Int16.self),
              let c = buffer.getInteger(at: buffer.readerIndex + 4, as: Int32.self) else { return nil }
        return (k, v, c)
    }

    /// Decodes the header; `flexible` says whether the body's version is flexible (header v2).
    public init(from buffer: inout ByteBuffer, flexible: Bool) throws {
        apiKey = try buffer.readKafka()
        apiVersion = try buffer.readKafka()
        correlationId = try buffer.readKafka()
        // The client id is a classic nullable string even in header v2.
        clientId = try buffer.readKafkaNullableString(compact: false)
        if flexible { try buffer.skipTaggedFields() }
    }

    public func encode(into buffer: inout ByteBuffer, flexible: Bool) {
        buffer.writeInteger(apiKey)
        buffer.writeInteger(apiVersion)
        buffer.writeInteger(correlationId)
        buffer.writeKafkaNullableString(clientId, compact: false)
        if flexible { buffer.writeUnsignedVarint(0) }
    }
}

/// Response header v0 (correlation id) or v1 (plus tagged fields).
public enum ResponseHeader {
    public static func encode(correlationId: Int32, flexible: Bool, into buffer: inout ByteBuffer) {
        buffer.writeInteger(correlationId)
        if flexible { buffer.writeUnsignedVarint(0) }
    }

    /// ApiVersions responses always use header v0 so that a client can read the error of a
    /// version it does not share with the broker.
    public static func isFlexible(apiKey: Int16, version: Int16) -> Bool {
        guard let api = ApiKey(rawValue: apiKey), api != .apiVersions,
              let first = api.firstFlexibleVersion else { return false }
        return version >= first
    }
}
