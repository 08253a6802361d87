import KafkaProtocol
import NIOCore

/// The partitions a classic group's leader gives one consumer: the bytes of a member's
/// SyncGroup assignment, which DescribeGroups shows as `MemberAssignment` when the group's
/// protocol type is `consumer`. Kafka's `ConsumerProtocolAssignment` (versions 0-3, never
/// flexible, clients/src/main/resources/common/message/ConsumerProtocolAssignment.json):
///
///     Version             int16
///     AssignedPartitions  [Topic string, Partitions []int32]
///     UserData            nullable bytes
///
/// As Kafka's `ConsumerProtocol.deserializeAssignment`, a version above 3 is read with the v3
/// layout (later versions may only append fields, so trailing bytes are ignored) and a
/// negative version is refused.
public struct ConsumerProtocolAssignment: Sendable, Equatable {
    public struct Topic: Sendable, Equatable {
        public var name: String
        public var partitions: [Int32]

        public init(name: String, partitions: [Int32]) {
            self.name = name
            self.partitions = partitions
        }
    }

    /// Why bytes are not an assignment; `description` is meant for a person.
    public struct DecodingError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    public var version: Int16
    public var topics: [Topic]
    public var userData: [UInt8]?

    public init(version: Int16 = 0, topics: [Topic] = [], userData: [UInt8]? = nil) {
        self.version = version
        self.topics = topics
        self.userData = userData
    }

    /// Every assigned partition, in the order the leader listed them.
    public var partitions: [TopicPartition] {
        topics.flatMap { t in t.partitions.map { TopicPartition(t.name, $0) } }
    }

    /// Decodes an assignment. Lengths are checked against the bytes left before anything is
    /// allocated, so garbage fails quickly with a reason instead of trapping or allocating.
    public init(decoding bytes: ByteBuffer) throws {
        var b = bytes
        guard let version = b.readInteger(as: Int16.self) else {
            throw DecodingError("\(bytes.readableBytes) byte\(bytes.readableBytes == 1 ? "" : "s") cannot hold the version")
        }
        guard version >= 0 else { throw DecodingError("unsupported version \(version)") }
        do {
            guard let count = try b.readKafkaArrayCount(compact: false) else {
                throw DecodingError("null partition list (version \(version))")
            }
            var topics: [Topic] = []
            topics.reserveCapacity(count)
            for _ in 0..<count {
                let name = try b.readKafkaString(compact: false)
                guard let n = try b.readKafkaArrayCount(compact: false) else {
                    throw DecodingError("null partition array for topic '\(name)' (version \(version))")
                }
                guard n <= b.readableBytes / 4 else {
                    throw DecodingError("topic '\(name)' claims \(n) partitions but only \(b.readableBytes) bytes are left (version \(version))")
                }
                var partitions: [Int32] = []
                partitions.reserveCapacity(n)
                for _ in 0..<n { partitions.append(b.readInteger(as: Int32.self)!) }
                topics.append(Topic(name: name, partitions: partitions))
            }
            let userData = try b.readKafkaNullableBytes(compact: false).map { Array($0.readableBytesView) }
            self.init(version: version, topics: topics, userData: userData)
        } catch let e as ProtocolError {
            throw DecodingError("\(e.message) (version \(version))")
        }
    }
}
