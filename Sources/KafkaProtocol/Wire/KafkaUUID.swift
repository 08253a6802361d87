/// A Kafka UUID (topic ids): 16 bytes, printed in Kafka's URL-safe base64 form.
public struct KafkaUUID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static let zero = KafkaUUID(high: 0, low: 0)

    /// A random version-4 UUID.
    public static func random() -> KafkaUUID {
        var g = SystemRandomNumberGenerator()
        var high = g.next() as UInt64
        var low = g.next() as UInt64
        high = (high & ~0xF000) | 0x4000
        low = (low & ~(0xC000_0000_0000_0000)) | 0x8000_0000_0000_0000
        return KafkaUUID(high: high, low: low)
    }

    /// The 16 bytes, big-endian.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// Kafka prints UUIDs as unpadded URL-safe base64 (`Uuid.toString()`).
    public var description: String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        let b = bytes
        var out: [UInt8] = []
        var i = 0
        while i + 3 <= b.count {
            let n = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let n = UInt32(b[15]) << 16
        out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)]]
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses the 32-hex-digit form (with or without dashes), as stored in the metadata store.
    public init?(hex: String) {
        let digits = hex.filter { $0 != "-" }
        guard digits.count == 32, let h = UInt64(digits.prefix(16), radix: 16),
              let l = UInt64(digits.suffix(16), radix: 16) else { return nil }
        self.init(high: h, low: l)
    }

    public var hex: String {
        func pad(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        return pad(high) + pad(low)
    }
}
