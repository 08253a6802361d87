/// Kafka's default partitioner for keyed records (`BuiltInPartitioner.partitionForKey`):
/// murmur2 of the key bytes, made positive, modulo the partition count. The same key lands on
/// the same partition as with the Java client.
public enum Partitioner {
    public static func partition(forKey key: some Collection<UInt8>, partitionCount: Int) -> Int32 {
        precondition(partitionCount > 0)
        return Int32(Int(UInt32(bitPattern: murmur2(key)) & 0x7fff_ffff) % partitionCount)
    }

    public static func partition(forKey key: UnsafeRawBufferPointer, partitionCount: Int) -> Int32 {
        precondition(partitionCount > 0)
        return Int32(Int(UInt32(bitPattern: murmur2(key)) & 0x7fff_ffff) % partitionCount)
    }

    /// Java's `Utils.murmur2` (seed 0x9747b28c), with its int arithmetic wrapping. Contiguous
    /// keys (arrays, slices, buffer pointers) are hashed in place, without a copy.
    public static func murmur2(_ bytes: some Collection<UInt8>) -> Int32 {
        if let h = bytes.withContiguousStorageIfAvailable({ murmur2(UnsafeRawBufferPointer($0)) }) { return h }
        return Array(bytes).withUnsafeBytes { murmur2($0) }
    }

    public static func murmur2(_ data: UnsafeRawBufferPointer) -> Int32 {
        let length = data.count
        let m: UInt32 = 0x5bd1_e995
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
        var i = 0
        while i + 4 <= length {
            var k = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
            k &*= m
            k ^= k >> 24
            k &*= m
            h &*= m
            h ^= k
            i += 4
        }
        let tail = length & 3
        if tail == 3 { h ^= UInt32(data[i + 2]) << 16 }
        if tail >= 2 { h ^= UInt32(data[i + 1]) << 8 }
        if tail >= 1 {
            h ^= UInt32(data[i])
            h &*= m
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }
}
