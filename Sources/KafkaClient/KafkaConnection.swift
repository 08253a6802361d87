import KafkaProtocol
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings shared by every connection of a client.
public struct KafkaClientConfiguration: Sendable {
    /// `client.id`, sent in every request header.
    public var clientId: String = "tern"
    /// Sent in ApiVersions v3+; Kafka checks both against `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
    public var softwareName: String = "tern"
    public var softwareVersion: String = "0.0.0"
    public var connectTimeout: TimeAmount = .seconds(10)
    /// How long a request may wait for its response; on expiry the connection is closed, as
    /// Kafka's clients do, since the stream's state is then unknown.
    public var requestTimeout: TimeAmount = .seconds(30)
    /// The largest response frame accepted (fetch responses are the large ones).
    public var maxResponseBytes: Int = 256 * 1024 * 1024
    /// Where large responses are gathered (a pooling allocator spares a reader that takes
    /// many MiB per second the page faults of fresh buffers).
    public var responseAllocator = ByteBufferAllocator()

    public init() {}
}

/// One TCP connection to one broker: length-prefixed frames, correlation ids, and the API
/// versions negotiated at connect time.
///
/// `send` may be called from many tasks at once; requests are written in call order and
/// pipelined (each awaits only its own response), which is what a load generator needs. The
/// broker answers in request order; responses are matched by correlation id all the same.
public final class KafkaConnection: Sendable {
    public let address: BrokerAddress
    /// The broker's versions by API key, from its ApiVersions response.
    public let brokerVersions: [Int16: ClosedRange<Int16>]
    let channel: any Channel
    let configuration: KafkaClientConfiguration
    private let correlationIds = Atomic<Int32>(1)

    private init(address: BrokerAddress, channel: any Channel, configuration: KafkaClientConfiguration,
                 brokerVersions: [Int16: ClosedRange<Int16>]) {
        self.address = address
        self.channel = channel
        self.configuration = configuration
        self.brokerVersions = brokerVersions
    }

    /// Connects and negotiates API versions.
    public static func connect(to address: BrokerAddress, configuration: KafkaClientConfiguration = .init(),
                               group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> KafkaConnection {
        let maxFrame = configuration.maxResponseBytes
        let allocator = configuration.responseAllocator
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ResponseFrameDecoder(maxFrameSize: maxFrame, allocator: allocator)))
                    try channel.pipeline.syncOperations.addHandler(ClientHandler(address: address))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: address.host, port: address.port).get()
        } catch {
            throw KafkaClientError(.connectionFailed, "cannot connect to \(address): \(Self.describeConnectError(error))")
        }
        // Negotiate on a provisional connection that knows only ApiVersions itself.
        let provisional = KafkaConnection(address: address, channel: channel, configuration: configuration,
                                          brokerVersions: [ApiKey.apiVersions.rawValue: ApiKey.apiVersions.versions])
        do {
            let versions = try await provisional.negotiate()
            return KafkaConnection(address: address, channel: channel, configuration: configuration, brokerVersions: versions)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// ApiVersions at our highest version; a broker that does not know it answers
    /// UNSUPPORTED_VERSION with its own range in a v0 body, and we retry at its highest.
    private func negotiate() async throws -> [Int16: ClosedRange<Int16>] {
        var request = ApiVersionsRequest()
        request.clientSoftwareName = configuration.softwareName
        request.clientSoftwareVersion = configuration.softwareVersion
        var version = ApiKey.apiVersions.versions.upperBound
        for _ in 0..<2 {
            var body = try await exchange(request, version: version)
            let errorCode = body.getInteger(at: body.readerIndex, as: Int16.self) ?? 0
            let decodeVersion = errorCode == ErrorCode.unsupportedVersion.rawValue ? 0 : version
            let response: ApiVersionsResponse
            do {
                response = try ApiVersionsResponse(from: &body, version: decodeVersion)
            } catch {
                throw KafkaClientError(.protocolViolation, "\(address) sent an ApiVersions response we cannot parse: \(error)")
            }
            var versions: [Int16: ClosedRange<Int16>] = [:]
            for k in response.apiKeys where k.minVersion <= k.maxVersion { versions[k.apiKey] = k.minVersion...k.maxVersion }
            if response.errorCode == 0 { return versions }
            guard response.errorCode == ErrorCode.unsupportedVersion.rawValue,
                  let theirs = versions[ApiKey.apiVersions.rawValue],
                  let retry = Self.highestCommon(ApiKey.apiVersions.versions, theirs), retry < version else {
                throw KafkaClientError(kafka: response.errorCode, "ApiVersions to \(address)")
            }
            version = retry
        }
        throw KafkaClientError(.unsupportedVersion, "\(address) refused every ApiVersions version we offered")
    }

    static func highestCommon(_ a: ClosedRange<Int16>, _ b: ClosedRange<Int16>) -> Int16? {
        let hi = min(a.upperBound, b.upperBound)
        return hi >= max(a.lowerBound, b.lowerBound) ? hi : nil
    }

    /// Whether the broker offers the API at a version our codecs handle.
    public func supports(_ api: ApiKey) -> Bool {
        brokerVersions[api.rawValue].flatMap { Self.highestCommon(api.versions, $0) } != nil
    }

    /// The highest version of `api` that both the broker and our codecs support.
    public func version(for api: ApiKey) throws -> Int16 {
        guard let theirs = brokerVersions[api.rawValue] else {
            throw KafkaClientError(.unsupportedVersion, "the broker at \(address) does not support \(api.kafkaName) (API key \(api.rawValue))")
        }
        guard let v = Self.highestCommon(api.versions, theirs) else {
            throw KafkaClientError(.unsupportedVersion,
                                   "the broker at \(address) supports \(api.kafkaName) v\(theirs.lowerBound)-\(theirs.upperBound), we support v\(api.versions.lowerBound)-\(api.versions.upperBound)")
        }
        return v
    }

    public var isActive: Bool { channel.isActive }

    /// Sends a request at the negotiated version (or `version`) and waits for its response.
    public func send<R: KafkaRequest>(_ request: R, version: Int16? = nil) async throws -> R.Response {
        guard let api = ApiKey(rawValue: R.apiKey) else {
            throw KafkaClientError(.unsupportedVersion, "API key \(R.apiKey) has no codec")
        }
        let v = try version ?? self.version(for: api)
        var body = try await exchange(request, version: v)
        do {
            return try R.Response(from: &body, version: v)
        } catch {
            throw KafkaClientError(.protocolViolation, "\(address) sent a \(api.kafkaName) v\(v) response we cannot parse: \(error)")
        }
    }

    /// Sends a request that gets no response (Produce with acks=0); returns once it is written.
    public func sendWithoutResponse<R: KafkaRequest>(_ request: R, version: Int16? = nil) async throws {
        try await submitWithoutResponse(request, version: version).get()
    }

    /// Sends a request and completes the future with its decoded response on the
    /// connection's event loop. For load generators, which time each response as it arrives
    /// and must not wait for a Swift concurrency thread to be free to do so.
    /// `frameCapacity`: the expected size of the encoded request (a produce request's
    /// batches), so that its buffer is allocated once rather than grown.
    public func submit<R: KafkaRequest>(_ request: R, version: Int16? = nil, frameCapacity: Int = 256) -> EventLoopFuture<R.Response> {
        let v: Int16
        do {
            v = try negotiatedVersion(R.self, version)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        let address = self.address
        return exchangeFuture(request, version: v, frameCapacity: frameCapacity).flatMapThrowing { body in
            var body = body
            do {
                return try R.Response(from: &body, version: v)
            } catch {
                throw KafkaClientError(.protocolViolation,
                                       "\(address) sent a \(ApiKey(rawValue: R.apiKey)?.kafkaName ?? "") v\(v) response we cannot parse: \(error)")
            }
        }
    }

    /// `sendWithoutResponse` as a future, completed once the request is written.
    public func submitWithoutResponse<R: KafkaRequest>(_ request: R, version: Int16? = nil, frameCapacity: Int = 256) -> EventLoopFuture<Void> {
        let v: Int16
        do {
            v = try negotiatedVersion(R.self, version)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        let frame = encode(request, version: v, correlationId: nextCorrelationId(), capacity: frameCapacity)
        let address = self.address
        return channel.writeAndFlush(Outbound(frame: frame, correlationId: -1, response: nil)).flatMapErrorThrowing { error in
            throw error as? KafkaClientError ?? KafkaClientError(.connectionClosed, "cannot write to \(address): \(error)")
        }
    }

    private func negotiatedVersion<R: KafkaRequest>(_: R.Type, _ version: Int16?) throws -> Int16 {
        guard let api = ApiKey(rawValue: R.apiKey) else {
            throw KafkaClientError(.unsupportedVersion, "API key \(R.apiKey) has no codec")
        }
        return try version ?? self.version(for: api)
    }

    /// Writes the request and returns the response body after its header.
    private func exchange<R: KafkaMessage>(_ request: R, version: Int16) async throws -> ByteBuffer {
        try await exchangeFuture(request, version: version, frameCapacity: 256).get()
    }

    private func exchangeFuture<R: KafkaMessage>(_ request: R, version: Int16, frameCapacity: Int) -> EventLoopFuture<ByteBuffer> {
        let correlationId = nextCorrelationId()
        let frame = encode(request, version: version, correlationId: correlationId, capacity: frameCapacity)
        let promise = channel.eventLoop.makePromise(of: ByteBuffer.self)
        let channel = self.channel
        let timeout = configuration.requestTimeout
        let address = self.address
        // Built only when needed: the hot path sends many requests and fails few.
        @Sendable func what() -> String { "\(ApiKey(rawValue: R.apiKey)?.kafkaName ?? "API \(R.apiKey)") request to \(address)" }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(KafkaClientError(.timedOut, "\(what()) got no response within \(timeout.nanoseconds / 1_000_000) ms"))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        let written = channel.eventLoop.makePromise(of: Void.self)
        // A write that fails never reaches the pending table's cleanup: fail the response too
        // (a promise completed twice keeps its first result).
        written.futureResult.whenFailure { error in
            promise.fail(error as? KafkaClientError ?? KafkaClientError(.connectionClosed, "cannot write the \(what()): \(error)"))
        }
        channel.writeAndFlush(Outbound(frame: frame, correlationId: correlationId, response: promise), promise: written)
        let flexible = ResponseHeader.isFlexible(apiKey: R.apiKey, version: version)
        return promise.futureResult.flatMapThrowing { body in
            guard flexible else { return body }
            var body = body
            do {
                try body.skipTaggedFields()
            } catch {
                throw KafkaClientError(.protocolViolation, "\(address) sent a bad response header: \(error)")
            }
            return body
        }
    }

    private func nextCorrelationId() -> Int32 {
        // Wraps past Int32.max back to 1; ids only need to be unique among requests in flight.
        var id = correlationIds.wrappingAdd(1, ordering: .relaxed).oldValue
        if id <= 0 {
            correlationIds.store(2, ordering: .relaxed)
            id = 1
        }
        return id
    }

    private func encode<R: KafkaMessage>(_ request: R, version: Int16, correlationId: Int32, capacity: Int) -> ByteBuffer {
        var b = channel.allocator.buffer(capacity: max(64, capacity))
        b.writeInteger(Int32(0))
        let flexible = ApiKey(rawValue: R.apiKey)?.firstFlexibleVersion.map { version >= $0 } ?? false
        RequestHeader(apiKey: R.apiKey, apiVersion: version, correlationId: correlationId, clientId: configuration.clientId)
            .encode(into: &b, flexible: flexible)
        request.encode(into: &b, version: version)
        b.setInteger(Int32(b.readableBytes - 4), at: b.readerIndex)
        return b
    }

    public func close() async {
        try? await channel.close()
    }

    /// "connection refused", "timed out after 10000 ms", "cannot resolve host": what a person
    /// wants to read, without NIO's type names.
    static func describeConnectError(_ error: any Error) -> String {
        func one(_ e: any Error) -> String {
            if let io = e as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
            if case ChannelError.connectTimeout(let t) = e { return "timed out after \(t.nanoseconds / 1_000_000) ms" }
            return "\(e)"
        }
        if let e = error as? NIOConnectionError {
            if !e.connectionErrors.isEmpty {
                let reasons = e.connectionErrors.map { one($0.error) }
                var seen = Set<String>()
                return reasons.filter { seen.insert($0).inserted }.joined(separator: "; ")
            }
            if e.dnsAError != nil || e.dnsAAAAError != nil { return "cannot resolve host \(e.host)" }
        }
        return one(error)
    }
}

/// What `KafkaConnection` writes into the pipeline: a framed request and, unless the request
/// gets no response, the promise its response completes.
struct Outbound: Sendable {
    var frame: ByteBuffer
    var correlationId: Int32
    var response: EventLoopPromise<ByteBuffer>?
}

/// Keeps the table of requests awaiting responses; fails them all when the connection ends.
final class ClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Outbound
    typealias OutboundOut = ByteBuffer

    private let address: BrokerAddress
    private var pending: [Int32: EventLoopPromise<ByteBuffer>] = [:]
    /// Set once the connection is unusable; later writes fail with it at once.
    private var failure: KafkaClientError?

    init(address: BrokerAddress) { self.address = address }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let out = unwrapOutboundIn(data)
        if let failure {
            out.response?.fail(failure)
            promise?.fail(failure)
            return
        }
        if let r = out.response { pending[out.correlationId] = r }
        context.write(wrapOutboundOut(out.frame), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        guard let id = frame.readInteger(as: Int32.self), let promise = pending.removeValue(forKey: id) else {
            fail(context, KafkaClientError(.protocolViolation, "\(address) sent a response to no request we made"))
            return
        }
        promise.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(failure ?? KafkaClientError(.connectionClosed, "\(address) closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let e = error as? KafkaClientError ?? KafkaClientError(.connectionClosed, "connection to \(address) failed: \(KafkaConnection.describeConnectError(error))")
        fail(context, e)
    }

    private func fail(_ context: ChannelHandlerContext, _ error: KafkaClientError) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: KafkaClientError) {
        if failure == nil { failure = error }
        let waiting = pending
        pending = [:]
        for (_, p) in waiting { p.fail(failure ?? error) }
    }
}

extension ApiKey {
    /// Kafka's name of the API (`IncrementalAlterConfigs`), for messages.
    public var kafkaName: String {
        let s = "\(self)"
        return s.prefix(1).uppercased() + s.dropFirst()
    }
}
