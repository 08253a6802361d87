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
    static let defaultRetentionMs: Int64 = 604_800_000
    static let defaultRetentionBytes: Int64 = -1

    static func defaults(messageMaxBytes: Int32, retentionBytes: Int64 = defaultRetentionBytes) -> [(String, String)] {
        [
            ("cleanup.policy", "delete"),
            ("compression.gzip.level", "-1"),
            ("compression.lz4.level", "9"),
            ("compression.type", "producer"),
            ("compression.zstd.level", "3"),
            ("max.message.bytes", String(messageMaxBytes)),
            // Kafka 4's defaults: any past timestamp, at most one hour ahead.
            ("message.timestamp.after.max.ms", "3600000"),
            ("message.timestamp.before.max.ms", String(Int64.max)),
            ("message.timestamp.type", "CreateTime"),
            ("retention.bytes", String(retentionBytes)),
            ("retention.ms", String(defaultRetentionMs)),
        ]
    }

    /// Checks a topic config value; returns an error message or nil.
    static func validate(_ key: String, _ value: String?) -> String? {
        guard let value else { return nil }
        switch key {
        case "cleanup.policy":
            return value.split(separator: ",").allSatisfy { ["delete", "compact"].contains($0.trimmingWhitespace()) } ? nil : "Invalid value \(value) for configuration cleanup.policy"
        case "compression.type":
            return value == "producer" || CompressionCodec(configName: value) != nil && value != "none" ? nil
                : "Invalid value \(value) for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"
        case "compression.gzip.level":
            return Int32(value).map { $0 == -1 || (1...9).contains($0) } == true ? nil : "Invalid value \(value) for configuration compression.gzip.level: Value must be between 1 and 9, or -1"
        case "compression.lz4.level":
            return Int32(value).map { (1...17).contains($0) } == true ? nil : "Invalid value \(value) for configuration compression.lz4.level: Value must be between 1 and 17"
        case "compression.zstd.level":
            return Int32(value).map { (-131072...22).contains($0) } == true ? nil : "Invalid value \(value) for configuration compression.zstd.level: Value must be between -131072 and 22"
        case "message.timestamp.after.max.ms", "message.timestamp.before.max.ms":
            return Int64(value).map { $0 >= 0 } == true ? nil : "Invalid value \(value) for configuration \(key): Value must be at least 0"
        case "max.message.bytes":
            return Int32(value).map { $0 >= 0 ? nil : "max.message.bytes must be >= 0" } ?? "Invalid value \(value) for configuration max.message.bytes"
        case "message.timestamp.type":
            return value == "CreateTime" || value == "LogAppendTime" ? nil
                : "Invalid value \(value) for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"
        case "retention.bytes", "retention.ms":
            return Int64(value) != nil ? nil : "Invalid value \(value) for configuration \(key)"
        default:
            return "Unknown topic config name: \(key)"
        }
    }
}

extension TopicState {
    /// How produced batches are validated and rewritten for this topic (Kafka's defaults
    /// where the topic sets nothing).
    func batchPolicy(produceVersion: Int16) -> BatchPolicy {
        var p = BatchPolicy()
        if let c = configs["compression.type"], c != "producer", let codec = CompressionCodec(configName: c) {
            p.codec = codec
            p.codecLevel = configs["compression.\(codec.configName).level"].flatMap { Int32($0) }
        }
        p.logAppendTime = configs["message.timestamp.type"] == "LogAppendTime"
        p.requireKeys = configs["cleanup.policy"]?.contains("compact") ?? false
        p.timestampBeforeMaxMs = configs["message.timestamp.before.max.ms"].flatMap { Int64($0) } ?? .max
        p.timestampAfterMaxMs = configs["message.timestamp.after.max.ms"].flatMap { Int64($0) } ?? 3_600_000
        p.allowZstd = produceVersion >= 7
        return p
    }

    init(_ r: TopicRecord) {
        self.init(name: r.name, id: KafkaUUID(hex: r.topicId) ?? .zero, streamIds: r.streamIds, configs: r.configs)
    }
}
