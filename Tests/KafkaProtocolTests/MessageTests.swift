import KafkaProtocol
import NIOCore
import Testing

/// Round trips of generated codecs at every version they serve.
@Suite struct MessageTests {
    static func roundTrip<M: KafkaMessage>(_ m: M, _ v: Int16) throws -> M {
        var b = ByteBuffer()
        m.encode(into: &b, version: v)
        let decoded = try M(from: &b, version: v)
        #expect(b.readableBytes == 0, "\(M.self) v\(v) left \(b.readableBytes) bytes")
        var again = ByteBuffer()
        decoded.encode(into: &again, version: v)
        var first = ByteBuffer()
        m.encode(into: &first, version: v)
        #expect(first == again, "\(M.self) v\(v) re-encodes differently")
        return decoded
    }

    static let all: [any KafkaMessage.Type] = ApiKey.allCases.flatMap { [$0.messageTypes.request, $0.messageTypes.response] }

    @Test func everyApiHasItsCodecs() {
        for api in ApiKey.allCases {
            #expect(api.messageTypes.request.apiKey == api.rawValue)
            #expect(api.messageTypes.response.versions == api.versions)
        }
        #expect(Self.all.count == 2 * ApiKey.allCases.count)
    }

    @Test func truncatedDefaultsThrowAtEveryLength() throws {
        func check<M: KafkaMessage>(_: M.Type) throws {
            for v in M.versions {
                var full = ByteBuffer()
                M().encode(into: &full, version: v)
                for cut in 0..<full.readableBytes {
                    var partial = full.getSlice(at: 0, length: cut)!
                    #expect(throws: ProtocolError.self, "\(M.self) v\(v) cut at \(cut)") { _ = try M(from: &partial, version: v) }
                }
            }
        }
        for t in Self.all { try check(t) }
    }

    @Test func defaultsRoundTripAtEveryVersion() throws {
        func check<M: KafkaMessage>(_: M.Type) throws {
            for v in M.versions { _ = try Self.roundTrip(M(), v) }
        }
        for t in Self.all { try check(t) }
    }

    @Test func truncatedInputThrowsAtEveryLength() throws {
        var m = ProduceRequest()
        m.transactionalId = nil
        m.acks = -1
        m.timeoutMs = 1000
        var t = ProduceRequest.TopicProduceData()
        t.name = "orders"
        var p = ProduceRequest.TopicProduceData.PartitionProduceData()
        p.index = 3
        p.records = ByteBuffer(bytes: Array(repeating: 7, count: 40))
        t.partitionData = [p]
        m.topicData = [t]
        for v in ProduceRequest.versions {
            var full = ByteBuffer()
            m.encode(into: &full, version: v)
            for cut in 0..<full.readableBytes {
                var partial = full.getSlice(at: 0, length: cut)!
                #expect(throws: ProtocolError.self) { _ = try ProduceRequest(from: &partial, version: v) }
            }
        }
    }

    @Test func produceRequestKeepsFieldsAcrossVersions() throws {
        var m = ProduceRequest()
        m.acks = -1
        m.timeoutMs = 30000
        var t = ProduceRequest.TopicProduceData()
        t.name = "orders"
        var p = ProduceRequest.TopicProduceData.PartitionProduceData()
        p.index = 2
        p.records = ByteBuffer(bytes: [1, 2, 3])
        t.partitionData = [p]
        m.topicData = [t]
        for v in ProduceRequest.versions {
            let d = try Self.roundTrip(m, v)
            #expect(d == m)
        }
    }

    @Test func metadataResponseTaggedAndNullable() throws {
        var m = MetadataResponse()
        var b = MetadataResponse.MetadataResponseBroker()
        b.nodeId = 1
        b.host = "localhost"
        b.port = 9092
        b.rack = nil
        m.brokers = [b]
        m.clusterId = "c1"
        m.controllerId = 1
        var t = MetadataResponse.MetadataResponseTopic()
        t.name = "x"
        t.topicId = KafkaUUID(high: 5, low: 6)
        var p = MetadataResponse.MetadataResponseTopic.MetadataResponsePartition()
        p.leaderEpoch = 4
        p.replicaNodes = [1]
        p.isrNodes = [1]
        t.partitions = [p]
        m.topics = [t]
        let d = try Self.roundTrip(m, 12)
        #expect(d.topics[0].topicId == KafkaUUID(high: 5, low: 6))
        #expect(d.topics[0].partitions[0].leaderEpoch == 4)
        #expect(d.brokers[0].rack == nil)
        // v0 has no topic id, leader epoch or cluster id: they fall back to defaults.
        let old = try Self.roundTrip(m, 0)
        #expect(old.topics[0].partitions[0].leaderEpoch == -1)
        #expect(old.clusterId == nil)
    }

    @Test func unknownTaggedFieldsAreSkipped() throws {
        var b = ByteBuffer()
        b.writeKafkaString("client", compact: true)
        b.writeKafkaString("1.0", compact: true)
        b.writeUnsignedVarint(2)
        b.writeTaggedField(tag: 90) { $0.writeInteger(UInt64(1)) }
        b.writeTaggedField(tag: 91) { $0.writeString("xyz") }
        let r = try ApiVersionsRequest(from: &b, version: 3)
        #expect(r.clientSoftwareName == "client")
        #expect(b.readableBytes == 0)
    }
}
