import Broker
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ObjectStore
import ServiceLifecycle
import StreamStorage

/// HTTP on `--metrics-listen`: `/metrics` (Prometheus text), `/healthz` (the process is up),
/// `/readyz` (the broker has opened its partitions and accepts requests).
public final class AdminServer: Service, Sendable {
    let broker: Broker
    let meter: ObjectStoreMeter
    let channel: any Channel

    public init(broker: Broker, meter: ObjectStoreMeter, storage: StorageReporter? = nil, listen: (host: String, port: Int)) async throws {
        self.broker = broker
        self.meter = meter
        let b = broker
        let m = meter
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.pipeline.configureHTTPServerPipeline().flatMap {
                    child.pipeline.addHandler(AdminHandler(broker: b, meter: m, storage: storage))
                }
            }
            .bind(host: listen.host, port: listen.port).get()
    }

    public var localPort: Int? { channel.localAddress?.port }

    public func run() async throws {
        try await gracefulShutdown()
        try await channel.close()
    }
}

final class AdminHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let broker: Broker
    let meter: ObjectStoreMeter
    let storage: StorageReporter?

    init(broker: Broker, meter: ObjectStoreMeter, storage: StorageReporter?) {
        self.broker = broker
        self.meter = meter
        self.storage = storage
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        if path == "/admin/storage", let storage {
            // Lists the bucket: off the event loop, answered when done.
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let loop = context.eventLoop
            Task {
                let answer: (HTTPResponseStatus, String)
                do {
                    answer = (.ok, try await storage.report())
                } catch {
                    answer = (.serviceUnavailable, "{\"error\": \"\(StorageReporter.escape("\(error)"))\"}\n")
                }
                loop.execute {
                    let (handler, context) = bound.value
                    handler.respond(context: context, head: head, status: answer.0, body: answer.1, contentType: "application/json")
                }
            }
            return
        }
        let (status, body): (HTTPResponseStatus, String)
        switch path {
        case "/metrics": (status, body) = (.ok, PrometheusText.render(broker: broker, meter: meter) + (storage?.metrics() ?? ""))
        case "/healthz": (status, body) = (.ok, "ok\n")
        case "/readyz": (status, body) = broker.isReady ? (.ok, "ready\n") : (.serviceUnavailable, "not ready\n")
        default: (status, body) = (.notFound, "not found\n")
        }
        respond(context: context, head: head, status: status, body: body,
                contentType: path == "/metrics" ? "text/plain; version=0.0.4" : "text/plain")
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, body: String, contentType: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }
}

/// Renders the broker's and the object store's counters in the Prometheus text format.
public enum PrometheusText {
    public static func render(broker: Broker, meter: ObjectStoreMeter) -> String {
        let s = broker.metrics.snapshot()
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        family("tern_requests_total", "counter", "Kafka requests handled, by API.")
        for (api, a) in s.apis.sorted(by: { $0.key < $1.key }) { out += "tern_requests_total{api=\"\(api)\"} \(a.requests)\n" }
        family("tern_request_errors_total", "counter", "Kafka requests that could not be decoded, by API.")
        for (api, a) in s.apis.sorted(by: { $0.key < $1.key }) { out += "tern_request_errors_total{api=\"\(api)\"} \(a.errors)\n" }
        family("tern_request_duration_seconds", "histogram", "Time from a request's arrival to its response, by API.")
        for (api, a) in s.apis.sorted(by: { $0.key < $1.key }) {
            out += a.duration.prometheusLines("tern_request_duration_seconds", labels: "api=\"\(api)\"")
        }
        family("tern_produced_bytes_total", "counter", "Record batch bytes accepted by produce.")
        out += "tern_produced_bytes_total \(s.producedBytes)\n"
        family("tern_produced_records_total", "counter", "Records accepted by produce.")
        out += "tern_produced_records_total \(s.producedRecords)\n"
        family("tern_fetched_bytes_total", "counter", "Record bytes returned by fetch.")
        out += "tern_fetched_bytes_total \(s.fetchedBytes)\n"
        family("tern_connections", "gauge", "Open Kafka connections.")
        out += "tern_connections \(s.connections)\n"
        family("tern_connections_closed_bad_input_total", "counter", "Connections closed because a request could not be understood.")
        out += "tern_connections_closed_bad_input_total \(s.closedForBadInput)\n"
        let objects = meter.snapshot()
        family("tern_object_store_requests_total", "counter", "Object-store requests, by type.")
        for r in ObjectStoreRequest.allCases { out += "tern_object_store_requests_total{type=\"\(r.rawValue)\"} \(objects[r]?.requests ?? 0)\n" }
        family("tern_object_store_errors_total", "counter", "Failed object-store requests, by type.")
        for r in ObjectStoreRequest.allCases { out += "tern_object_store_errors_total{type=\"\(r.rawValue)\"} \(objects[r]?.errors ?? 0)\n" }
        family("tern_object_store_request_duration_seconds", "histogram", "Object-store request time, by type, failed attempts included.")
        for r in ObjectStoreRequest.allCases {
            out += (objects[r]?.duration ?? DurationHistogram()).prometheusLines("tern_object_store_request_duration_seconds", labels: "type=\"\(r.rawValue)\"")
        }
        family("tern_object_store_bytes_out_total", "counter", "Bytes written to the object store.")
        out += "tern_object_store_bytes_out_total \(objects.values.reduce(0) { $0 + $1.bytesOut })\n"
        family("tern_object_store_bytes_in_total", "counter", "Bytes read from the object store.")
        out += "tern_object_store_bytes_in_total \(objects.values.reduce(0) { $0 + $1.bytesIn })\n"
        let cache = broker.engine.blockCache.stats
        family("tern_block_cache_bytes", "gauge", "Bytes held by the block cache.")
        out += "tern_block_cache_bytes \(cache.bytes)\n"
        family("tern_block_cache_reads_total", "counter", "Block cache reads, by whether every block they needed was cached.")
        out += "tern_block_cache_reads_total{result=\"hit\"} \(cache.hits)\n"
        out += "tern_block_cache_reads_total{result=\"miss\"} \(cache.misses)\n"
        family("tern_block_cache_gets_total", "counter", "Ranged GETs the block cache made (for reads and prefetches).")
        out += "tern_block_cache_gets_total \(cache.gets)\n"
        family("tern_block_cache_prefetches_total", "counter", "Prefetches the block cache started (objects a catch-up reader reads next).")
        out += "tern_block_cache_prefetches_total \(cache.prefetches)\n"
        family("tern_block_cache_shared_gets_total", "counter",
               "Misses in a stream set object that asked to GET bytes its other streams' readers want too: all of them, the aligned windows around the read, or none (no room).")
        out += "tern_block_cache_shared_gets_total{result=\"taken\"} \(cache.sharedTaken)\n"
        out += "tern_block_cache_shared_gets_total{result=\"windows\"} \(cache.sharedWindows)\n"
        out += "tern_block_cache_shared_gets_total{result=\"refused\"} \(cache.sharedRefused)\n"
        let log = broker.engine.logCacheStats
        family("tern_log_cache_bytes", "gauge", "Bytes of recent batches held by the log cache.")
        out += "tern_log_cache_bytes \(log.bytes)\n"
        family("tern_wal_unflushed_bytes", "gauge", "Bytes appended but not yet in an uploaded WAL object (produce waits above wal.buffer.max.bytes).")
        out += "tern_wal_unflushed_bytes \(log.unflushedBytes)\n"
        family("tern_wal_upload_duration_seconds", "histogram", "From a WAL object's flush until it is done in WAL order: its PUT, the fence check, earlier objects (S3 WAL: its produce requests are acked then).")
        out += broker.engine.walUploadDurations.prometheusLines("tern_wal_upload_duration_seconds")
        family("tern_wal_sync_duration_seconds", "histogram", "File WAL: each group commit's write and fdatasync (its produce requests are acked after it).")
        out += broker.engine.walSyncDurations.prometheusLines("tern_wal_sync_duration_seconds")
        family("tern_produce_waiting_appends", "gauge", "Appends waiting for WAL buffer space (backpressure).")
        out += "tern_produce_waiting_appends \(log.waitingAppends)\n"
        if let limiter = broker.engine.throughputLimiter {
            let bytes = limiter.bytesByClass
            family("tern_object_store_class_bytes_total", "counter", "Object-store bytes let through by the throughput limiter, by class.")
            for c in IOClass.allCases { out += "tern_object_store_class_bytes_total{class=\"\(c.label)\"} \(bytes[c] ?? 0)\n" }
        }
        return out
    }
}
