import KafkaProtocol
import NIOCore

// `codec-check`: the Swift half of tests/test_codec_crosscheck.py, which compares the
// generated codecs with kafka-python's. It reads one JSON request per line on stdin and
// writes one JSON answer per line on stdout, in order:
//
//   {"op":"apis"}
//     -> {"apis":[{"key":0,"min":3,"max":11,"request":"ProduceRequest","response":"ProduceResponse"},...]}
//   {"op":"encode","api":0,"version":9,"kind":"request","value":{...}}
//     -> {"hex":"..."} | {"error":"..."}
//   {"op":"decode","api":0,"version":9,"kind":"request","hex":"..."}
//     -> {"value":{...}} | {"error":"..."}
//
// Values use Kafka's field names (`TopicData`) and carry exactly the fields present at the
// version; bytes are hex, UUIDs 8-4-4-4-12. A decode that leaves bytes unread is an error.
// The JSON conversions are generated (`Generated/`) by tools/gen_messages.py.

func answer(_ line: String) -> JSONValue {
    do {
        let request = try JSONValue.parse(line)
        guard case let .string(op)? = request["op"] else { throw JSONError("no op") }
        if op == "apis" {
            return .object([("apis", .array(ApiKey.allCases.map { api in
                .object([
                    ("key", .int(Int64(api.rawValue))),
                    ("min", .int(Int64(api.versions.lowerBound))),
                    ("max", .int(Int64(api.versions.upperBound))),
                    ("request", .string(String(describing: api.messageTypes.request))),
                    ("response", .string(String(describing: api.messageTypes.response))),
                ])
            }))])
        }
        guard case let .int(key)? = request["api"], let key16 = Int16(exactly: key), let api = ApiKey(rawValue: key16) else {
            throw JSONError("unknown api")
        }
        guard case let .int(v)? = request["version"], let version = Int16(exactly: v), api.versions.contains(version) else {
            throw JSONError("version outside \(api.versions)")
        }
        let type: any KafkaMessage.Type
        switch request["kind"] {
        case .string("request")?: type = api.messageTypes.request
        case .string("response")?: type = api.messageTypes.response
        default: throw JSONError("kind must be request or response")
        }
        guard let codec = type as? any (KafkaMessage & JSONConvertible).Type else {
            throw JSONError("\(type) has no JSON conversion")
        }
        switch op {
        case "encode":
            guard let value = request["value"] else { throw JSONError("no value") }
            return .object([("hex", .string(Hex.encode(try encode(codec, value, version).readableBytesView)))])
        case "decode":
            guard case let .string(hex)? = request["hex"], let bytes = Hex.decode(hex) else { throw JSONError("no hex") }
            return .object([("value", try decode(codec, ByteBuffer(bytes: bytes), version))])
        default:
            throw JSONError("unknown op \(op)")
        }
    } catch {
        return .object([("error", .string("\(error)"))])
    }
}

func encode<M: KafkaMessage & JSONConvertible>(_: M.Type, _ json: JSONValue, _ version: Int16) throws -> ByteBuffer {
    let message = try M(jsonValue: json, version: version)
    var buffer = ByteBuffer()
    message.encode(into: &buffer, version: version)
    return buffer
}

func decode<M: KafkaMessage & JSONConvertible>(_: M.Type, _ bytes: ByteBuffer, _ version: Int16) throws -> JSONValue {
    var buffer = bytes
    let message = try M(from: &buffer, version: version)
    guard buffer.readableBytes == 0 else {
        throw JSONError("\(buffer.readableBytes) of \(bytes.readableBytes) bytes left after decoding")
    }
    return message.jsonValue(version: version)
}

while let line = readLine() {
    if line.isEmpty { continue }
    print(answer(line).text)
}
