import KafkaProtocol
import NIOCore
import Testing

/// Request frames captured from real clients, decoded with our codecs.
///
/// How they were captured: a throwaway Python proxy (asyncio, 127.0.0.1) sat between each
/// client and a `tern serve` broker started with `--advertise` set to the proxy's address, so
/// every connection (bootstrap, leader, coordinator) went through it; it recorded each
/// client→broker frame (4-byte size + body) exactly as sent. Each client fetched metadata,
/// created its topic `fx-<client>` (1 partition; kcat's is auto-created by its metadata
/// request), produced two uncompressed records to partition 0 (keys `k1`/`k2`, values
/// `v1`/`v2`, one header `hk=hv`), consumed them from the beginning with assign() (which lists
/// offsets to resolve "beginning"), committed offset 2 for its group and read it back
/// (confluent-kafka and kafka-python also listed offsets explicitly). kcat has no assign-and-
/// commit call: its OffsetFetch and OffsetCommit come from a legacy consumer run
/// (`kcat -C -p 0 -o stored -X group.id=kcat-group -X offset.store.method=broker`, auto commit).
/// One frame is kept per client, API and version: the Metadata request that names the topic,
/// the first Fetch (offset 0), the Produce carrying both records.
///
/// Clients (captured 2026-11-23):
/// - kcat 1.7.1 with librdkafka 2.0.2 (Debian package), client.id `kcat-fx`
/// - confluent-kafka (Python) 2.16.1 with its bundled librdkafka 2.16.0, client.id `confluent-fx`
/// - kafka-python 3.0.12, client_id `kafka-python-fx`
/// - aiokafka 0.14.0, client_id `aiokafka-fx`
///
/// Each test checks: the frame size, the header (API key, version, client id) and that it
/// re-encodes to the same bytes, the body's fields, that decoding consumed the whole body, and
/// that re-encoding the decoded body at the same version gives back the captured bytes.
@Suite struct ClientFixtureTests {
    // MARK: - Helpers

    static func bytes(_ hex: String) -> [UInt8] {
        let digits = hex.unicodeScalars.filter { !$0.properties.isWhitespace }.map { UInt8(String($0), radix: 16)! }
        precondition(digits.count % 2 == 0, "odd hex length")
        return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }

    static func hex(_ b: ByteBuffer) -> String {
        let d = Array("0123456789abcdef")
        return String(b.readableBytesView.flatMap { [d[Int($0 >> 4)], d[Int($0 & 0xf)]] })
    }

    /// Splits a captured frame, decodes its header and body as `M`, and checks the size prefix,
    /// that the body was consumed and that header and body re-encode to the captured bytes.
    static func decode<M: KafkaMessage>(
        _ fixture: String, as _: M.Type, clientId: String, reencodes: Bool = true,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (header: RequestHeader, message: M) {
        var frame = ByteBuffer(bytes: bytes(fixture))
        let size = frame.readInteger(as: Int32.self)
        #expect(size.map(Int.init) == frame.readableBytes, "size prefix", sourceLocation: sourceLocation)
        let peeked = try #require(RequestHeader.peek(frame), sourceLocation: sourceLocation)
        #expect(peeked.apiKey == M.apiKey, sourceLocation: sourceLocation)
        #expect(M.versions.contains(peeked.apiVersion), "v\(peeked.apiVersion) outside \(M.versions)", sourceLocation: sourceLocation)
        let flexible = M.isFlexible(peeked.apiVersion)

        let beforeHeader = frame
        let header = try RequestHeader(from: &frame, flexible: flexible)
        let headerBytes = try #require(
            beforeHeader.getSlice(at: beforeHeader.readerIndex, length: frame.readerIndex - beforeHeader.readerIndex),
            sourceLocation: sourceLocation)
        #expect(header.apiKey == M.apiKey, sourceLocation: sourceLocation)
        #expect(header.apiVersion == peeked.apiVersion, sourceLocation: sourceLocation)
        #expect(header.clientId == clientId, sourceLocation: sourceLocation)
        var headerAgain = ByteBuffer()
        header.encode(into: &headerAgain, flexible: flexible)
        #expect(hex(headerAgain) == hex(headerBytes), "header re-encodes differently", sourceLocation: sourceLocation)

        let body = frame
        let message = try M(from: &frame, version: header.apiVersion)
        #expect(frame.readableBytes == 0, "\(M.self) v\(header.apiVersion) left \(frame.readableBytes) bytes", sourceLocation: sourceLocation)
        if reencodes {
            var again = ByteBuffer()
            message.encode(into: &again, version: header.apiVersion)
            #expect(hex(again) == hex(body), "\(M.self) v\(header.apiVersion) re-encodes differently", sourceLocation: sourceLocation)
        }
        return (header, message)
    }

    /// The two records every client produced, checked after the batch validates.
    static func expectProducedRecords(
        _ records: ByteBuffer?, producerId: Int64 = -1, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let batch = try #require(records, sourceLocation: sourceLocation)
        let h = try RecordBatch.validateSingle(batch)
        #expect(h.magic == 2, sourceLocation: sourceLocation)
        #expect(h.baseOffset == 0, sourceLocation: sourceLocation)
        #expect(h.compression == 0, sourceLocation: sourceLocation)
        #expect(h.recordCount == 2, sourceLocation: sourceLocation)
        #expect(h.lastOffsetDelta == 1, sourceLocation: sourceLocation)
        #expect(h.producerId == producerId, sourceLocation: sourceLocation)
        let rs = try Record.decodeAll(batch: batch)
        #expect(rs.count == 2, sourceLocation: sourceLocation)
        for (i, r) in rs.enumerated() {
            #expect(r.offsetDelta == Int32(i), sourceLocation: sourceLocation)
            #expect(r.key.map { String(buffer: $0) } == "k\(i + 1)", sourceLocation: sourceLocation)
            #expect(r.value.map { String(buffer: $0) } == "v\(i + 1)", sourceLocation: sourceLocation)
            #expect(r.headers.count == 1, sourceLocation: sourceLocation)
            #expect(r.headers.first?.0 == "hk", sourceLocation: sourceLocation)
            #expect(r.headers.first?.1.map { String(buffer: $0) } == "hv", sourceLocation: sourceLocation)
        }
    }

    // MARK: - ApiVersions

    @Test func kcatApiVersionsV3() throws {
        let (h, m) = try Self.decode(Fixture.kcatApiVersionsV3, as: ApiVersionsRequest.self, clientId: "kcat-fx")
        #expect(h.apiVersion == 3)
        #expect(h.correlationId == 1)
        #expect(m.clientSoftwareName == "librdkafka")
        #expect(m.clientSoftwareVersion == "2.0.2")
    }

    @Test func confluentApiVersionsV3() throws {
        let (h, m) = try Self.decode(Fixture.confluentApiVersionsV3, as: ApiVersionsRequest.self, clientId: "confluent-fx")
        #expect(h.apiVersion == 3)
        #expect(m.clientSoftwareName == "confluent-kafka-python")
        #expect(m.clientSoftwareVersion == "2.16.1-rdkafka-2.16.0")
    }

    @Test func kafkaPythonApiVersionsV4() throws {
        let (h, m) = try Self.decode(Fixture.kafkaPythonApiVersionsV4, as: ApiVersionsRequest.self, clientId: "kafka-python-fx")
        #expect(h.apiVersion == 4)
        #expect(m.clientSoftwareName == "kafka-python")
        #expect(m.clientSoftwareVersion == "3.0.12")
    }

    @Test func aiokafkaApiVersionsV0() throws {
        // v0 has an empty body.
        let (h, m) = try Self.decode(Fixture.aiokafkaApiVersionsV0, as: ApiVersionsRequest.self, clientId: "aiokafka-fx")
        #expect(h.apiVersion == 0)
        #expect(m == ApiVersionsRequest())
    }

    // MARK: - Metadata

    @Test func kcatMetadataV4() throws {
        let (h, m) = try Self.decode(Fixture.kcatMetadataV4, as: MetadataRequest.self, clientId: "kcat-fx")
        #expect(h.apiVersion == 4)
        #expect(m.topics?.map(\.name) == ["fx-kcat"])
        #expect(m.allowAutoTopicCreation)
    }

    @Test func confluentMetadataV12() throws {
        let (h, m) = try Self.decode(Fixture.confluentMetadataV12, as: MetadataRequest.self, clientId: "confluent-fx")
        #expect(h.apiVersion == 12)
        #expect(m.topics?.map(\.name) == ["fx-confluent"])
        #expect(m.topics?.first?.topicId == .zero)
        #expect(m.allowAutoTopicCreation)
        #expect(!m.includeTopicAuthorizedOperations)
    }

    @Test func kafkaPythonMetadataV12() throws {
        let (h, m) = try Self.decode(Fixture.kafkaPythonMetadataV12, as: MetadataRequest.self, clientId: "kafka-python-fx")
        #expect(h.apiVersion == 12)
        #expect(m.topics?.map(\.name) == ["fx-kafkapython"])
        #expect(m.topics?.first?.topicId == .zero)
        #expect(m.allowAutoTopicCreation)
        #expect(!m.includeTopicAuthorizedOperations)
    }

    @Test func aiokafkaMetadataV5() throws {
        let (h, m) = try Self.decode(Fixture.aiokafkaMetadataV5, as: MetadataRequest.self, clientId: "aiokafka-fx")
        #expect(h.apiVersion == 5)
        #expect(m.topics?.map(\.name) == ["fx-aiokafka"])
        #expect(m.allowAutoTopicCreation)
    }

    // MARK: - Produce

    @Test func kcatProduceV7() throws {
        let (h, m) = try Self.decode(Fixture.kcatProduceV7, as: ProduceRequest.self, clientId: "kcat-fx")
        #expect(h.apiVersion == 7)
        #expect(m.transactionalId == nil)
        #expect(m.acks == -1)
        #expect(m.timeoutMs == 30000)
        #expect(m.topicData.map(\.name) == ["fx-kcat"])
        let p = try #require(m.topicData.first?.partitionData.first)
        #expect(m.topicData.first?.partitionData.count == 1)
        #expect(p.index == 0)
        try Self.expectProducedRecords(p.records)
    }

    @Test func confluentProduceV10() throws {
        let (h, m) = try Self.decode(Fixture.confluentProduceV10, as: ProduceRequest.self, clientId: "confluent-fx")
        #expect(h.apiVersion == 10)
        #expect(m.transactionalId == nil)
        #expect(m.acks == -1)
        #expect(m.timeoutMs == 30000)
        #expect(m.topicData.map(\.name) == ["fx-confluent"])
        let p = try #require(m.topicData.first?.partitionData.first)
        #expect(m.topicData.first?.partitionData.count == 1)
        #expect(p.index == 0)
        try Self.expectProducedRecords(p.records)
    }

    @Test func kafkaPythonProduceV9() throws {
        // kafka-python 3 is idempotent by default: the batch carries producer id 0 from InitProducerId.
        let (h, m) = try Self.decode(Fixture.kafkaPythonProduceV9, as: ProduceRequest.self, clientId: "kafka-python-fx")
        #expect(h.apiVersion == 9)
        #expect(m.transactionalId == nil)
        #expect(m.acks == -1)
        #expect(m.timeoutMs == 30000)
        #expect(m.topicData.map(\.name) == ["fx-kafkapython"])
        let p = try #require(m.topicData.first?.partitionData.first)
        #expect(m.topicData.first?.partitionData.count == 1)
        #expect(p.index == 0)
        try Self.expectProducedRecords(p.records, producerId: 0)
        let batch = try RecordBatch.validateSingle(p.records!)
        #expect(batch.producerEpoch == 0)
        #expect(batch.baseSequence == 0)
    }

    @Test func aiokafkaProduceV7() throws {
        // aiokafka leaves partitionLeaderEpoch at -1 (the others send 0) and its request timeout is 40 s.
        let (h, m) = try Self.decode(Fixture.aiokafkaProduceV7, as: ProduceRequest.self, clientId: "aiokafka-fx")
        #expect(h.apiVersion == 7)
        #expect(m.transactionalId == nil)
        #expect(m.acks == -1)
        #expect(m.timeoutMs == 40000)
        #expect(m.topicData.map(\.name) == ["fx-aiokafka"])
        let p = try #require(m.topicData.first?.partitionData.first)
        #expect(m.topicData.first?.partitionData.count == 1)
        #expect(p.index == 0)
        try Self.expectProducedRecords(p.records)
        #expect(try RecordBatch.validateSingle(p.records!).partitionLeaderEpoch == -1)
    }

    // MARK: - Fetch

    /// What differs between the clients' first fetches; the rest (500 ms wait, 1 byte
    /// minimum, 50 MiB maximum, offset 0 of partition 0, 1 MiB per partition, no session,
    /// no forgotten topics, no rack) is the same for all four.
    struct FetchCase: Sendable, CustomStringConvertible {
        var name: String
        var hex: String
        var clientId: String
        var version: Int16
        var topic: String
        var isolationLevel: Int8  // librdkafka defaults to read_committed
        var sessionEpoch: Int32  // kafka-python opens a session (0); the others send -1
        var currentLeaderEpoch: Int32
        var description: String { name }
    }

    static let fetchCases: [FetchCase] = [
        .init(name: "kcat v11", hex: Fixture.kcatFetchV11, clientId: "kcat-fx", version: 11, topic: "fx-kcat",
              isolationLevel: 1, sessionEpoch: -1, currentLeaderEpoch: -1),
        .init(name: "confluent v12", hex: Fixture.confluentFetchV12, clientId: "confluent-fx", version: 12, topic: "fx-confluent",
              isolationLevel: 1, sessionEpoch: -1, currentLeaderEpoch: 1),
        .init(name: "kafka-python v12", hex: Fixture.kafkaPythonFetchV12, clientId: "kafka-python-fx", version: 12, topic: "fx-kafkapython",
              isolationLevel: 0, sessionEpoch: 0, currentLeaderEpoch: 1),
        .init(name: "aiokafka v11", hex: Fixture.aiokafkaFetchV11, clientId: "aiokafka-fx", version: 11, topic: "fx-aiokafka",
              isolationLevel: 0, sessionEpoch: -1, currentLeaderEpoch: -1),
    ]

    @Test(arguments: fetchCases)
    func fetch(_ c: FetchCase) throws {
        let (h, m) = try Self.decode(c.hex, as: FetchRequest.self, clientId: c.clientId)
        #expect(h.apiVersion == c.version)
        #expect(m.replicaId == -1)
        #expect(m.maxWaitMs == 500)
        #expect(m.minBytes == 1)
        #expect(m.maxBytes == 52_428_800)
        #expect(m.isolationLevel == c.isolationLevel)
        #expect(m.sessionId == 0)
        #expect(m.sessionEpoch == c.sessionEpoch)
        #expect(m.topics.map(\.topic) == [c.topic])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(m.topics.first?.partitions.count == 1)
        #expect(p.partition == 0)
        #expect(p.currentLeaderEpoch == c.currentLeaderEpoch)
        #expect(p.fetchOffset == 0)
        #expect(p.logStartOffset == -1)
        #expect(p.partitionMaxBytes == 1_048_576)
        if c.version >= 12 {
            #expect(p.lastFetchedEpoch == -1)
            #expect(m.clusterId == nil)
        }
        #expect(m.forgottenTopicsData.isEmpty)
        #expect(m.rackId == "")
    }

    // MARK: - ListOffsets

    @Test func kcatListOffsetsV2() throws {
        let (h, m) = try Self.decode(Fixture.kcatListOffsetsV2, as: ListOffsetsRequest.self, clientId: "kcat-fx")
        #expect(h.apiVersion == 2)
        #expect(m.replicaId == -1)
        #expect(m.isolationLevel == 1)
        #expect(m.topics.map(\.name) == ["fx-kcat"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.timestamp == -2)  // earliest
    }

    @Test func confluentListOffsetsV7() throws {
        let (h, m) = try Self.decode(Fixture.confluentListOffsetsV7, as: ListOffsetsRequest.self, clientId: "confluent-fx")
        #expect(h.apiVersion == 7)
        #expect(m.replicaId == -1)
        #expect(m.isolationLevel == 1)
        #expect(m.topics.map(\.name) == ["fx-confluent"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.currentLeaderEpoch == 1)
        #expect(p.timestamp == -2)
    }

    @Test func kafkaPythonListOffsetsV8() throws {
        let (h, m) = try Self.decode(Fixture.kafkaPythonListOffsetsV8, as: ListOffsetsRequest.self, clientId: "kafka-python-fx")
        #expect(h.apiVersion == 8)
        #expect(m.replicaId == -1)
        #expect(m.isolationLevel == 0)
        #expect(m.topics.map(\.name) == ["fx-kafkapython"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.currentLeaderEpoch == -1)
        #expect(p.timestamp == -2)
    }

    @Test func aiokafkaListOffsetsV3() throws {
        let (h, m) = try Self.decode(Fixture.aiokafkaListOffsetsV3, as: ListOffsetsRequest.self, clientId: "aiokafka-fx")
        #expect(h.apiVersion == 3)
        #expect(m.replicaId == -1)
        #expect(m.isolationLevel == 0)
        #expect(m.topics.map(\.name) == ["fx-aiokafka"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.timestamp == -2)
    }

    // MARK: - OffsetCommit

    @Test func kcatOffsetCommitV7() throws {
        let (h, m) = try Self.decode(Fixture.kcatOffsetCommitV7, as: OffsetCommitRequest.self, clientId: "kcat-fx")
        #expect(h.apiVersion == 7)
        #expect(m.groupId == "kcat-group")
        #expect(m.generationIdOrMemberEpoch == -1)
        #expect(m.memberId == "")
        #expect(m.groupInstanceId == nil)
        #expect(m.topics.map(\.name) == ["fx-kcat"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.committedOffset == 2)
        #expect(p.committedLeaderEpoch == -1)
        #expect(p.committedMetadata == "")
    }

    @Test func confluentOffsetCommitV9() throws {
        let (h, m) = try Self.decode(Fixture.confluentOffsetCommitV9, as: OffsetCommitRequest.self, clientId: "confluent-fx")
        #expect(h.apiVersion == 9)
        #expect(m.groupId == "confluent-group")
        #expect(m.generationIdOrMemberEpoch == -1)
        #expect(m.memberId == "")
        #expect(m.groupInstanceId == nil)
        #expect(m.topics.map(\.name) == ["fx-confluent"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.committedOffset == 2)
        #expect(p.committedLeaderEpoch == 1)
        #expect(p.committedMetadata == "")
    }

    @Test func kafkaPythonOffsetCommitV8() throws {
        let (h, m) = try Self.decode(Fixture.kafkaPythonOffsetCommitV8, as: OffsetCommitRequest.self, clientId: "kafka-python-fx")
        #expect(h.apiVersion == 8)
        #expect(m.groupId == "kafka-python-group")
        #expect(m.generationIdOrMemberEpoch == -1)
        #expect(m.memberId == "")
        #expect(m.groupInstanceId == nil)
        #expect(m.topics.map(\.name) == ["fx-kafkapython"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.committedOffset == 2)
        #expect(p.committedLeaderEpoch == -1)
        #expect(p.committedMetadata == "")
    }

    @Test func aiokafkaOffsetCommitV3() throws {
        let (h, m) = try Self.decode(Fixture.aiokafkaOffsetCommitV3, as: OffsetCommitRequest.self, clientId: "aiokafka-fx")
        #expect(h.apiVersion == 3)
        #expect(m.groupId == "aiokafka-group")
        #expect(m.generationIdOrMemberEpoch == -1)
        #expect(m.memberId == "")
        #expect(m.retentionTimeMs == -1)
        #expect(m.topics.map(\.name) == ["fx-aiokafka"])
        let p = try #require(m.topics.first?.partitions.first)
        #expect(p.partitionIndex == 0)
        #expect(p.committedOffset == 2)
        #expect(p.committedMetadata == "")
    }

    // MARK: - OffsetFetch

    @Test func kcatOffsetFetchV7() throws {
        let (h, m) = try Self.decode(Fixture.kcatOffsetFetchV7, as: OffsetFetchRequest.self, clientId: "kcat-fx")
        #expect(h.apiVersion == 7)
        #expect(m.groupId == "kcat-group")
        #expect(m.topics?.map(\.name) == ["fx-kcat"])
        #expect(m.topics?.first?.partitionIndexes == [0])
        #expect(m.requireStable)  // librdkafka asks for stable offsets under read_committed
    }

    @Test func confluentOffsetFetchV9() throws {
        // v8+ carries groups in an array.
        let (h, m) = try Self.decode(Fixture.confluentOffsetFetchV9, as: OffsetFetchRequest.self, clientId: "confluent-fx")
        #expect(h.apiVersion == 9)
        let g = try #require(m.groups.first)
        #expect(m.groups.count == 1)
        #expect(g.groupId == "confluent-group")
        #expect(g.memberId == nil)
        #expect(g.memberEpoch == -1)
        #expect(g.topics?.map(\.name) == ["fx-confluent"])
        #expect(g.topics?.first?.partitionIndexes == [0])
        #expect(m.requireStable)
    }

    @Test func kafkaPythonOffsetFetchV8() throws {
        let (h, m) = try Self.decode(Fixture.kafkaPythonOffsetFetchV8, as: OffsetFetchRequest.self, clientId: "kafka-python-fx")
        #expect(h.apiVersion == 8)
        let g = try #require(m.groups.first)
        #expect(m.groups.count == 1)
        #expect(g.groupId == "kafka-python-group")
        #expect(g.topics?.map(\.name) == ["fx-kafkapython"])
        #expect(g.topics?.first?.partitionIndexes == [0])
        #expect(!m.requireStable)
    }

    @Test func aiokafkaOffsetFetchV3() throws {
        let (h, m) = try Self.decode(Fixture.aiokafkaOffsetFetchV3, as: OffsetFetchRequest.self, clientId: "aiokafka-fx")
        #expect(h.apiVersion == 3)
        #expect(m.groupId == "aiokafka-group")
        #expect(m.topics?.map(\.name) == ["fx-aiokafka"])
        #expect(m.topics?.first?.partitionIndexes == [0])
    }
}

/// Captured frames (4-byte size + header + body), named client + API + version.
enum Fixture {
    static let kcatApiVersionsV3 = "00000024001200030000000100076b6361742d6678000b6c696272646b61666b6106322e302e3200"
    static let kcatMetadataV4 = "0000001f000300040000000200076b6361742d667800000001000766782d6b63617401"
    static let kcatProduceV7 = """
        00000091000000070000000300076b6361742d6678ffffffff0000753000000001000766782d6b636174000000010000
        00000000005f0000000000000000000000530000000002b0855f8f000000000001000001a208867ffa000001a208867f
        faffffffffffffffffffffffffffff0000000220000000046b310476310204686b04687620000002046b320476320204
        686b046876
        """
    static let kcatListOffsetsV2 = """
        00000033000200020000000500076b6361742d6678ffffffff0100000001000766782d6b6361740000000100000000ff
        fffffffffffffe
        """
    static let kcatFetchV11 = """
        0000005d0001000b0000000700076b6361742d6678ffffffff000001f400000001032000000100000000ffffffff0000
        0001000766782d6b6361740000000100000000ffffffff0000000000000000ffffffffffffffff001000000000000000
        00
        """
    static let kcatOffsetCommitV7 = """
        00000048000800070000000300076b6361742d6678000a6b6361742d67726f7570ffffffff0000ffff00000001000766
        782d6b63617400000001000000000000000000000002ffffffff0000
        """
    static let kcatOffsetFetchV7 = """
        0000002e000900070000000200076b6361742d6678000b6b6361742d67726f7570020866782d6b636174020000000000
        0100
        """
    static let confluentApiVersionsV3 = """
        000000450012000300000001000c636f6e666c75656e742d66780017636f6e666c75656e742d6b61666b612d70797468
        6f6e16322e31362e312d72646b61666b612d322e31362e3000
        """
    static let confluentMetadataV12 = """
        000000390003000c00000002000c636f6e666c75656e742d66780002000000000000000000000000000000000d66782d
        636f6e666c75656e7400010000
        """
    static let confluentProduceV10 = """
        000000940000000a00000002000c636f6e666c75656e742d66780000ffff00007530020d66782d636f6e666c75656e74
        0200000000600000000000000000000000530000000002b4503645000000000001000001a2088717c1000001a2088717
        c1ffffffffffffffffffffffffffff0000000220000000046b310476310204686b04687620000002046b320476320204
        686b046876000000
        """
    static let confluentListOffsetsV7 = """
        0000003e0002000700000003000c636f6e666c75656e742d667800ffffffff01020d66782d636f6e666c75656e740200
        00000000000001fffffffffffffffe000000
        """
    static let confluentFetchV12 = """
        000000640001000c00000004000c636f6e666c75656e742d667800ffffffff000001f400000001032000000100000000
        ffffffff020d66782d636f6e666c75656e740200000000000000010000000000000000ffffffffffffffffffffffff00
        1000000000010100
        """
    static let confluentOffsetCommitV9 = """
        000000500008000900000002000c636f6e666c75656e742d66780010636f6e666c75656e742d67726f7570ffffffff01
        00020d66782d636f6e666c75656e74020000000000000000000000020000000101000000
        """
    static let confluentOffsetFetchV9 = """
        000000440009000900000003000c636f6e666c75656e742d6678000210636f6e666c75656e742d67726f757000ffffff
        ff020d66782d636f6e666c75656e74020000000000000100
        """
    static let kafkaPythonApiVersionsV4 = """
        0000002f0012000400000001000f6b61666b612d707974686f6e2d6678000d6b61666b612d707974686f6e07332e302e
        313200
        """
    static let kafkaPythonMetadataV12 = """
        0000003e0003000c00000003000f6b61666b612d707974686f6e2d66780002000000000000000000000000000000000f
        66782d6b61666b61707974686f6e00010000
        """
    static let kafkaPythonProduceV9 = """
        000000990000000900000004000f6b61666b612d707974686f6e2d66780000ffff00007530020f66782d6b61666b6170
        7974686f6e0200000000600000000000000000000000530000000002c6e572a0000000000001000001a208874b4c0000
        01a208874b4d00000000000000000000000000000000000220000000046b310476310204686b04687620000202046b32
        0476320204686b046876000000
        """
    static let kafkaPythonListOffsetsV8 = """
        000000430002000800000004000f6b61666b612d707974686f6e2d667800ffffffff00020f66782d6b61666b61707974
        686f6e0200000000fffffffffffffffffffffffe000000
        """
    static let kafkaPythonFetchV12 = """
        000000690001000c00000005000f6b61666b612d707974686f6e2d667800ffffffff000001f400000001032000000000
        00000000000000020f66782d6b61666b61707974686f6e0200000000000000010000000000000000ffffffffffffffff
        ffffffff001000000000010100
        """
    static let kafkaPythonOffsetCommitV8 = """
        000000580008000800000002000f6b61666b612d707974686f6e2d667800136b61666b612d707974686f6e2d67726f75
        70ffffffff0100020f66782d6b61666b61707974686f6e02000000000000000000000002ffffffff01000000
        """
    static let kafkaPythonOffsetFetchV8 = """
        000000470009000800000003000f6b61666b612d707974686f6e2d66780002136b61666b612d707974686f6e2d67726f
        7570020f66782d6b61666b61707974686f6e020000000000000000
        """
    static let aiokafkaApiVersionsV0 = "000000150012000000000001000b61696f6b61666b612d6678"
    static let aiokafkaMetadataV5 = "000000270003000500000002000b61696f6b61666b612d667800000001000b66782d61696f6b61666b6101"
    static let aiokafkaProduceV7 = """
        000000990000000700000003000b61696f6b61666b612d6678ffffffff00009c4000000001000b66782d61696f6b6166
        6b6100000001000000000000005f000000000000000000000053ffffffff02781c436d000000000001000001a2088771
        cf000001a2088771cfffffffffffffffffffff000000000000000220000000046b310476310204686b04687620000002
        046b320476320204686b046876
        """
    static let aiokafkaListOffsetsV3 = """
        0000003b0002000300000004000b61696f6b61666b612d6678ffffffff0000000001000b66782d61696f6b61666b6100
        00000100000000fffffffffffffffe
        """
    static let aiokafkaFetchV11 = """
        000000650001000b00000005000b61696f6b61666b612d6678ffffffff000001f400000001032000000000000000ffff
        ffff00000001000b66782d61696f6b61666b610000000100000000ffffffff0000000000000000ffffffffffffffff00
        100000000000000000
        """
    static let aiokafkaOffsetCommitV3 = """
        000000560008000300000002000b61696f6b61666b612d6678000e61696f6b61666b612d67726f7570ffffffff0000ff
        ffffffffffffff00000001000b66782d61696f6b61666b61000000010000000000000000000000020000
        """
    static let aiokafkaOffsetFetchV3 = """
        0000003e0009000300000003000b61696f6b61666b612d6678000e61696f6b61666b612d67726f757000000001000b66
        782d61696f6b61666b610000000100000000
        """
}
