import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ObjectStore
import ServiceLifecycle

/// The Kafka listener: one task per connection reads frames in order and hands each to the
/// broker; each answer, once ready, goes to the connection's `ResponseWriter`, which writes
/// them in request order on the event loop, so handlers may finish out of order (a
/// long-polling fetch does not hold up a produce behind it).
public final class KafkaServer: Service, Sendable {
    let broker: Broker
    let listener: Broker.Listener
    let logger: Logger
    let channel: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    /// Big request frames' buffers, shared by this listener's connections (KafkaFrameDecoder).
    private let frames = ReusePool<ByteBuffer>(keep: 8)

    /// Binds the listener (so a taken port fails startup, not later): the client listener
    /// (`listeners`) or the internal one (`internal.listeners`).
    public init(broker: Broker, listener: Broker.Listener = .client, logger: Logger) async throws {
        self.broker = broker
        self.listener = listener
        self.logger = logger
        let address = listener == .client ? broker.config.listen : broker.config.internalListen ?? HostPort(host: "127.0.0.1", port: 0)
        let maxFrame = broker.config.socketRequestMaxBytes
        let frames = self.frames
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .bind(host: address.host, port: address.port) { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(KafkaFrameDecoder(maxFrameSize: maxFrame, frames: frames)))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child)
                }
            }
    }

    public var localPort: Int? { channel.channel.localAddress?.port }

    /// Big request frames' buffers waiting in the pool for the next request (tests).
    public var idleFrames: Int { frames.count }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await channel.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask(executorPreference: EventLoopTaskExecutor(connection.channel.eventLoop)) { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            // Stop accepting, flush what was produced so its requests are answered, then
            // close the connections so the accept loop can end.
            self.channel.channel.close(promise: nil)
            Task {
                guard self.listener == .client else {
                    for c in self.connections.withLockedValue({ Array($0.values) }) { c.close(promise: nil) }
                    return
                }
                self.broker.unloadGroups()
                await self.broker.engine.shutdown(timeout: .milliseconds(Int64(self.broker.config.shutdownFlushTimeoutMs)))
                try? await Task.sleep(for: .milliseconds(200))
                for c in self.connections.withLockedValue({ Array($0.values) }) { c.close(promise: nil) }
            }
        }
    }

    /// A big request frame goes back to the decoders' pool once nothing reads it any more:
    /// when its request is answered, or sooner (`Answer.readsRequest`). One still referred to
    /// elsewhere is safe there: the decoder's next write to it copies it first.
    private func giveBack(_ frame: ByteBuffer) {
        if frame.capacity >= KafkaFrameDecoder.pooledFrameBytes { frames.give(frame) }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let peer = connection.channel.remoteAddress.map { "\($0)" } ?? "?"
        // Kafka reports a member's host as InetAddress.toString(): "/127.0.0.1".
        let clientHost = connection.channel.remoteAddress?.ipAddress.map { "/" + $0 } ?? ""
        let id = ObjectIdentifier(connection.channel)
        connections.withLockedValue { $0[id] = connection.channel }
        broker.metrics.connection(opened: true)
        defer {
            broker.metrics.connection(opened: false)
            connections.withLockedValue { $0[id] = nil }
        }
        do {
            try await connection.executeThenClose { inbound, _ in
                let writer = ResponseWriter(channel: connection.channel) { self.giveBack($0) }
                let pending = PendingAnswers()
                var issued = 0
                for try await frame in inbound {
                    switch await broker.handle(frame: frame, clientHost: clientHost, listener: listener) {
                    case .respond(let answer):
                        let seq = issued
                        issued += 1
                        pending.add(answer, at: seq)
                        // A produce's frame gathers the next request while its answer waits
                        // for the object store: otherwise every request in flight holds one,
                        // more than the pool keeps, and the rest fault in fresh pages.
                        let held: ByteBuffer? = answer.readsRequest ? frame : nil
                        if held == nil { giveBack(frame) }
                        answer.whenReady { bytes in
                            pending.remove(seq)
                            writer.write(bytes, at: seq, frame: held)
                        }
                    case .noResponse:
                        giveBack(frame)
                    case .close(let reason):
                        logger.warning("closing connection: \(reason)", metadata: ["peer": "\(peer)"])
                        // The answers before it still go out, as Kafka sends them.
                        try await writer.written(count: issued).get()
                        return
                    }
                }
                // The peer closed: answers still pending (a long-polling fetch, say) have
                // nowhere to go, so stop the work behind them rather than wait for it.
                pending.cancelAll()
            }
        } catch {
            if error is KafkaFrameDecoder.FrameTooLarge || error is KafkaFrameDecoder.InvalidFrame {
                broker.metrics.badInput()
                logger.warning("closing connection: \(error)", metadata: ["peer": "\(peer)"])
            } else {
                logger.debug("connection ended: \(error)", metadata: ["peer": "\(peer)"])
            }
        }
    }
}

/// The answers of one connection not yet ready, so they can be cancelled when it closes.
/// Keyed by the request's place on the connection, as the writer counts them.
final class PendingAnswers: Sendable {
    private let answers = NIOLockedValueBox([Int: Answer]())

    func add(_ answer: Answer, at seq: Int) { answers.withLockedValue { $0[seq] = answer } }

    func remove(_ seq: Int) { answers.withLockedValue { _ = $0.removeValue(forKey: seq) } }

    func cancelAll() { for a in answers.withLockedValue({ Array($0.values) }) { a.cancel() } }
}

/// Writes one connection's answers in request order as they become ready, on its event
/// loop: an answer ready before those ahead of it waits for them.
final class ResponseWriter: @unchecked Sendable {
    private let channel: any Channel
    private let release: @Sendable (ByteBuffer) -> Void
    // On the event loop only (hence @unchecked):
    private var next = 0
    private var waiting: [Int: (bytes: ResponseFrame, frame: ByteBuffer?)] = [:]
    private var lastWrite: EventLoopFuture<Void>?
    private var drains: [(count: Int, promise: EventLoopPromise<Void>)] = []

    /// `release`: gets each answered request's frame (if it was kept) back once its answer is written.
    init(channel: any Channel, release: @escaping @Sendable (ByteBuffer) -> Void) {
        self.channel = channel
        self.release = release
    }

    /// The answer to the `seq`-th request (counting from 0) of the connection.
    func write(_ bytes: ResponseFrame, at seq: Int, frame: ByteBuffer?) {
        if channel.eventLoop.inEventLoop {
            ready(bytes, at: seq, frame: frame)
        } else {
            channel.eventLoop.execute { self.ready(bytes, at: seq, frame: frame) }
        }
    }

    /// Completes once the first `count` answers are written to the socket (or failed to be).
    func written(count: Int) -> EventLoopFuture<Void> {
        channel.eventLoop.flatSubmit {
            let p = self.channel.eventLoop.makePromise(of: Void.self)
            if self.next >= count {
                self.whenWritten(p)
            } else {
                self.drains.append((count, p))
            }
            return p.futureResult
        }
    }

    private func ready(_ bytes: ResponseFrame, at seq: Int, frame: ByteBuffer?) {
        channel.eventLoop.assertInEventLoop()
        waiting[seq] = (bytes, frame)
        guard seq == next else { return }
        while let (b, f) = waiting.removeValue(forKey: next) {
            let p = channel.eventLoop.makePromise(of: Void.self)
            switch b {
            case .whole(let bytes):
                channel.write(bytes, promise: p)
            case .parts(let parts):
                // One writev when flushed; the last part's promise completes after the others'.
                for part in parts.dropLast() { channel.write(part, promise: nil) }
                channel.write(parts.last ?? ByteBuffer(), promise: p)
            }
            lastWrite = p.futureResult
            if let f { release(f) }
            next += 1
        }
        channel.flush()
        drains.removeAll { d in
            guard next >= d.count else { return false }
            whenWritten(d.promise)
            return true
        }
    }

    /// Succeeds `p` once the last write so far has ended, written or failed.
    private func whenWritten(_ p: EventLoopPromise<Void>) {
        if let lastWrite { lastWrite.whenComplete { _ in p.succeed(()) } } else { p.succeed(()) }
    }
}
