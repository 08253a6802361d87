import KafkaProtocol
import Metadata
import NIOConcurrencyHelpers

/// A topic as the broker serves it.
public struct TopicState: Sendable {
    public var name: String
    public var id: KafkaUUID
    public var streamIds: [Int64]
    public var configs: [String: String]
}

/// Kafka's topic-name rules: 1-249 of `[a-zA-Z0-9._-]`, not "." or "..".
enum TopicName {
    static func isValid(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 249, name != ".", name != ".." else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }
}

/// Topic configs the broker understands, with Kafka's defaults.
enum TopicConfigs {
    static func defaults(messageMaxBytes: Int32) -> [(String, String)] {
        [
            ("cleanup.policy", "delete"),
            ("compression.type", "producer"),
            ("max.message.bytes", String(messageMaxBytes)),
            ("message.timestamp.type", "CreateTime"),
            ("retention.bytes", "-1"),
            ("retention.ms", "604800000"),
        ]
    }

    /// Checks a topic config value; returns an error message or nil.
    static func validate(_ key: String, _ value: String?) -> String? {
        guard let value else { return nil }
        switch key {
        case "cleanup.policy":
            return value.split(separator: ",").allSatisfy { ["delete", "compact"].contains($0.trimmingWhitespace()) } ? nil : "Invalid value \(value) for configuration cleanup.policy"
        case "compression.type":
            // Broker-side recompression arrives with the codecs; until then only "producer".
            return value == "producer" ? nil : "compression.type=\(value) is not supported yet; use producer"
        case "max.message.bytes":
            return Int32(value).map { $0 >= 0 ? nil : "max.message.bytes must be >= 0" } ?? "Invalid value \(value) for configuration max.message.bytes"
        case "message.timestamp.type":
            return value == "CreateTime" ? nil : "message.timestamp.type=\(value) is not supported yet; use CreateTime"
        case "retention.bytes", "retention.ms":
            return Int64(value) != nil ? nil : "Invalid value \(value) for configuration \(key)"
        default:
            return "Unknown topic config name: \(key)"
        }
    }
}

extension TopicState {
    init(_ r: TopicRecord) {
        self.init(name: r.name, id: KafkaUUID(hex: r.topicId) ?? .zero, streamIds: r.streamIds, configs: r.configs)
    }
}
