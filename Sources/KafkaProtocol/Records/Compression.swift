import CCompression
import NIOCore

/// The codecs of a v2 record batch (attributes bits 0-2).
public enum CompressionCodec: Int, Sendable, CaseIterable {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4

    /// The name Kafka uses in `compression.type` ("uncompressed" for none).
    public var configName: String {
        switch self {
        case .none: "uncompressed"
        case .gzip: "gzip"
        case .snappy: "snappy"
        case .lz4: "lz4"
        case .zstd: "zstd"
        }
    }

    /// Parses a `compression.type` codec name; "none" is accepted for "uncompressed".
    public init?(configName: String) {
        switch configName {
        case "uncompressed", "none": self = .none
        case "gzip": self = .gzip
        case "snappy": self = .snappy
        case "lz4": self = .lz4
        case "zstd": self = .zstd
        default: return nil
        }
    }

    /// Kafka's default levels (KIP-390): gzip's own default, lz4 9, zstd 3; snappy has none.
    public var defaultLevel: Int32 {
        switch self {
        case .gzip: -1
        case .lz4: 9
        case .zstd: 3
        case .none, .snappy: 0
        }
    }
}

public enum CompressionError: Error, Equatable, Sendable {
    /// The data does not decode with its codec.
    case malformed(String)
    /// The decompressed data would exceed the caller's limit.
    case tooLarge(limit: Int)
}

/// One-shot compression and bounded decompression over ByteBuffers.
public enum Compression {
    /// Compresses `input` as Kafka's clients frame each codec (gzip member, LZ4 frame with
    /// independent blocks, zstd frame, xerial-framed snappy).
    public static func compress(_ input: ByteBuffer, codec: CompressionCodec, level: Int32? = nil) -> ByteBuffer {
        guard codec != .none else { return input }
        let id = Int32(codec.rawValue)
        let bound = tern_compress_bound(id, input.readableBytes)
        var out = ByteBufferAllocator().buffer(capacity: bound)
        let written = input.withUnsafeReadableBytes { src in
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { dst in
                tern_compress(id, level ?? codec.defaultLevel, src.baseAddress?.assumingMemoryBound(to: UInt8.self), src.count,
                              dst.baseAddress!.assumingMemoryBound(to: UInt8.self), dst.count)
            }
        }
        // The bound is exact enough that compression cannot fail for lack of space; a zero
        // here means the library itself failed (out of memory), which the caller cannot fix.
        precondition(written > 0, "compression with \(codec) failed")
        return out
    }

    /// Decompresses `input`, refusing to produce more than `limit` bytes (a small input must
    /// not be able to claim unbounded memory). Accepts concatenated frames, and both raw and
    /// xerial-framed snappy.
    public static func decompress(_ input: ByteBuffer, codec: CompressionCodec, limit: Int) throws(CompressionError) -> ByteBuffer {
        switch codec {
        case .none:
            guard input.readableBytes <= limit else { throw .tooLarge(limit: limit) }
            return input
        case .snappy:
            return try snappy(input, limit: limit)
        case .gzip, .lz4, .zstd:
            return try streaming(input, codec: codec, limit: limit)
        }
    }

    private static func streaming(_ input: ByteBuffer, codec: CompressionCodec, limit: Int) throws(CompressionError) -> ByteBuffer {
        guard let d = tern_decompressor_create(Int32(codec.rawValue)) else { throw .malformed("cannot create a \(codec) decompressor") }
        defer { tern_decompressor_free(d) }
        var out = ByteBufferAllocator().buffer(capacity: min(limit, max(4096, input.readableBytes * 4)))
        var rest = input
        var ended = false
        while true {
            if ended {
                // Skip zero padding some writers leave; anything else is another frame.
                guard rest.readableBytes > 0, rest.readableBytesView.contains(where: { $0 != 0 }) else { break }
                guard tern_decompressor_reset(d) == 0 else { throw .malformed("\(codec) decompressor reset failed") }
                ended = false
            }
            if out.writableBytes == 0 {
                guard out.writerIndex < limit else { throw .tooLarge(limit: limit) }
                out.reserveCapacity(minimumWritableBytes: min(limit - out.writerIndex, max(4096, out.writerIndex)))
            }
            var inUsed = 0
            var outUsed = 0
            let room = limit - out.writerIndex
            let status = rest.withUnsafeReadableBytes { src in
                out.withUnsafeMutableWritableBytes { dst in
                    tern_decompressor_run(d, src.baseAddress?.assumingMemoryBound(to: UInt8.self), src.count, &inUsed,
                                          dst.baseAddress?.assumingMemoryBound(to: UInt8.self), min(dst.count, room), &outUsed)
                }
            }
            rest.moveReaderIndex(forwardBy: inUsed)
            out.moveWriterIndex(forwardBy: outUsed)
            switch Int(status) {
            case TERN_DECOMP_END:
                ended = true
            case TERN_DECOMP_CONTINUE:
                if inUsed == 0 && outUsed == 0 {
                    if out.writerIndex >= limit { throw .tooLarge(limit: limit) }
                    if rest.readableBytes == 0 { throw .malformed("\(codec) data ends mid-frame") }
                    if out.writableBytes > 0 { throw .malformed("\(codec) decompressor made no progress") }
                }
            default:
                throw .malformed("\(codec) data is corrupt")
            }
        }
        return out
    }

    static let xerialMagic: [UInt8] = [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00]

    private static func snappy(_ input: ByteBuffer, limit: Int) throws(CompressionError) -> ByteBuffer {
        var rest = input
        guard rest.readableBytes >= 16, rest.getBytes(at: rest.readerIndex, length: 8) == xerialMagic else {
            var out = ByteBufferAllocator().buffer(capacity: 0)
            try snappyBlock(rest, into: &out, limit: limit)
            return out
        }
        // xerial framing: 16-byte header, then blocks of [big-endian length][raw snappy].
        rest.moveReaderIndex(forwardBy: 16)
        var out = ByteBufferAllocator().buffer(capacity: min(limit, input.readableBytes * 2))
        while rest.readableBytes > 0 {
            guard let n = rest.readInteger(as: UInt32.self), let block = rest.readSlice(length: Int(n)) else {
                throw .malformed("xerial snappy block is truncated")
            }
            try snappyBlock(block, into: &out, limit: limit)
        }
        return out
    }

    private static func snappyBlock(_ block: ByteBuffer, into out: inout ByteBuffer, limit: Int) throws(CompressionError) {
        var length = 0
        let known = block.withUnsafeReadableBytes { src in
            tern_snappy_uncompressed_length(src.baseAddress?.assumingMemoryBound(to: UInt8.self), src.count, &length)
        }
        guard known == 0 else { throw .malformed("snappy data is corrupt") }
        guard length <= limit - out.writerIndex else { throw .tooLarge(limit: limit) }
        guard length > 0 else { return }
        var produced = length
        let rc = block.withUnsafeReadableBytes { src in
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { dst in
                let rc = tern_snappy_uncompress(src.baseAddress?.assumingMemoryBound(to: UInt8.self), src.count,
                                                dst.baseAddress!.assumingMemoryBound(to: UInt8.self), &produced)
                return rc == 0 ? produced : 0
            }
        }
        guard rc == length else { throw .malformed("snappy data is corrupt") }
    }
}
