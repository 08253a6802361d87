import ArgumentParser
import Broker
import AdminHTTP
import CMalloc
import Logging
import Metadata
import NIOCore
import NIOPosix
import ObjectStore
import ServiceLifecycle
import StreamStorage

#if canImport(Glibc)
import Glibc
#endif

/// Tunes glibc's malloc for a broker's large, short-lived buffers. An operator's own
/// MALLOC_MMAP_THRESHOLD_ or MALLOC_ARENA_MAX wins.
/// - The mmap threshold is fixed at 4 MiB. By default glibc raises it to the size of every
///   mmap'd block freed (up to 32 MiB): after the first 8 MiB WAL object is freed, objects and
///   batch copies all come from the malloc arenas, whose freed holes stay resident. Under
///   `tern perf produce` on the embedded default that held RSS near 1 GB with a heap of
///   260 MB at its peak (heaptrack). Fixed, blocks of 4 MiB and more go back to the kernel
///   when freed.
/// - Arenas are capped at one per core (glibc allows eight per core). Each arena keeps its own
///   freed holes resident; with the cap, `bench/memory.py`'s catch-up phase peaked at 594 MiB
///   instead of 645 (2 cores), at the same throughput.
func tuneMalloc() {
    if getenv("MALLOC_MMAP_THRESHOLD_") == nil { _ = tern_fix_mmap_threshold(4 << 20) }
    if getenv("MALLOC_ARENA_MAX") == nil { _ = tern_limit_malloc_arenas(Int32(max(2, System.coreCount))) }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a broker.",
        discussion: """
        With no flags the broker runs on the embedded default: the bucket is a local directory \
        (<data.dir>/objects) and metadata is SQLite (<data.dir>/metadata.sqlite).

        Settings, by property name (flag; default). Each can also come from --set NAME=VALUE, \
        from the environment as TERN_<NAME> (upper case, '.' as '_'), or from --config FILE; \
        flags win over the environment, the environment over the file.

        \(BrokerConfig.settings.map { "  \($0.name) (\($0.flag ?? "--set"); \($0.defaultValue)): \($0.help)" }.joined(separator: "\n"))
        """)

    @OptionGroup var store: StoreOptions
    @Option(name: .customLong("listen"), help: "Kafka listener HOST:PORT (listeners).")
    var listen: String?
    @Option(name: .customLong("advertise"), help: "Address given to clients HOST:PORT (advertised.listeners).")
    var advertise: String?
    @Option(name: .customLong("internal-listen"), help: "Listener for other brokers HOST:PORT (internal.listeners).")
    var internalListen: String?
    @Option(name: .customLong("node-id"), help: "Broker id (node.id).")
    var nodeId: String?
    @Option(name: .customLong("wal"), help: "WAL mode (wal): object, or file://DIR to ack produce on fdatasync to DIR.")
    var wal: String?
    @Option(name: .customLong("metrics-listen"), help: "HTTP listener for /metrics, /healthz, /readyz (metrics.listen).")
    var metricsListen: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func run() async throws {
        tuneMalloc()
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "tern")
        let config: BrokerConfig
        do {
            config = try BrokerConfig.resolve(try layeredSettings())
        } catch let e as ConfigError {
            throw ValidationError(e.description)
        }
        try await serve(config, logger: logger)
    }

    func layeredSettings() throws -> [String: String] {
        try store.layeredSettings(flags: [("listeners", listen), ("advertised.listeners", advertise),
                                          ("internal.listeners", internalListen), ("node.id", nodeId),
                                          ("wal", wal), ("metrics.listen", metricsListen)])
    }
}

/// Where the broker's data lives (data directory, bucket, metadata store) and the layered
/// settings: what `tern serve` and `tern admin rebuild-metadata` share.
struct StoreOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data directory (data.dir).")
    var dataDir: String?
    @Option(name: .customLong("object-store"), help: "Bucket URL (object.store).")
    var objectStore: String?
    @Option(name: .customLong("s3-endpoint"), help: "S3 endpoint URL for s3:// object stores (s3.endpoint).")
    var s3Endpoint: String?
    @Option(name: .customLong("s3-region"), help: "S3 region (s3.region).")
    var s3Region: String?
    @Flag(name: .customLong("s3-path-style"), help: "Path-style S3 URLs: endpoint/bucket/key (s3.path.style).")
    var s3PathStyle = false
    @Option(name: .customLong("metadata"), help: "Metadata store URL: sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB (metadata).")
    var metadata: String?
    @Option(name: .customLong("config"), help: "A server.properties-style file of settings.")
    var configFile: String?
    @Option(name: .customLong("set"), help: "A setting as NAME=VALUE (repeatable).")
    var settings: [String] = []

    /// File, then environment, then flags (these and `flags`): later layers win.
    func layeredSettings(flags more: [(String, String?)] = []) throws -> [String: String] {
        var raw: [String: String] = [:]
        if let configFile {
            guard let text = try? String(contentsOfFile: configFile, encoding: .utf8) else {
                throw ValidationError("--config: cannot read \(configFile)")
            }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let l = line.trimmingCharacters(in: .whitespaces)
                if l.isEmpty || l.hasPrefix("#") || l.hasPrefix("!") { continue }
                guard let sep = l.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                    throw ValidationError("\(configFile):\(n + 1): expected NAME=VALUE, got '\(l)'")
                }
                raw[l[..<sep].trimmingCharacters(in: .whitespaces)] = l[l.index(after: sep)...].trimmingCharacters(in: .whitespaces)
            }
        }
        let known = BrokerConfig.settings.map(\.name)
        for (k, v) in ProcessInfo.processInfo.environment where k.hasPrefix("TERN_") {
            let name = k.dropFirst(5).lowercased().replacingOccurrences(of: "_", with: ".")
            if known.contains(name) || name.hasPrefix("object.store.fault.") { raw[name] = v }
        }
        for s in settings {
            guard let eq = s.firstIndex(of: "="), eq != s.startIndex else { throw ValidationError("--set: expected NAME=VALUE, got '\(s)'") }
            raw[String(s[..<eq])] = String(s[s.index(after: eq)...])
        }
        let flags: [(String, String?)] = [("data.dir", dataDir), ("object.store", objectStore), ("metadata", metadata),
                                          ("s3.endpoint", s3Endpoint), ("s3.region", s3Region), ("s3.path.style", s3PathStyle ? "true" : nil)] + more
        for (k, v) in flags { if let v { raw[k] = v } }
        return raw
    }
}

import Foundation

func serve(_ config: BrokerConfig, logger: Logger) async throws {
    let pool = NIOThreadPool(numberOfThreads: 4)
    pool.start()


    // Object store: file://DIR or s3://BUCKET[/PREFIX], wrapped by fault injection (tests)
    // and metering.
    let meter = ObjectStoreMeter()
    func wrap<Base: ObjectStore>(_ base: Base) throws -> any ObjectStore {
        let faults: [ObjectStoreRequest: FaultInjectingObjectStore<Base>.Fault]
        do {
            faults = try FaultInjectingObjectStore<Base>.parseFaults(config.faults)
        } catch {
            throw ValidationError("\(error)")
        }
        return MeteredObjectStore(base: FaultInjectingObjectStore(base: base, faults: faults), meter: meter)
    }
    let store: any ObjectStore
    var s3Store: S3ObjectStore?
    if config.objectStoreURL.hasPrefix("s3://") {
        _ = try wrap(InMemoryObjectStore())  // bad fault settings are refused before any request
        let s3 = try await openS3(config, logger: logger)
        s3Store = s3
        store = try wrap(s3)
    } else {
        // Beside a file WAL, the bucket's writes go in small pieces: its fdatasyncs queue behind them.
        let directWriteBytes = config.walDirectory == nil ? DirectWrites.defaultChunkBytes : 256 << 10
        store = try wrap(try LocalDirectoryObjectStore(root: String(config.objectStoreURL.dropFirst("file://".count)), threadPool: pool,
                                                       directWriteBytes: directWriteBytes))
    }
    if !config.faults.isEmpty { logger.warning("object-store fault injection is on", metadata: ["faults": "\(config.faults)"]) }

    let metadata = try await openMetadata(config, logger: logger)
    let clusterId: String, brokerEpoch: Int64
    do {
        (clusterId, brokerEpoch) = try await metadata.bootstrap(nodeId: config.nodeId, leaseMs: config.cluster.sessionTimeoutMs)
    } catch let e as MetadataError {
        failStartup("metadata \(redactedMetadataURL(config.metadataURL)): \(e.message)")
    }

    var fileWAL: FileWAL?
    if let dir = config.walDirectory {
        do {
            fileWAL = try FileWAL(root: dir, node: config.nodeId, epoch: brokerEpoch, minSyncInterval: .microseconds(config.walSyncMinIntervalUs))
        } catch {
            failStartup("wal file://\(dir): \(error)")
        }
    }
    // Throughput classes: WAL uploads go first; catch-up reads and compaction wait their turn.
    let limited: any ObjectStore = config.storage.throughput.isUnlimited ? store
        : ThrottledObjectStore(base: store, limiter: ThroughputLimiter(limits: config.storage.throughput,
                                                                      loop: MultiThreadedEventLoopGroup.singleton.next()))
    let engine = StreamEngine(config: config.storage, objectStore: limited, metadata: metadata, nodeId: config.nodeId,
                              clusterId: clusterId, brokerEpoch: brokerEpoch,
                              loop: MultiThreadedEventLoopGroup.singleton.next(), logger: logger, fileWAL: fileWAL)
    let recovered = try await engine.recover()
    let broker = Broker(config: config, engine: engine, metadata: metadata, clusterId: clusterId,
                        metrics: BrokerMetrics(), logger: logger)
    // The internal listener is bound first: the lease that the first cluster round renews
    // tells other brokers its port.
    var internalServer: KafkaServer?
    if let address = config.internalListen {
        do {
            internalServer = try await KafkaServer(broker: broker, listener: .internal, logger: logger)
        } catch {
            throw ValidationError("internal.listeners: cannot listen on \(address): \(error)")
        }
        broker.setInternalPort(internalServer?.localPort ?? 0)
    }
    try await broker.start()

    let kafka: KafkaServer
    let admin: AdminServer
    do {
        kafka = try await KafkaServer(broker: broker, logger: logger)
    } catch {
        throw ValidationError("listeners: cannot listen on \(config.listen): \(error)")
    }
    do {
        let storage = StorageReporter(store: store, meter: meter, s3Requests: s3Store?.requests, objectStoreURL: config.objectStoreURL)
        admin = try await AdminServer(broker: broker, meter: meter, storage: storage, listen: (config.metricsListen.host, config.metricsListen.port))
    } catch {
        throw ValidationError("metrics.listen: cannot listen on \(config.metricsListen): \(error)")
    }
    logger.info("tern \(ternVersion) cluster \(clusterId) node \(config.nodeId) broker epoch \(brokerEpoch); \(broker.allTopics().count) topics; \(recovered) WAL objects recovered")
    logger.info("listening for Kafka on \(config.listen.host):\(kafka.localPort ?? config.listen.port) (advertised as \(config.advertise))")
    if let internalServer {
        logger.info("listening for other brokers on \(config.internalListen!.host):\(internalServer.localPort ?? 0)")
    }
    logger.info("serving /metrics, /healthz, /readyz on http://\(config.metricsListen.host):\(admin.localPort ?? config.metricsListen.port)")

    await engine.sweepOrphansLogged()
    let flushTimeout = TimeAmount.milliseconds(Int64(config.shutdownFlushTimeoutMs))
    let group = ServiceGroup(configuration: .init(
        // Started in this order, stopped in reverse: the Kafka listener stops and flushes
        // before the storage service drains its commits.
        services: [.init(service: StorageService(engine: engine, flushTimeout: flushTimeout)),
                   .init(service: kafka), .init(service: admin), .init(service: internalServer ?? NoService()),
                   .init(service: PeriodicService(intervalMs: config.cluster.pollIntervalMs) { await broker.clusterTick() }),
                   .init(service: PeriodicService(intervalMs: config.cluster.pollIntervalMs) { await broker.leaseTick() }),
                   .init(service: ClusterWatchService(broker: broker)),
                   .init(service: PeriodicService(intervalMs: config.retentionCheckIntervalMs) { await broker.applyRetention() }),
                   .init(service: PeriodicService(intervalMs: config.offsetsRetentionCheckIntervalMs) { await broker.expireOffsets() }),
                   .init(service: PeriodicService(intervalMs: config.transactionAbortCheckIntervalMs) { await broker.abortTimedOutTransactions() }),
                   .init(service: config.metadataSnapshotIntervalMs == 0 ? NoService() as any Service
                         : PeriodicService(intervalMs: config.metadataSnapshotIntervalMs) { await broker.snapshotMetadata() }),
                   .init(service: PeriodicService(intervalMs: config.garbageCollection.intervalMs) {
                       await engine.runGarbageCollection(config: config.garbageCollection, now: Broker.wallClockMs())
                   }),
                   .init(service: PeriodicService.paced(intervalMs: config.compaction.intervalMs) {
                       await engine.runCompaction(config: config.compaction, now: Broker.wallClockMs())
                   }),
                   // Last: started once the group traps SIGTERM, stopped first.
                   .init(service: ReadinessService(broker: broker))],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
    try await group.run()
    let flushed = await engine.shutdown(timeout: flushTimeout)
    if flushed { await broker.leaveCluster() }
    try? await s3Store?.shutdown()
    try? await pool.shutdownGracefully()
    guard flushed else { throw ExitCode(1) }
    logger.info("flushed and stopped")
}

let ternVersion = "0.1.0"

/// Marks the broker ready while it runs. The service group traps its shutdown signals before
/// it starts any service, so a SIGTERM sent after `/readyz` said ready shuts down gracefully
/// (before, one sent in the moments between the two killed the process).
struct ReadinessService: Service {
    let broker: Broker
    func run() async throws {
        broker.markReady()
        try? await gracefulShutdown()
        broker.stopAccepting()
    }
}

/// Stands in for a service that is not configured (no internal listener on one broker).
struct NoService: Service {
    func run() async throws { try await gracefulShutdown() }
}

/// The metadata store named by `metadata`: sqlite://PATH (the default) or
/// postgres://USER:PASSWORD@HOST:PORT/DATABASE, whose server must be reachable and take the
/// credentials before the broker starts.
func openMetadata(_ config: BrokerConfig, logger: Logger) async throws -> any MetadataStore {
    if config.metadataURL.hasPrefix("sqlite://") {
        let sqlitePath = String(config.metadataURL.dropFirst("sqlite://".count))
        let dir = (sqlitePath as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir.isEmpty ? "." : dir, withIntermediateDirectories: true)
        do {
            return try SQLiteMetadataStore(path: sqlitePath)
        } catch let e as MetadataError {
            failStartup("metadata \(config.metadataURL): \(e.message)")
        }
    }
    guard PostgresURL.isPostgres(config.metadataURL) else {
        throw ValidationError("metadata: expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE, got '\(PostgresURL.redact(config.metadataURL))'")
    }
    let url: PostgresURL
    do {
        url = try PostgresURL(parsing: config.metadataURL)
    } catch let e as MetadataError {
        throw ValidationError("metadata: \(e.message)")
    }
    do {
        let store = try await PostgresMetadataStore.connect(url: config.metadataURL, logger: logger)
        logger.info("metadata store \(url): reachable")
        return store
    } catch let e as MetadataError {
        failStartup("metadata \(url): \(e.message)")
    }
}

func redactedMetadataURL(_ url: String) -> String {
    (try? PostgresURL(parsing: url)).map(\.description) ?? PostgresURL.redact(url)
}

/// Not a usage error: the settings are fine, what they name is not. One line, exit 1.
func failStartup(_ message: String) -> Never {
    FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    exit(1)
}

/// The S3 store for `s3://BUCKET[/PREFIX]`, checked before the broker starts: the bucket must
/// be reachable, readable and writable with the environment's credentials.
func openS3(_ config: BrokerConfig, logger: Logger) async throws -> S3ObjectStore {
    guard let (bucket, prefix) = S3Configuration.parseURL(config.objectStoreURL) else {
        throw ValidationError("object.store: expected s3://BUCKET[/PREFIX] with a valid bucket name, got '\(config.objectStoreURL)'")
    }
    guard let credentials = S3Configuration.credentials(from: ProcessInfo.processInfo.environment) else {
        throw ValidationError("object.store \(config.objectStoreURL): no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or KAFKA_S3_ACCESS_KEY and KAFKA_S3_SECRET_KEY)")
    }
    var s3 = S3Configuration(bucket: bucket, prefix: prefix, endpoint: config.s3.endpoint, region: config.s3.region,
                             pathStyle: config.s3.pathStyle, credentials: credentials)
    s3.unsignedPayload = config.s3.unsignedPayload
    s3.maxConnections = config.s3.maxConnections
    s3.requestTimeoutMs = config.s3.requestTimeoutMs
    s3.maxAttempts = config.s3.maxAttempts
    s3.partSize = config.s3.partSize
    let store: S3ObjectStore
    do {
        store = try S3ObjectStore(config: s3, logger: logger)
    } catch {
        throw ValidationError("s3.endpoint: \(error)")
    }
    do {
        try await store.checkAccess(probeName: "node-\(config.nodeId)-\(UInt64.random(in: 0...UInt64.max))")
    } catch let e as S3AccessError {
        // Not a usage error: the flags are fine, the bucket is not. One line, exit 1.
        try? await store.shutdown()
        FileHandle.standardError.write(Data("Error: object.store \(config.objectStoreURL): \(e.description)\n".utf8))
        throw ExitCode(1)
    }
    logger.info("object store s3://\(bucket)/\(prefix) at \(s3.endpoint) (region \(s3.region), \(s3.pathStyle ? "path-style" : "virtual-hosted-style")): reachable and writable")
    return store
}
