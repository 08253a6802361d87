/// A decoding failure: the bytes on the wire do not form a valid message.
///
/// The broker answers these by closing the connection (Kafka does the same for a request it
/// cannot parse), so the details only need to be good enough for a log line.
public struct ProtocolError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        case truncated
        case invalidLength
        case invalidString
        case unsupportedVersion
        case unknownApiKey
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    static func truncated(_ what: StaticString) -> ProtocolError {
        ProtocolError(.truncated, "buffer ended while reading \(what)")
    }
}
