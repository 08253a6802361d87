import Broker
import Foundation
import KafkaProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Nothing behind a produce's answer refers to its request frame: the batches are copied
/// into the engine before `handle` returns, so the server can reuse the frame for the next
/// request while the answer waits for the object store (`Answer.readsRequest`).
@Suite struct ProduceFrameTests {
    @Test func aPendingProduceHoldsNoReferenceToItsFrame() async throws {
        // The answer stays pending through the checks: no upload for 10 minutes.
        let broker = try await FetchFrameTests.brokerWithTopic("t", partitions: 1, uploadIntervalMs: 600_000)

        var frame = FetchFrameTests.frame(Self.produce(topic: "t", acks: -1), version: 9, correlationId: 2)
        let before = frame.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }

        guard case .respond(let answer) = await broker.handle(frame: frame) else {
            Issue.record("no answer to a produce with acks=-1")
            return
        }
        let answered = NIOLockedValueBox(false)
        answer.whenReady { _ in answered.withLockedValue { $0 = true } }
        #expect(!answered.withLockedValue { $0 }, "the produce was answered before its upload")
        #expect(!answer.readsRequest)
        // Writing to the frame copies it first if anything else still holds its storage.
        let after = frame.withUnsafeMutableReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(after == before, "something behind the pending answer still holds the request's bytes")
    }

    /// Through the server: a produce's frame is back in the decoders' pool while its answer
    /// still waits for the object store (before, it came back only with the answer, and every
    /// produce in flight held one, more than the pool keeps).
    @Test(.timeLimit(.minutes(1))) func theServerPoolsAPendingProducesFrame() async throws {
        let broker = try await FetchFrameTests.brokerWithTopic("t", partitions: 1, uploadIntervalMs: 600_000,
                                                               listen: HostPort(host: "127.0.0.1", port: 0))
        var log = Logger(label: "test")
        log.logLevel = .critical
        let server = try await KafkaServer(broker: broker, logger: log)
        let running = Task { try await server.run() }
        defer { running.cancel() }
        let port = try #require(server.localPort)

        let produce = FetchFrameTests.frame(Self.produce(topic: "t", acks: -1), version: 9, correlationId: 2)
        #expect(produce.readableBytes >= KafkaFrameDecoder.pooledFrameBytes)
        #expect(server.idleFrames == 0)
        let fd = try Self.connect(port: port)
        defer { close(fd) }
        var bytes = [UInt8]()
        withUnsafeBytes(of: Int32(produce.readableBytes).bigEndian) { bytes += $0 }
        bytes += produce.readableBytesView
        #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
        // No answer can come for 10 minutes; the frame must be pooled well before.
        var waited = 0
        while server.idleFrames == 0 && waited < 5000 {
            try await Task.sleep(for: .milliseconds(10))
            waited += 10
        }
        #expect(server.idleFrames == 1, "the produce's frame was not back in the pool while its answer was pending")
        var readable = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&readable, 1, 0) == 0, "the produce was answered (or the connection closed) before its upload")
    }

    /// A produce of one batch of 200 records of 500 bytes to partition 0 of `topic`.
    static func produce(topic: String, acks: Int16) -> ProduceRequest {
        var batch = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
        for i in 0..<200 { batch.append(key: nil, value: ByteBuffer(repeating: UInt8(65 + i % 26), count: 500)) }
        return ProduceRequest(topic: topic, partition: 0, records: batch.build(), acks: acks)
    }

    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        return fd
    }
}
