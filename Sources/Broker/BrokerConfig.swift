import StreamStorage

/// A bad setting, named so the operator can fix it.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Host and port of a listener.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Accepts `HOST:PORT`, `:PORT`, `[IPv6]:PORT` and Kafka's `PLAINTEXT://HOST:PORT`.
    public static func parse(_ text: String, setting: String) throws -> HostPort {
        var t = Substring(text.trimmingWhitespace())
        if let scheme = t.firstIndex(of: "/"), t[scheme...].hasPrefix("//"), t[..<scheme].hasSuffix(":") {
            t = t[t.index(scheme, offsetBy: 2)...]
        }
        guard let colon = t.lastIndex(of: ":"), let port = Int(t[t.index(after: colon)...]), (0...65535).contains(port) else {
            throw ConfigError("\(setting): expected HOST:PORT, got '\(text)'")
        }
        var host = String(t[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return HostPort(host: host.isEmpty ? "0.0.0.0" : host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}

/// Every setting `tern serve` knows, with its Kafka-style property name and default.
/// Flags win over environment (`TERN_` + upper-cased name, `.` → `_`), environment over the file.
public struct BrokerConfig: Sendable {
    public struct Setting: Sendable {
        public var name: String
        public var flag: String?
        public var defaultValue: String
        public var help: String
    }

    public static let settings: [Setting] = [
        .init(name: "data.dir", flag: "--data-dir", defaultValue: "./tern-data", help: "directory for the embedded bucket and metadata"),
        .init(name: "listeners", flag: "--listen", defaultValue: "0.0.0.0:9092", help: "Kafka listener HOST:PORT"),
        .init(name: "advertised.listeners", flag: "--advertise", defaultValue: "localhost:<listen port>", help: "HOST:PORT given to clients"),
        .init(name: "internal.listeners", flag: "--internal-listen", defaultValue: "<listen host>:0 with a PostgreSQL metadata store, else none", help: "listener for other brokers' requests (transaction markers) HOST:PORT; port 0 picks a free one"),
        .init(name: "node.id", flag: "--node-id", defaultValue: "1", help: "this broker's id"),
        .init(name: "object.store", flag: "--object-store", defaultValue: "file://<data.dir>/objects", help: "bucket: file://DIR or s3://BUCKET[/PREFIX]"),
    ] + S3Settings.entries + [
        .init(name: "metadata", flag: "--metadata", defaultValue: "sqlite://<data.dir>/metadata.sqlite", help: "metadata store: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        .init(name: "wal", flag: "--wal", defaultValue: "object", help: "WAL mode: object (one object per flush, acked on its PUT) or file://DIR (acked on fdatasync, uploaded behind)"),
        .init(name: "metrics.listen", flag: "--metrics-listen", defaultValue: "127.0.0.1:9644", help: "HTTP listener for /metrics, /healthz, /readyz"),
        .init(name: "wal.sync.min.interval.us", flag: nil, defaultValue: "500", help: "file WAL: the least time between the starts of two group commits; what arrives meanwhile joins the next (0: sync at once)"),
        .init(name: "wal.upload.bytes", flag: nil, defaultValue: "8388608", help: "flush the WAL buffer at this size"),
        .init(name: "wal.upload.interval.ms", flag: nil, defaultValue: "250", help: "flush the WAL buffer at the latest after this long"),
        .init(name: "wal.upload.idle.ms", flag: nil, defaultValue: "10", help: "with no upload under way, flush once the buffer holds wal.upload.bytes/8 and no append came for this long; 0: never"),
        .init(name: "wal.buffer.max.bytes", flag: nil, defaultValue: "67108864", help: "unflushed bytes above which produce waits"),
        .init(name: "wal.upload.concurrency", flag: nil, defaultValue: "4", help: "WAL objects uploading at once"),
        .init(name: "log.cache.bytes", flag: nil, defaultValue: "268435456", help: "memory for recent batches (tail reads)"),
        .init(name: "block.cache.bytes", flag: nil, defaultValue: "268435456", help: "memory for object blocks (catch-up reads); raise it when tern_block_cache_shared_gets_total{result=\"refused\"} grows"),
        .init(name: "block.cache.block.bytes", flag: nil, defaultValue: "524288", help: "block cache unit: ranged GETs are aligned to it; the smallest readahead"),
        .init(name: "block.cache.readahead.max.bytes", flag: nil, defaultValue: "33554432", help: "largest readahead of a sequential catch-up reader"),
        .init(name: "block.cache.prefetch.objects", flag: nil, defaultValue: "2", help: "objects a catch-up reader's GETs run ahead by, in the background (stream set objects whole, shared by their partitions' readers), while read-ahead holds less than half of block.cache.bytes; 0: none"),
        .init(name: "auto.create.topics.enable", flag: nil, defaultValue: "true", help: "create unknown topics named in metadata requests that allow it"),
        .init(name: "num.partitions", flag: nil, defaultValue: "1", help: "partitions of auto-created topics and of CreateTopics with -1"),
        .init(name: "default.replication.factor", flag: nil, defaultValue: "1", help: "reported replication factor (data durability comes from the object store)"),
        .init(name: "message.max.bytes", flag: nil, defaultValue: "1048588", help: "largest record batch; the default of topic max.message.bytes"),
        .init(name: "socket.request.max.bytes", flag: nil, defaultValue: "104857600", help: "largest request frame; larger closes the connection"),
        .init(name: "offset.metadata.max.bytes", flag: nil, defaultValue: "4096", help: "largest metadata string of a committed offset"),
        .init(name: "group.initial.rebalance.delay.ms", flag: nil, defaultValue: "3000", help: "how long a new or empty consumer group waits for more members before its first rebalance"),
        .init(name: "group.min.session.timeout.ms", flag: nil, defaultValue: "6000", help: "shortest session timeout a group member may ask for (else INVALID_SESSION_TIMEOUT)"),
        .init(name: "group.max.session.timeout.ms", flag: nil, defaultValue: "1800000", help: "longest session timeout a group member may ask for (else INVALID_SESSION_TIMEOUT)"),
        .init(name: "group.max.size", flag: nil, defaultValue: "2147483647", help: "most members of one consumer group (else GROUP_MAX_SIZE_REACHED)"),
        .init(name: "group.coordinator.rebalance.protocols", flag: nil, defaultValue: "classic,consumer", help: "group protocols served: classic, and consumer (KIP-848, ConsumerGroupHeartbeat)"),
        .init(name: "group.consumer.heartbeat.interval.ms", flag: nil, defaultValue: "5000", help: "heartbeat interval given to consumer-protocol (KIP-848) members"),
        .init(name: "group.consumer.session.timeout.ms", flag: nil, defaultValue: "45000", help: "consumer-protocol members are removed after this long without a heartbeat"),
        .init(name: "offsets.retention.minutes", flag: nil, defaultValue: "10080", help: "committed offsets expire this long after their commit, or after their group became empty"),
        .init(name: "offsets.retention.check.interval.ms", flag: nil, defaultValue: "600000", help: "how often expired committed offsets are deleted"),
        .init(name: "transaction.max.timeout.ms", flag: nil, defaultValue: "900000", help: "longest transaction.timeout.ms a producer may ask for (else INVALID_TRANSACTION_TIMEOUT)"),
        .init(name: "transactional.id.expiration.ms", flag: nil, defaultValue: "604800000", help: "a transactional id idle this long with no open transaction is forgotten"),
        .init(name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", flag: nil, defaultValue: "10000", help: "how often transactions past their timeout are aborted"),
        .init(name: "log.retention.check.interval.ms", flag: nil, defaultValue: "300000", help: "how often topics' retention.ms and retention.bytes are applied"),
        .init(name: "log.retention.bytes", flag: nil, defaultValue: "-1", help: "default retention.bytes of topics that set none (-1: no size limit)"),
        .init(name: "metadata.snapshot.interval.ms", flag: nil, defaultValue: "60000", help: "how often the metadata store is snapshotted to <cluster>/meta/snapshots/ in the bucket, for tern admin rebuild-metadata (0: never); by the controller only"),
        .init(name: "metadata.snapshot.retain", flag: nil, defaultValue: "3", help: "how many metadata snapshots to keep in the bucket"),
        .init(name: "object.gc.grace.ms", flag: nil, defaultValue: "60000", help: "how long an unreferenced object stays in the bucket before it is deleted (readers may hold it)"),
        .init(name: "object.gc.interval.ms", flag: nil, defaultValue: "10000", help: "how often unreferenced objects are marked and deleted"),
        .init(name: "object.store.max.bytes.per.sec", flag: nil, defaultValue: "0", help: "object-store bandwidth of all traffic together, 0 for no limit: WAL uploads never wait but count; catch-up reads, then compaction, wait for what is left"),
        .init(name: "catchup.read.max.bytes.per.sec", flag: nil, defaultValue: "0", help: "object-store reads for fetches that miss the log cache (0: no limit of their own)"),
        .init(name: "compaction.min.bytes.per.sec", flag: nil, defaultValue: "4194304", help: "what compaction may still use when object.store.max.bytes.per.sec is used up or produce is backed up on the object store, so that object and row counts stay bounded"),
        .init(name: "compaction.interval.ms", flag: nil, defaultValue: "30000", help: "how often to look for small objects to compact"),
        .init(name: "compaction.max.bytes.per.sec", flag: nil, defaultValue: "33554432", help: "compaction's share of object-store bandwidth (read + written), each of its requests paced to it"),
        .init(name: "compaction.sso.max.bytes", flag: nil, defaultValue: "67108864", help: "the largest object compaction writes; it holds about this much in memory (what one output reads; the output is written from it); objects half this full are not merged again"),
        .init(name: "compaction.gather.quiet.ms", flag: nil, defaultValue: "300000", help: "how long this broker's merged SSOs must stay unchanged before a gather rewrites them all so that each partition's data sits in one object (before that, a gather waits until the SSOs not yet gathered hold as many bytes as the gathered ones)"),
        .init(name: "compaction.sso.min.objects", flag: nil, defaultValue: "16", help: "small SSOs are merged once there are this many, or once the oldest has waited compaction.sso.max.delay.ms (or there is half of compaction.sso.max.bytes of them, or a partition to split out)"),
        .init(name: "compaction.sso.max.delay.ms", flag: nil, defaultValue: "10000", help: "how long a small SSO waits for others to be merged with; bounds how long a deleted topic's data stays in shared WAL objects"),
        .init(name: "stream.object.split.bytes", flag: nil, defaultValue: "8388608", help: "a partition with this much contiguous data in a compaction run gets its own stream object"),
        .init(name: "broker.rack", flag: nil, defaultValue: "", help: "this broker's rack (zone), reported in metadata"),
        .init(name: "broker.session.timeout.ms", flag: nil, defaultValue: "9000", help: "a broker whose lease is not renewed for this long is failed over"),
        .init(name: "broker.heartbeat.interval.ms", flag: nil, defaultValue: "2000", help: "how often a broker renews its lease"),
        .init(name: "cluster.poll.interval.ms", flag: nil, defaultValue: "100", help: "how often a broker reads the cluster's state (placement, live brokers) from the metadata store"),
        .init(name: "balancer.enable", flag: nil, defaultValue: "true", help: "the controller moves partitions so that every broker's traffic stays near the average"),
        .init(name: "balancer.interval.ms", flag: nil, defaultValue: "30000", help: "how often the controller balances"),
        .init(name: "balancer.tolerance.percent", flag: nil, defaultValue: "10", help: "a broker within this many percent of the average traffic is balanced"),
        .init(name: "balancer.min.bytes.per.sec", flag: nil, defaultValue: "1048576", help: "brokers with less traffic (in + out) than this are not moved from"),
        .init(name: "balancer.max.moves", flag: nil, defaultValue: "5", help: "most partition moves per balancing round"),
        .init(name: "shutdown.flush.timeout.ms", flag: nil, defaultValue: "30000", help: "on SIGTERM, how long to wait for the last uploads"),
        .init(name: "object.store.fault.<request>.delay.ms", flag: nil, defaultValue: "0", help: "testing: delay each put/get/head/list/delete"),
        .init(name: "object.store.fault.<request>.error.rate", flag: nil, defaultValue: "0", help: "testing: fail this share of put/get/head/list/delete"),
        .init(name: "object.store.fault.<request>.timeout.rate", flag: nil, defaultValue: "0", help: "testing: this share hangs timeout.ms, then fails"),
        .init(name: "object.store.fault.<request>.timeout.ms", flag: nil, defaultValue: "1000", help: "testing: how long an injected timeout hangs"),
        .init(name: "object.store.fault.<request>.fail.nth", flag: nil, defaultValue: "0", help: "testing: the N-th request of that type fails, once"),
        .init(name: "object.store.fault.<request>.lost.rate", flag: nil, defaultValue: "0", help: "testing: this share succeeds in the store but its answer is lost"),
        .init(name: "object.store.fault.<request>.lost.nth", flag: nil, defaultValue: "0", help: "testing: the N-th request to succeed in the store has its answer lost"),
    ]

    public var dataDir = "./tern-data"
    public var listen = HostPort(host: "0.0.0.0", port: 9092)
    public var advertise = HostPort(host: "localhost", port: 9092)
    public var nodeId: Int32 = 1
    public var objectStoreURL = ""
    /// The file WAL's directory (`wal = file://DIR`); nil for the S3 WAL.
    public var walDirectory: String?
    /// `wal.sync.min.interval.us`.
    public var walSyncMinIntervalUs = 500
    public var metadataURL = ""
    public var metricsListen = HostPort(host: "127.0.0.1", port: 9644)
    /// `internal.listeners`: where other brokers send internal requests; nil for none (one
    /// broker on SQLite has no peers).
    public var internalListen: HostPort?
    /// `s3.*`: how to reach an `s3://` object store.
    public var s3 = S3Settings()
    public var storage = StorageConfig()
    public var autoCreateTopics = true
    public var numPartitions: Int32 = 1
    public var defaultReplicationFactor: Int16 = 1
    public var messageMaxBytes: Int32 = 1_048_588
    public var socketRequestMaxBytes = 104_857_600
    public var offsetMetadataMaxBytes = 4096
    public var shutdownFlushTimeoutMs = 30_000
    public var retentionCheckIntervalMs = 300_000
    /// `offsets.retention.minutes` (7 days), in milliseconds.
    public var offsetsRetentionMs: Int64 = 10_080 * 60_000
    /// `offsets.retention.check.interval.ms`.
    public var offsetsRetentionCheckIntervalMs = 600_000
    /// `log.retention.bytes`: the default of topic `retention.bytes`.
    public var retentionBytes: Int64 = -1
    /// `metadata.snapshot.interval.ms` (0: off) and `metadata.snapshot.retain`.
    public var metadataSnapshotIntervalMs = 60_000
    public var metadataSnapshotRetain = 3
    /// `object.gc.*`: garbage collection of unreferenced objects.
    public var garbageCollection = GarbageCollectionConfig()
    /// `compaction.*`, `stream.object.split.bytes`.
    public var compaction = CompactionConfig()
    /// `group.*` settings of the classic group coordinator.
    public var groupCoordinator = GroupCoordinatorConfiguration()
    /// `transaction.*` settings of the transaction coordinator.
    var transactionCoordinator = TransactionCoordinatorConfiguration()
    public var transactionAbortCheckIntervalMs: Int { transactionCoordinator.abortCheckIntervalMs }
    /// `broker.*` and `cluster.*`: leases and placement.
    public var cluster = ClusterConfig()
    /// `object.store.fault.*` settings, checked by the object-store layer.
    public var faults: [String: String] = [:]

    public init() {}

    /// Builds the configuration from merged settings (flags, environment and file already
    /// layered by the caller). Unknown names and bad values are refused.
    public static func resolve(_ raw: [String: String]) throws -> BrokerConfig {
        var c = BrokerConfig()
        let int = SettingValues(raw).int, bool = SettingValues(raw).bool
        let known = Set(settings.map(\.name))
        for k in raw.keys where !known.contains(k) && !k.hasPrefix("object.store.fault.") {
            throw ConfigError("unknown setting '\(k)' (see tern serve --help)")
        }
        if let v = raw["data.dir"] { c.dataDir = v }
        if let v = raw["listeners"] { c.listen = try HostPort.parse(v.split(separator: ",").first.map(String.init) ?? v, setting: "listeners") }
        if let v = raw["advertised.listeners"] {
            c.advertise = try HostPort.parse(v.split(separator: ",").first.map(String.init) ?? v, setting: "advertised.listeners")
        } else {
            c.advertise = HostPort(host: "localhost", port: c.listen.port)
        }
        if let n = try int("node.id", 0...Int(Int32.max)) { c.nodeId = Int32(n) }
        c.objectStoreURL = raw["object.store"] ?? "file://\(c.dataDir)/objects"
        if !c.objectStoreURL.hasPrefix("file://") && !c.objectStoreURL.hasPrefix("s3://") {
            throw ConfigError("object.store: expected file://DIR or s3://BUCKET[/PREFIX], got '\(c.objectStoreURL)'")
        }
        c.s3 = try S3Settings.resolve(raw)
        c.metadataURL = raw["metadata"] ?? "sqlite://\(c.dataDir)/metadata.sqlite"
        if let v = raw["internal.listeners"] {
            c.internalListen = try HostPort.parse(v, setting: "internal.listeners")
        } else if !c.metadataURL.hasPrefix("sqlite://") {
            c.internalListen = HostPort(host: c.listen.host, port: 0)
        }
        if let v = raw["wal"], v != "object" {
            guard v.hasPrefix("file://"), v.count > "file://".count else {
                throw ConfigError("wal: expected 'object' (the S3 WAL) or file://DIR (the file WAL), got '\(v)'")
            }
            c.walDirectory = String(v.dropFirst("file://".count))
        }
        if let v = raw["metrics.listen"] { c.metricsListen = try HostPort.parse(v, setting: "metrics.listen") }
        if let n = try int("wal.sync.min.interval.us", 0...1_000_000) { c.walSyncMinIntervalUs = n }
        if let n = try int("wal.upload.bytes", 1024...(1 << 30)) { c.storage.uploadBytes = n }
        if let n = try int("wal.upload.interval.ms", 1...60_000) { c.storage.uploadIntervalMs = n }
        if let n = try int("wal.upload.idle.ms", 0...60_000) { c.storage.uploadIdleMs = n }
        if let n = try int("wal.buffer.max.bytes", 1 << 20...(16 << 30)) { c.storage.maxUnflushedBytes = n }
        if let n = try int("wal.upload.concurrency", 1...64) { c.storage.maxConcurrentUploads = n }
        if let n = try int("log.cache.bytes", 0...(1 << 40)) { c.storage.logCacheBytes = n }
        if let n = try int("block.cache.bytes", 0...(1 << 40)) { c.storage.blockCacheBytes = n }
        if let n = try int("block.cache.block.bytes", 4096...(64 << 20)) { c.storage.blockCacheBlockBytes = n }
        if let n = try int("block.cache.readahead.max.bytes", 4096...(1 << 30)) { c.storage.readaheadMaxBytes = n }
        if let n = try int("block.cache.prefetch.objects", 0...64) { c.storage.prefetchObjects = n }
        if let b = try bool("auto.create.topics.enable") { c.autoCreateTopics = b }
        if let n = try int("num.partitions", 1...100_000) { c.numPartitions = Int32(n) }
        if let n = try int("default.replication.factor", 1...Int(Int16.max)) { c.defaultReplicationFactor = Int16(n) }
        if let n = try int("message.max.bytes", 0...Int(Int32.max)) { c.messageMaxBytes = Int32(n) }
        if let n = try int("socket.request.max.bytes", 1024...Int(Int32.max)) { c.socketRequestMaxBytes = n }
        if let n = try int("offset.metadata.max.bytes", 0...Int(Int32.max)) { c.offsetMetadataMaxBytes = n }
        if let n = try int("shutdown.flush.timeout.ms", 0...3_600_000) { c.shutdownFlushTimeoutMs = n }
        if let n = try int("log.retention.check.interval.ms", 1...Int(Int32.max)) { c.retentionCheckIntervalMs = n }
        if let n = try int("offsets.retention.minutes", 1...Int(Int32.max)) { c.offsetsRetentionMs = Int64(n) * 60_000 }
        if let n = try int("offsets.retention.check.interval.ms", 1...Int(Int32.max)) { c.offsetsRetentionCheckIntervalMs = n }
        if let n = try int("transaction.max.timeout.ms", 1...Int(Int32.max)) { c.transactionCoordinator.maxTimeoutMs = Int32(n) }
        if let n = try int("transactional.id.expiration.ms", 1...Int(Int32.max)) { c.transactionCoordinator.idExpirationMs = Int64(n) }
        if let n = try int("transaction.abort.timed.out.transaction.cleanup.interval.ms", 1...Int(Int32.max)) { c.transactionCoordinator.abortCheckIntervalMs = n }
        if let n = try int("log.retention.bytes", -1...Int(Int64.max)) { c.retentionBytes = Int64(n) }
        if let n = try int("metadata.snapshot.interval.ms", 0...Int(Int32.max)) { c.metadataSnapshotIntervalMs = n }
        if let n = try int("metadata.snapshot.retain", 1...1000) { c.metadataSnapshotRetain = n }
        if let n = try int("object.gc.grace.ms", 0...Int(Int64(Int32.max) * 1000)) { c.garbageCollection.graceMs = Int64(n) }
        if let n = try int("object.gc.interval.ms", 1...Int(Int32.max)) { c.garbageCollection.intervalMs = n }
        if let n = try int("object.store.max.bytes.per.sec", 0...(1 << 40)) { c.storage.throughput.totalBytesPerSec = n }
        if let n = try int("catchup.read.max.bytes.per.sec", 0...(1 << 40)) { c.storage.throughput.catchUpBytesPerSec = n }
        if let n = try int("compaction.min.bytes.per.sec", 0...(1 << 40)) { c.storage.throughput.compactionFloorBytesPerSec = n }
        if let n = try int("compaction.interval.ms", 1...Int(Int32.max)) { c.compaction.intervalMs = n }
        if let n = try int("compaction.max.bytes.per.sec", 1...(1 << 40)) { c.storage.throughput.compactionBytesPerSec = n }
        if let n = try int("compaction.sso.max.bytes", 1 << 20...(16 << 30)) { c.compaction.ssoMaxBytes = n }
        if let n = try int("stream.object.split.bytes", 1024...(1 << 40)) { c.compaction.splitBytes = n }
        if let n = try int("compaction.sso.min.objects", 2...10_000) { c.compaction.minMergeObjects = n }
        if let n = try int("compaction.sso.max.delay.ms", 0...Int(Int32.max)) { c.compaction.maxMergeDelayMs = Int64(n) }
        if let n = try int("compaction.gather.quiet.ms", 0...Int(Int64(Int32.max) * 1000)) { c.compaction.gatherQuietMs = Int64(n) }
        if let n = try int("group.initial.rebalance.delay.ms", 0...Int(Int32.max)) { c.groupCoordinator.initialRebalanceDelayMs = Int64(n) }
        if let n = try int("group.min.session.timeout.ms", 0...Int(Int32.max)) { c.groupCoordinator.minSessionTimeoutMs = Int32(n) }
        if let n = try int("group.max.session.timeout.ms", 0...Int(Int32.max)) { c.groupCoordinator.maxSessionTimeoutMs = Int32(n) }
        if let n = try int("group.max.size", 1...Int(Int32.max)) { c.groupCoordinator.maxSize = n }
        if let v = raw["group.coordinator.rebalance.protocols"] {
            let protocols = Set(v.split(separator: ",").map { $0.trimmingWhitespace().lowercased() }.filter { !$0.isEmpty })
            let unknown = protocols.subtracting(["classic", "consumer"])
            guard unknown.isEmpty else {
                throw ConfigError("group.coordinator.rebalance.protocols: unknown protocol(s) \(unknown.sorted().joined(separator: ", ")) (expected classic, consumer)")
            }
            // GroupCoordinatorConfig: the classic protocol must be enabled.
            guard protocols.contains("classic") else {
                throw ConfigError("group.coordinator.rebalance.protocols: 'classic' must be enabled, got '\(v)'")
            }
            c.groupCoordinator.consumerProtocolEnabled = protocols.contains("consumer")
        }
        if let n = try int("group.consumer.heartbeat.interval.ms", 1...Int(Int32.max)) { c.groupCoordinator.consumerHeartbeatIntervalMs = Int32(n) }
        if let n = try int("group.consumer.session.timeout.ms", 1...Int(Int32.max)) { c.groupCoordinator.consumerSessionTimeoutMs = Int32(n) }
        if c.groupCoordinator.consumerHeartbeatIntervalMs >= c.groupCoordinator.consumerSessionTimeoutMs {
            throw ConfigError("group.consumer.heartbeat.interval.ms (\(c.groupCoordinator.consumerHeartbeatIntervalMs)) must be below group.consumer.session.timeout.ms (\(c.groupCoordinator.consumerSessionTimeoutMs))")
        }
        if c.groupCoordinator.minSessionTimeoutMs > c.groupCoordinator.maxSessionTimeoutMs {
            throw ConfigError("group.min.session.timeout.ms (\(c.groupCoordinator.minSessionTimeoutMs)) is above group.max.session.timeout.ms (\(c.groupCoordinator.maxSessionTimeoutMs))")
        }
        if let v = raw["broker.rack"] { c.cluster.rack = v.isEmpty ? nil : v }
        if let n = try int("broker.session.timeout.ms", 100...Int(Int32.max)) { c.cluster.sessionTimeoutMs = Int64(n) }
        if let n = try int("broker.heartbeat.interval.ms", 10...Int(Int32.max)) { c.cluster.heartbeatIntervalMs = Int64(n) }
        if let n = try int("cluster.poll.interval.ms", 10...600_000) { c.cluster.pollIntervalMs = n }
        if let b = try bool("balancer.enable") { c.cluster.balancerEnabled = b }
        if let n = try int("balancer.interval.ms", 10...Int(Int32.max)) { c.cluster.balancerIntervalMs = Int64(n) }
        if let n = try int("balancer.tolerance.percent", 1...100) { c.cluster.balancer.tolerance = Double(n) / 100 }
        if let n = try int("balancer.min.bytes.per.sec", 0...Int(Int64.max)) { c.cluster.balancer.floorBytesPerSec = Int64(n) }
        if let n = try int("balancer.max.moves", 1...10_000) { c.cluster.balancer.maxMoves = n }
        if c.cluster.heartbeatIntervalMs >= c.cluster.sessionTimeoutMs {
            throw ConfigError("broker.heartbeat.interval.ms (\(c.cluster.heartbeatIntervalMs)) must be below broker.session.timeout.ms (\(c.cluster.sessionTimeoutMs))")
        }
        c.faults = raw.filter { $0.key.hasPrefix("object.store.fault.") }
        return c
    }
}

/// Typed reads of raw setting values, refusing bad ones by name.
struct SettingValues {
    let raw: [String: String]

    init(_ raw: [String: String]) { self.raw = raw }

    func int(_ k: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let v = raw[k] else { return nil }
        guard let n = Int(v.trimmingWhitespace()), range.contains(n) else {
            throw ConfigError("\(k): expected a whole number in \(range.lowerBound)...\(range.upperBound), got '\(v)'")
        }
        return n
    }

    func bool(_ k: String) throws -> Bool? {
        guard let v = raw[k] else { return nil }
        switch v.trimmingWhitespace().lowercased() {
        case "true": return true
        case "false": return false
        default: throw ConfigError("\(k): expected true or false, got '\(v)'")
        }
    }
}
