import KafkaClient
import KafkaProtocol
import NIOCore
import Testing

/// Bytes from another implementation: kafka-python 3.0.12's `ConsumerProtocolAssignment`
/// (built from Kafka's JSON definition), encoded with
///
///     from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment as A
///     TP = A.TopicPartition
///     A(version=0, assigned_partitions=[TP(topic='orders', partitions=[0, 2])], user_data=None).encode().hex()
///
/// and likewise for the other versions below.
private let kafkaPythonFixtures: [(String, String, ConsumerProtocolAssignment)] = [
    ("v0", "00000000000100066f7264657273000000020000000000000002ffffffff",
     ConsumerProtocolAssignment(version: 0, topics: [.init(name: "orders", partitions: [0, 2])], userData: nil)),
    ("v1", "00010000000200066f7264657273000000010000000100087061796d656e747300000003000000000000000300000005000000020102",
     ConsumerProtocolAssignment(version: 1, topics: [.init(name: "orders", partitions: [1]), .init(name: "payments", partitions: [0, 3, 5])],
                                userData: [1, 2])),
    ("v2", "00020000000000000000", ConsumerProtocolAssignment(version: 2, topics: [], userData: [])),
    ("v3", "0003000000010001740000000100000007ffffffff",
     ConsumerProtocolAssignment(version: 3, topics: [.init(name: "t", partitions: [7])], userData: nil)),
]

private func bytes(_ hex: String) -> ByteBuffer {
    var b = ByteBuffer()
    var chars = Array(hex.utf8)[...]
    while chars.count >= 2 {
        b.writeInteger(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
        chars = chars.dropFirst(2)
    }
    return b
}

@Suite struct ConsumerProtocolAssignmentTests {
    @Test(arguments: kafkaPythonFixtures.map(\.0))
    func decodesWhatKafkaPythonEncodes(_ name: String) throws {
        let (_, hex, expected) = kafkaPythonFixtures.first { $0.0 == name }!
        #expect(try ConsumerProtocolAssignment(decoding: bytes(hex)) == expected)
    }

    @Test func partitionsFlattenInOrder() throws {
        let a = try ConsumerProtocolAssignment(decoding: bytes(kafkaPythonFixtures[1].1))
        #expect(a.partitions == [TopicPartition("orders", 1), TopicPartition("payments", 0), TopicPartition("payments", 3), TopicPartition("payments", 5)])
    }

    /// A newer version is read with the v3 layout and what follows is ignored, as Kafka's
    /// ConsumerProtocol.deserializeAssignment (and kafka-python) read it.
    @Test func readsAFutureVersionWithTheLatestLayout() throws {
        let a = try ConsumerProtocolAssignment(decoding: bytes("0004" + "000000010001740000000100000007ffffffff" + "dead"))
        #expect(a == ConsumerProtocolAssignment(version: 4, topics: [.init(name: "t", partitions: [7])], userData: nil))
    }

    @Test(arguments: [
        ("", "cannot hold the version"),
        ("00", "cannot hold the version"),
        ("ffff00000000ffffffff", "unsupported version -1"),
        ("0000ffffffff", "null partition list"),
        ("00007fffffff", "exceeds"),                              // array count far beyond the bytes
        ("0000000000010006", "length 6 exceeds"),                 // topic name cut short
        ("00000000000100016100000003" + "00000001", "claims 3 partitions"),
        ("000000000001000161000000010000", "claims 1 partitions"),
        ("0000000000010001610000000100000001", "version 0"),     // no UserData
        ("00000000000000000010ab", "version 0"),                  // UserData longer than what is left
    ])
    func garbageIsAnErrorWithAReason(_ hex: String, _ reason: String) {
        do {
            let a = try ConsumerProtocolAssignment(decoding: bytes(hex))
            Issue.record("decoded garbage \(hex) as \(a)")
        } catch {
            #expect("\(error)".contains(reason), "\(hex): \(error)")
        }
    }

    @Test func memberAssignmentKinds() {
        #expect(MemberAssignment(consumerBytes: ByteBuffer()) == .none)
        #expect(MemberAssignment(consumerBytes: ByteBuffer()).summary == "-")
        guard case .undecodable(let n, let reason) = MemberAssignment(consumerBytes: bytes("00007fffffff")) else {
            Issue.record("garbage decoded")
            return
        }
        #expect(n == 6 && !reason.isEmpty)
        #expect(MemberAssignment(consumerBytes: bytes("00007fffffff")).summary.hasPrefix("(undecodable assignment, 6 bytes: "))
        let a = MemberAssignment(consumerBytes: bytes(kafkaPythonFixtures[1].1))
        #expect(a.summary == "orders:1;payments:0,3,5")
    }
}
