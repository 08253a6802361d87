import KafkaClient
import Testing

@Suite struct PartitionerTests {
    /// Java's `Utils.murmur2` values (Kafka's UtilsTest; checked against kafka-python's
    /// `murmur2`), through both the collection and the raw-pointer entry points.
    @Test(arguments: [("21", Int32(-973932308)), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
                      ("a-little-bit-longer-string", -1486304829),
                      ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), ("abc", 479470107), ("", 275646681)])
    func murmur2MatchesKafka(_ key: String, _ expected: Int32) {
        let bytes = Array(key.utf8)
        #expect(Partitioner.murmur2(bytes) == expected)
        #expect(Partitioner.murmur2(bytes[...]) == expected)
        #expect(Partitioner.murmur2(key.utf8) == expected)
        bytes.withUnsafeBytes { #expect(Partitioner.murmur2($0) == expected) }
        bytes.withUnsafeBytes {
            #expect(Partitioner.partition(forKey: $0, partitionCount: 7) == Partitioner.partition(forKey: bytes, partitionCount: 7))
        }
    }
}
