import NIOCore

/// A request or response body. The generated structs in `Generated/` conform to it.
public protocol KafkaMessage: Sendable, Equatable {
    static var apiKey: Int16 { get }
    /// The versions this codec decodes and encodes.
    static var versions: ClosedRange<Int16> { get }
    /// The first version with compact strings/arrays and tagged fields, if any.
    static var firstFlexibleVersion: Int16? { get }

    init()
    init(from buffer: inout ByteBuffer, version: Int16) throws
    func encode(into buffer: inout ByteBuffer, version: Int16)
}

extension KafkaMessage {
    public static func isFlexible(_ version: Int16) -> Bool {
        guard let first = firstFlexibleVersion else { return false }
        return version >= first
    }
}
