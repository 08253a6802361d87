import KafkaProtocol
import NIOCore
import Testing

/// `RecordsSplice`: a Fetch response encoded with its large record sets kept out of the buffer
/// is, once its parts are put together, the same bytes as the response encoded whole.
@Suite struct RecordsSpliceTests {
    static func response(_ sizes: [Int?]) -> FetchResponse {
        var topic = FetchResponse.FetchableTopicResponse()
        topic.topic = "t"
        for (i, size) in sizes.enumerated() {
            var p = FetchResponse.FetchableTopicResponse.PartitionData()
            p.partitionIndex = Int32(i)
            p.highWatermark = Int64(i * 10)
            p.records = size.map { ByteBuffer(bytes: (0..<$0).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }) }
            topic.partitions.append(p)
        }
        var r = FetchResponse()
        r.responses = [topic]
        return r
    }

    @Test(arguments: [4, 11, 12, 16])
    func partsPutTogetherAreTheWholeEncoding(version: Int16) {
        let big = RecordsSplice.minimumBytes
        // Large and small record sets, adjacent ones, an empty and a null one.
        let r = Self.response([big, 100, nil, big * 3 + 7, big + 1, 0, 5, big])
        var whole = ByteBuffer()
        r.encode(into: &whole, version: version)

        let splice = RecordsSplice()
        var head = ByteBuffer()
        RecordsSplice.$current.withValue(splice) { r.encode(into: &head, version: version) }
        let parts = splice.parts(of: head)
        var joined = ByteBuffer()
        for p in parts { joined.writeImmutableBuffer(p) }

        #expect(joined == whole)
        #expect(splice.bytes == big * 6 + 8)  // the four large sets only
        #expect(head.readableBytes == whole.readableBytes - splice.bytes)
        // Each large set is a part of its own: the cache's bytes, not a copy.
        #expect(parts.filter { $0.readableBytes >= big }.count == 4)
    }

    /// A record set in parts (`recordsContinued`) is encoded as the one set they make, kept
    /// out of the buffer part by part, or copied, whole either way.
    @Test(arguments: [4, 12])
    func aRecordSetInPartsIsOneSet(version: Int16) {
        let big = RecordsSplice.minimumBytes
        for sizes in [[big, 1, big + 3], [10, 20], [0, big]] {
            let bytes = (0..<sizes.reduce(0, +)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            var whole = Self.response([bytes.count])
            whole.responses[0].partitions[0].records = ByteBuffer(bytes: bytes)
            var inParts = whole
            var cut = 0
            let parts = sizes.map { n in defer { cut += n }; return ByteBuffer(bytes: bytes[cut..<(cut + n)]) }
            inParts.responses[0].partitions[0].records = parts[0]
            inParts.responses[0].partitions[0].recordsContinued = Array(parts.dropFirst())
            var expected = ByteBuffer()
            whole.encode(into: &expected, version: version)
            var copied = ByteBuffer()
            inParts.encode(into: &copied, version: version)
            #expect(copied == expected, "\(sizes) copied")
            let splice = RecordsSplice()
            var head = ByteBuffer()
            RecordsSplice.$current.withValue(splice) { inParts.encode(into: &head, version: version) }
            #expect(splice.parts(of: head).reduce(into: ByteBuffer()) { $0.writeImmutableBuffer($1) } == expected, "\(sizes) spliced")
            #expect(splice.bytes == (bytes.count >= big ? bytes.count : 0))
        }
    }

    @Test func withoutACollectorRecordsAreCopied() {
        let r = Self.response([RecordsSplice.minimumBytes * 2])
        var b = ByteBuffer()
        r.encode(into: &b, version: 12)
        #expect(b.readableBytes > RecordsSplice.minimumBytes * 2)
        #expect(RecordsSplice.current == nil)
    }
}
