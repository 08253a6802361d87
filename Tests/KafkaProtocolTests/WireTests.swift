import KafkaProtocol
import NIOCore
import Testing

@Suite struct WireTests {
    @Test func crc32cCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        var b = ByteBuffer()
        b.writeString("123456789")
        #expect(CRC32C.checksum(b) == 0xE306_9283)
    }

    @Test(arguments: [Int32.min, -300, -1, 0, 1, 63, 64, 300, Int32.max])
    func varintRoundTrip(_ v: Int32) throws {
        var b = ByteBuffer()
        b.writeVarint(v)
        #expect(try b.readVarint() == v)
        #expect(b.readableBytes == 0)
    }

    @Test(arguments: [Int64.min, -1, 0, 1, 1 << 40, Int64.max])
    func varlongRoundTrip(_ v: Int64) throws {
        var b = ByteBuffer()
        b.writeVarlong(v)
        #expect(try b.readVarlong() == v)
    }

    @Test func overlongVarintIsRefused() {
        var b = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(throws: ProtocolError.self) { try b.readUnsignedVarint() }
    }

    @Test func lengthLargerThanBufferIsRefused() {
        var b = ByteBuffer()
        b.writeInteger(Int16(500))
        b.writeString("short")
        #expect(throws: ProtocolError.self) { try b.readKafkaString(compact: false) }
        var arrays = ByteBuffer()
        arrays.writeInteger(Int32.max)
        #expect(throws: ProtocolError.self) { try arrays.readKafkaArrayCount(compact: false) }
    }

    @Test func uuidPrintsLikeKafka() {
        // Kafka's Uuid.toString() is URL-safe base64 without padding.
        let u = KafkaUUID(high: 0, low: 1)
        #expect(u.description == "AAAAAAAAAAAAAAAAAAAAAQ")
        #expect(KafkaUUID(hex: u.hex) == u)
    }

    @Test func requestHeaderV2SkipsTaggedFields() throws {
        var b = ByteBuffer()
        b.writeInteger(Int16(18))
        b.writeInteger(Int16(3))
        b.writeInteger(Int32(7))
        b.writeKafkaNullableString("client", compact: false)
        b.writeUnsignedVarint(1)
        b.writeTaggedField(tag: 5) { $0.writeInteger(UInt32(42)) }
        b.writeInteger(Int8(99))
        let h = try RequestHeader(from: &b, flexible: true)
        #expect(h == RequestHeader(apiKey: 18, apiVersion: 3, correlationId: 7, clientId: "client"))
        #expect(b.readInteger(as: Int8.self) == 99)
    }
}
