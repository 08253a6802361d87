import CCRC32C
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

    /// The hardware path runs three streams over blocks of 3 x 8 KiB, then 3 x 256 bytes, then
    /// 8 bytes at a time and single bytes, and joins the streams' CRCs: every length around those
    /// edges, at every alignment, agrees with the table-driven path, whole and extended in parts.
    @Test func crc32cHardwarePathAgreesWithTheTables() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<100_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var lengths = Array(0...800)
        for edge in [3 * 256, 3 * 8192, 2 * 3 * 8192, 3 * 8192 + 3 * 256] {
            lengths += (edge - 9)...(edge + 9)
        }
        lengths += [65_536, 99_990]
        bytes.withUnsafeBytes { all in
            for length in lengths {
                for offset in 0..<8 where offset + length <= all.count {
                    let part = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                    let expected = tern_crc32c_portable(0, part.baseAddress, part.count)
                    #expect(CRC32C.extend(0, part) == expected, "length \(length) at offset \(offset)")
                    let split = length / 3
                    let head = CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: part[0..<split]))
                    #expect(CRC32C.extend(head, UnsafeRawBufferPointer(rebasing: part[split...])) == expected)
                }
            }
        }
        #expect(CRC32C.isHardwareAccelerated == (tern_crc32c_hardware() != 0))
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
