import KafkaProtocol
import NIOCore

/// A JSON value, just enough for the cross-check protocol. Integers stay exact `Int64`s
/// (a `Double` would round int64 fields), and objects keep their key order.
enum JSONValue: Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case let (.bool(x), .bool(y)): x == y
        case let (.int(x), .int(y)): x == y
        case let (.double(x), .double(y)): x == y
        case let (.string(x), .string(y)): x == y
        case let (.array(x), .array(y)): x == y
        case let (.object(x), .object(y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "bool"
        case .int: "integer"
        case .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

/// A conversion failure, with the path of field names down to the value at fault.
struct JSONError: Error, CustomStringConvertible {
    var path: [String]
    var message: String

    init(_ message: String, path: [String] = []) {
        self.message = message
        self.path = path
    }

    /// `Topics[0].Name: message`.
    var description: String {
        if path.isEmpty { return message }
        let joined = path.enumerated().map { i, p in i == 0 || p.hasPrefix("[") ? p : "." + p }.joined()
        return joined + ": " + message
    }
}

// MARK: - Conversion of message fields

/// A field value that converts to and from JSON the way the Python side of the check
/// spells it: integers as numbers, bytes and records as lowercase hex, UUIDs in the
/// 8-4-4-4-12 form, null for nil.
protocol JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws
    func jsonValue(version: Int16) -> JSONValue
}

extension JSONConvertible where Self: FixedWidthInteger {
    init(jsonValue: JSONValue, version: Int16) throws {
        guard case let .int(n) = jsonValue else { throw JSONError("expected an integer, got \(jsonValue.typeName)") }
        guard let value = Self(exactly: n) else { throw JSONError("\(n) does not fit \(Self.self)") }
        self = value
    }

    func jsonValue(version: Int16) -> JSONValue { .int(Int64(self)) }
}

extension Int8: JSONConvertible {}
extension Int16: JSONConvertible {}
extension Int32: JSONConvertible {}
extension Int64: JSONConvertible {}
extension UInt16: JSONConvertible {}

extension Bool: JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws {
        guard case let .bool(b) = jsonValue else { throw JSONError("expected a bool, got \(jsonValue.typeName)") }
        self = b
    }

    func jsonValue(version: Int16) -> JSONValue { .bool(self) }
}

extension Double: JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws {
        switch jsonValue {
        case let .double(d): self = d
        case let .int(n): self = Double(n)
        default: throw JSONError("expected a number, got \(jsonValue.typeName)")
        }
    }

    func jsonValue(version: Int16) -> JSONValue { .double(self) }
}

extension String: JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws {
        guard case let .string(s) = jsonValue else { throw JSONError("expected a string, got \(jsonValue.typeName)") }
        self = s
    }

    func jsonValue(version: Int16) -> JSONValue { .string(self) }
}

extension ByteBuffer: JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws {
        guard case let .string(s) = jsonValue, let bytes = Hex.decode(s) else {
            throw JSONError("expected a hex string, got \(jsonValue.typeName)")
        }
        self.init(bytes: bytes)
    }

    func jsonValue(version: Int16) -> JSONValue { .string(Hex.encode(readableBytesView)) }
}

extension KafkaUUID: JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws {
        guard case let .string(s) = jsonValue, s.utf8.count == 36, let uuid = KafkaUUID(hex: s) else {
            throw JSONError("expected a UUID string, got \(jsonValue)")
        }
        self = uuid
    }

    /// The form Python's `str(uuid.UUID)` prints.
    func jsonValue(version: Int16) -> JSONValue {
        var h = Array(hex)
        for i in [20, 16, 12, 8] { h.insert("-", at: i) }
        return .string(String(h))
    }
}

extension Array: JSONConvertible where Element: JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws {
        guard case let .array(items) = jsonValue else { throw JSONError("expected an array, got \(jsonValue.typeName)") }
        self = try items.enumerated().map { i, item in
            do {
                return try Element(jsonValue: item, version: version)
            } catch var e as JSONError {
                e.path.insert("[\(i)]", at: 0)
                throw e
            }
        }
    }

    func jsonValue(version: Int16) -> JSONValue { .array(map { $0.jsonValue(version: version) }) }
}

extension Optional: JSONConvertible where Wrapped: JSONConvertible {
    init(jsonValue: JSONValue, version: Int16) throws {
        self = jsonValue == .null ? nil : try Wrapped(jsonValue: jsonValue, version: version)
    }

    func jsonValue(version: Int16) -> JSONValue { map { $0.jsonValue(version: version) } ?? .null }
}

/// Builds the object for one struct (used by the generated `jsonValue(version:)`).
struct JSONObjectWriter {
    private(set) var members: [(String, JSONValue)] = []

    mutating func put(_ key: String, _ value: some JSONConvertible, version: Int16) {
        members.append((key, value.jsonValue(version: version)))
    }

    var value: JSONValue { .object(members) }
}

/// Reads the fields of one struct (used by the generated `init(jsonValue:version:)`). Every
/// key must be taken exactly once: a missing or an extra key is an error, so the two sides
/// must agree on which fields exist at a version.
struct JSONObjectReader {
    private var members: [(String, JSONValue)]
    private var taken: Set<String> = []

    init(_ json: JSONValue) throws {
        guard case let .object(members) = json else { throw JSONError("expected an object, got \(json.typeName)") }
        self.members = members
    }

    /// The value of `key`; null is accepted only when the field is nullable at this version.
    mutating func take<T: JSONConvertible>(_ key: String, version: Int16, nullable: Bool) throws -> T {
        guard let value = members.first(where: { $0.0 == key })?.1 else { throw JSONError("missing", path: [key]) }
        taken.insert(key)
        if value == .null && !nullable { throw JSONError("null but not nullable at version \(version)", path: [key]) }
        do {
            return try T(jsonValue: value, version: version)
        } catch var e as JSONError {
            e.path.insert(key, at: 0)
            throw e
        }
    }

    func finish() throws {
        let extra = members.map(\.0).filter { !taken.contains($0) }
        if !extra.isEmpty { throw JSONError("fields not in this version: \(extra.joined(separator: ", "))") }
    }
}

// MARK: - Hex

enum Hex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

// MARK: - Text

extension JSONValue {
    /// Parses one JSON document (one line of the check protocol).
    static func parse(_ text: String) throws -> JSONValue {
        var parser = JSONParser(bytes: Array(text.utf8))
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.atEnd else { throw JSONError("trailing characters at offset \(parser.offset)") }
        return value
    }

    /// Compact JSON text, UTF-8 left unescaped.
    var text: String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(n): out += String(n)
        case let .double(d):
            precondition(d.isFinite, "JSON has no non-finite numbers")
            out += "\(d)"
        case let .string(s): JSONValue.writeString(s, into: &out)
        case let .array(items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(into: &out)
            }
            out += "]"
        case let .object(members):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(key, into: &out)
                out += ":"
                value.write(into: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let h = Hex.encode([UInt8(scalar.value)])
                    out += "\\u00" + h
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var offset = 0

    var atEnd: Bool { offset == bytes.count }

    mutating func skipSpace() {
        while offset < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[offset]) { offset += 1 }
    }

    func fail(_ what: String) -> JSONError { JSONError("bad JSON at offset \(offset): \(what)") }

    mutating func expect(_ literal: String) throws {
        let l = Array(literal.utf8)
        guard offset + l.count <= bytes.count, Array(bytes[offset..<offset + l.count]) == l else { throw fail("expected \(literal)") }
        offset += l.count
    }

    mutating func value(depth: Int) throws -> JSONValue {
        guard depth < 64 else { throw fail("nested too deeply") }
        guard offset < bytes.count else { throw fail("unexpected end") }
        switch bytes[offset] {
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "["):
            offset += 1
            var items: [JSONValue] = []
            skipSpace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard offset < bytes.count else { throw fail("unterminated array") }
                if bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array(items) }
                try expect(",")
            }
        case UInt8(ascii: "{"):
            offset += 1
            var members: [(String, JSONValue)] = []
            skipSpace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object(members) }
            while true {
                skipSpace()
                guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                members.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard offset < bytes.count else { throw fail("unterminated object") }
                if bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object(members) }
                try expect(",")
            }
        default:
            return try number()
        }
    }

    mutating func number() throws -> JSONValue {
        let start = offset
        var integral = true
        while offset < bytes.count {
            let c = bytes[offset]
            if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) {
                offset += 1
            } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                integral = false
                offset += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        if integral, let n = Int64(text) { return .int(n) }
        if !integral, let d = Double(text) { return .double(d) }
        throw fail("bad number \(text)")
    }

    mutating func hex4() throws -> UInt32 {
        guard offset + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16) else {
            throw fail("bad \\u escape")
        }
        offset += 4
        return v
    }

    mutating func string() throws -> String {
        offset += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var run = offset  // start of the current unescaped run
        func flush(_ end: Int) {
            scalars.append(contentsOf: String(decoding: bytes[run..<end], as: UTF8.self).unicodeScalars)
        }
        while true {
            guard offset < bytes.count else { throw fail("unterminated string") }
            let c = bytes[offset]
            if c == UInt8(ascii: "\"") {
                flush(offset)
                offset += 1
                return String(scalars)
            }
            if c != UInt8(ascii: "\\") {
                offset += 1
                continue
            }
            flush(offset)
            offset += 1
            guard offset < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[offset]
            offset += 1
            switch e {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{8}")
            case UInt8(ascii: "f"): scalars.append("\u{C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var v = try hex4()
                if (0xD800..<0xDC00).contains(v) {
                    try expect("\\u")
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
                    v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(v) else { throw fail("bad code point") }
                scalars.append(scalar)
            default:
                throw fail("bad escape")
            }
            run = offset
        }
    }
}
