import CCRC32C
import NIOCore

/// CRC-32C over bytes, hardware-accelerated (SSE4.2) where the CPU has it.
public enum CRC32C {
    public static func checksum(_ buffer: ByteBuffer) -> UInt32 {
        buffer.withUnsafeReadableBytes { tern_crc32c(0, $0.baseAddress, $0.count) }
    }

    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        let r = bytes.withContiguousStorageIfAvailable { tern_crc32c(0, $0.baseAddress, $0.count) }
        if let r { return r }
        return Array(bytes).withUnsafeBytes { tern_crc32c(0, $0.baseAddress, $0.count) }
    }

    /// `crc` extended over `bytes`: checksum(a + b) == extend(checksum(a), b).
    public static func extend(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        tern_crc32c(crc, bytes.baseAddress, bytes.count)
    }

    public static var isHardwareAccelerated: Bool { tern_crc32c_hardware() != 0 }
}
