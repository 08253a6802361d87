#if canImport(Glibc)
import Glibc
#endif
import KafkaProtocol
import NIOCore

/// libFuzzer entry point over request decoding: the bytes are one request frame body
/// (header + body, without the length prefix). Every API's codec at every version it
/// serves is tried, the header first, then the record batch validation of the body; then
/// the bytes go, as a connection's stream, through the frame decoder into a real broker.
/// Any input may be rejected; none may crash, hang or allocate without bound.
/// TERN_FUZZ_BROKER=1 also drives a real broker (run with -detect_leaks=0: the broker's
/// thread pools live for the whole process, which LeakSanitizer reports at exit).
private let brokerMode = getenv("TERN_FUZZ_BROKER") != nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let frame = ByteBuffer(bytes: bytes)
    if let (key, version, _) = RequestHeader.peek(frame), let api = ApiKey(rawValue: key), api.versions.contains(version) {
        var body = frame
        let flexible = api.firstFlexibleVersion.map { version >= $0 } ?? false
        if (try? RequestHeader(from: &body, flexible: flexible)) != nil {
            decode(api.messageTypes.request, &body, version)
        }
    }
    // The same bytes as any message at any version, and as a record batch.
    for api in ApiKey.allCases {
        for v in [api.versions.lowerBound, api.versions.upperBound] {
            var b = frame
            decode(api.messageTypes.request, &b, v)
            b = frame
            decode(api.messageTypes.response, &b, v)
        }
    }
    // As a produced batch: validated (decompressed when compressed), rewritten to another
    // codec with LogAppendTime and key checks, and decoded record by record.
    var policy = BatchPolicy()
    policy.maxDecompressedBytes = 1 << 20
    if let v = try? RecordBatch.validate(frame, policy: policy, now: 1_700_000_000_000) {
        _ = try? Record.decodeAll(batch: v.bytes, limit: 1 << 20)
        policy.codec = CompressionCodec(rawValue: (v.header.compression + 1) % 5)
        policy.logAppendTime = true
        policy.requireKeys = true
        _ = try? RecordBatch.validate(frame, policy: policy, now: 1_700_000_000_000)
    }
    if brokerMode {
        // As bytes on a connection: framed (length prefix) requests into the broker.
        FuzzBroker.shared.handle(frame)
        // And as one frame body, framed here, so every input reaches dispatch.
        var framed = ByteBuffer()
        framed.writeInteger(Int32(frame.readableBytes))
        framed.writeImmutableBuffer(frame)
        FuzzBroker.shared.handle(framed)
    }
    return 0
}

private func decode<M: KafkaMessage>(_: M.Type, _ buffer: inout ByteBuffer, _ version: Int16) {
    if let m = try? M(from: &buffer, version: version) {
        // What decodes must encode again.
        var out = ByteBuffer()
        m.encode(into: &out, version: version)
    }
}

// SwiftPM links executables with `main` aliased to `<Target>_main`; hand control to
// libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("KafkaFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var args = argv
    return withUnsafeMutablePointer(to: &count) { c in
        withUnsafeMutablePointer(to: &args) { a in
            runDriver(c, a) { data, size in fuzzRequest(data, size) }
        }
    }
}
