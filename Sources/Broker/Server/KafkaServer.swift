import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ObjectStore
import ServiceLifecycle

/// The Kafka listener: one task per connection reads frames in order and hands each to the
/// broker; a second task writes responses in request order, so handlers may finish out of
/// order (a long-polling fetch does not hold up a produce behind it).
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

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await channel.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
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

    /// A big request frame goes back to the decoders' pool once its request is answered. One
    /// still held elsewhere (acks=0 appends in flight) is safe there: the decoder's next write
    /// to it copies it first.
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
            try await connection.executeThenClose { inbound, outbound in
                let (responses, queue) = AsyncStream.makeStream(of: (task: Task<ByteBuffer, Never>, frame: ByteBuffer).self)
                let pending = PendingResponses()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await response in responses {
                            let bytes = await response.task.value
                            pending.remove(response.task)
                            self.giveBack(response.frame)
                            try await outbound.write(bytes)
                        }
                    }
                    defer { queue.finish() }
                    for try await frame in inbound {
                        switch await broker.handle(frame: frame, clientHost: clientHost, listener: listener) {
                        case .respond(let task):
                            pending.add(task)
                            queue.yield((task, frame))
                        case .noResponse:
                            giveBack(frame)
                            continue
                        case .close(let reason):
                            logger.warning("closing connection: \(reason)", metadata: ["peer": "\(peer)"])
                            queue.finish()
                            try await group.next()
                            return
                        }
                    }
                    // The peer closed: answers still pending (a long-polling fetch, say) have
                    // nowhere to go, so stop waiting for them rather than hold the connection.
                    pending.cancelAll()
                    queue.finish()
                    try await group.next()
                }
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

/// The answers of one connection not yet written, so they can be cancelled when it closes.
final class PendingResponses: Sendable {
    private let tasks = NIOLockedValueBox(Set<Task<ByteBuffer, Never>>())

    func add(_ task: Task<ByteBuffer, Never>) { tasks.withLockedValue { _ = $0.insert(task) } }
    func remove(_ task: Task<ByteBuffer, Never>) { tasks.withLockedValue { _ = $0.remove(task) } }
    func cancelAll() { for t in tasks.withLockedValue({ $0 }) { t.cancel() } }
}
