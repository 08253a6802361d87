import Logging
import Metadata
import NIOPosix
import ObjectStore
import StreamStorage

extension Broker {
    /// A started broker over an in-memory bucket and a SQLite file at `metadataPath`, with its
    /// committer running: for driving `handle(frame:)` in process, without sockets (fuzzing,
    /// allocation benchmarks). `tern serve` builds its broker in `Serve.swift` instead.
    public static func inProcess(config: BrokerConfig, metadataPath: String, logger: Logger) async throws -> Broker {
        let metadata = try SQLiteMetadataStore(path: metadataPath)
        let (clusterId, epoch) = try await metadata.bootstrap(nodeId: config.nodeId)
        let engine = StreamEngine(config: config.storage, objectStore: InMemoryObjectStore(), metadata: metadata,
                                  nodeId: config.nodeId, clusterId: clusterId, brokerEpoch: epoch,
                                  loop: MultiThreadedEventLoopGroup.singleton.next(), logger: logger)
        _ = try await engine.recover()
        Task { await engine.runCommitter() }
        let broker = Broker(config: config, engine: engine, metadata: metadata, clusterId: clusterId,
                            metrics: BrokerMetrics(), logger: logger)
        try await broker.start()
        broker.markReady()
        return broker
    }
}
