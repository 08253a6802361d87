import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// An S3-compatible bucket (AWS S3, MinIO, SeaweedFS, R2, Tigris, GCS's XML API, ...).
///
/// One `HTTPClient` on the shared event loop group, HTTP/1.1 with a connection pool sized by
/// `S3Configuration.maxConnections`, every body sent with a known length (S3 refuses chunked
/// uploads without the streaming signature). Each request is retried with exponential
/// backoff and jitter while the failure is transient (5xx, `SlowDown`, `RequestTimeout`,
/// resets, timeouts) and never when it cannot succeed (other 4xx). A conditional PUT whose
/// outcome is unknown is checked with a HEAD (size and ETag) before it is sent again.
public final class S3ObjectStore: ObjectStore {
    public let config: S3Configuration
    public let builder: S3RequestBuilder
    private let client: HTTPClient
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger

    /// Every request sent, by S3 operation (retries included), for cost accounting.
    public let requests = S3RequestCounter()

    public init(config: S3Configuration, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "tern.s3")) throws {
        self.config = config
        self.builder = try S3RequestBuilder(config)
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        var http = HTTPClient.Configuration(
            redirectConfiguration: .disallow,  // a 301 means a wrong region: report it, don't follow
            timeout: .init(connect: .milliseconds(Int64(config.connectTimeoutMs)), read: .milliseconds(Int64(config.requestTimeoutMs))),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: config.maxConnections),
            decompression: .disabled)
        http.httpVersion = .http1Only
        // Socket reads of a fixed 256 KiB instead of NIO's adaptive 64 KiB at most: a 32 MiB GET
        // takes ~130 reads, and each channel reuses the same few buffers, which stay mapped and
        // in cache. (An adaptive allocator up to 1 MiB reallocated its buffer whenever it grew
        // or shrank; those fresh pages were a third of the client's page faults on large GETs.)
        // AHC has no other hook for channel options.
        http.http1_1ConnectionDebugInitializer = { channel in
            channel.setOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 256 << 10))
        }
        self.client = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: http)
    }

    /// Closes the connection pool; call once, after the last request.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    /// The Content-Type our objects are written with: S3's own default for objects sent without
    /// one, so AWS stores nothing different. Named, not left out: SeaweedFS gzips every 4 MiB
    /// chunk of an object without a type (or `application/octet-stream`) whose first 128 bytes
    /// compress, which record batches of text do, and un-gzips it on every GET. That cost it 2-3
    /// more CPU seconds per GB written, and halved what it served a catch-up read (4.2 against
    /// 1.2 CPU s/GB for the same bytes stored with a type).
    public static let contentType = ("content-type", "binary/octet-stream")

    // MARK: ObjectStore

    public func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        do {
            if body.readableBytes > config.partSize {
                try await putMultipart(config.prefix + key, body, ifNoneMatch: ifNoneMatch)
            } else {
                await TransferPacing.current?.take(body.readableBytes)
                try await putSingle(config.prefix + key, body, ifNoneMatch: ifNoneMatch)
            }
        } catch let e as S3Error {
            throw Self.storeError(e, key: key)
        }
    }

    /// Each part of a GET's body waits for `TransferPacing.current` before the next is read.
    public var pacesDownloads: Bool { true }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        try await get(key, range: range, split: nil).first ?? ByteBuffer()
    }

    public func get(_ key: String, range: Range<Int>?, pieceBytes: Int) async throws -> [ByteBuffer] {
        try await get(key, range: range, split: max(1, pieceBytes))
    }

    /// In one buffer (`split` nil) or in pieces of `split` bytes, none empty.
    private func get(_ key: String, range: Range<Int>?, split: Int?) async throws -> [ByteBuffer] {
        do {
            if let range, range.isEmpty {
                // S3 has no empty range; answer it as the local store does.
                guard let info = try await headObject(config.prefix + key) else { throw ObjectStoreError(.notFound, key) }
                guard range.lowerBound >= 0, range.lowerBound <= info.size else { throw ObjectStoreError(.invalidRange, "\(key) \(range) of \(info.size)") }
                return split == nil ? [ByteBuffer()] : []
            }
            return try await retrying("GET \(key)") {
                try await self.getOnce(self.config.prefix + key, range: range, split: split)
            }
        } catch let e as S3Error {
            throw Self.storeError(e, key: key)
        }
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        do {
            return try await headObject(config.prefix + key).map { ObjectInfo(key: key, size: $0.size) }
        } catch let e as S3Error {
            throw Self.storeError(e, key: key)
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        do {
            var out: [ObjectInfo] = []
            var token: String?
            repeat {
                let page = try await retrying("LIST \(prefix)") { try await self.listPage(prefix: self.config.prefix + prefix, token: token) }
                for (key, size) in page.objects where key.hasPrefix(config.prefix) {
                    out.append(ObjectInfo(key: String(key.dropFirst(config.prefix.count)), size: size))
                }
                token = page.next
            } while token != nil
            return out
        } catch let e as S3Error {
            throw Self.storeError(e, key: prefix)
        }
    }

    public func delete(_ keys: [String]) async throws {
        do {
            var start = 0
            while start < keys.count {
                let batch = keys[start..<min(start + config.deleteBatchSize, keys.count)].map { config.prefix + $0 }
                try await retrying("DELETE \(batch.count) keys") { try await self.deleteBatch(batch) }
                start += batch.count
            }
        } catch let e as S3Error {
            throw Self.storeError(e, key: keys.first ?? "")
        }
    }

    static func storeError(_ e: S3Error, key: String) -> ObjectStoreError {
        if e.kind == .response {
            switch (e.status, e.code) {
            case (404, "NoSuchKey"), (404, "NotFound"): return ObjectStoreError(.notFound, "\(key): \(e)")
            case (412, _): return ObjectStoreError(.alreadyExists, "\(key): \(e)")
            case (416, _): return ObjectStoreError(.invalidRange, "\(key): \(e)")
            default: break
            }
        }
        return ObjectStoreError(e.isRetryable ? .unavailable : .failed, "\(key): \(e)")
    }

    // MARK: Requests

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
        /// The body in pieces instead, when `send` was asked to split it and could.
        var pieces: [ByteBuffer]?
    }

    /// One attempt. Returns 2xx answers (and those in `accept`); throws `S3Error` for the rest
    /// and for transport failures.
    ///
    /// The deadline is `requestTimeoutMs` plus `timeoutMsPerMiB` for each MiB sent or
    /// `expectedBytes` expected back; a stalled transfer also fails after `requestTimeoutMs`
    /// without a byte read.
    func send(_ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
              body: ObjectBody? = nil, accept: Set<Int> = [], maxResponseBytes: Int = 16 << 20,
              expectedBytes: Int = 0, split: BodyCollector.Split? = nil, pacing: TransferPacing? = nil) async throws -> Response {
        let (url, signed) = builder.build(method: method.rawValue, key: key, query: query, headers: headers, body: body,
                                          date: Int(Date().timeIntervalSince1970))
        var requestHeaders = HTTPHeaders()
        for (name, value) in signed { requestHeaders.add(name: name, value: value) }
        let mib = ((body?.readableBytes ?? 0) + expectedBytes) >> 20
        let timeout = TimeAmount.milliseconds(Int64(config.requestTimeoutMs + config.timeoutMsPerMiB * mib))
        let answer: BodyCollector.Answer
        do {
            // A known length: Content-Length, never chunked.
            let request = try HTTPClient.Request(url: url, method: method, headers: requestHeaders, body: body.map(Self.requestBody))
            let collector = BodyCollector(limit: maxResponseBytes, accept: accept, split: split, pacing: pacing)
            // Spread requests over the event loops: with `.indifferent` the pool may put every
            // connection on one loop, and one thread then copies every body.
            let task = client.execute(request: request, delegate: collector, eventLoop: .delegateAndChannel(on: eventLoopGroup.next()),
                                      deadline: .now() + timeout, logger: nil)
            answer = try await withTaskCancellationHandler {
                try await task.futureResult.get()
            } onCancel: {
                task.cancel()
            }
        } catch let e as S3Error {
            throw e
        } catch {
            if Task.isCancelled { throw CancellationError() }
            if let e = error as? HTTPClientError, [.invalidURL, .emptyHost, .emptyScheme].contains(e) {
                throw S3Error(kind: .protocolViolation, code: "InvalidURL", message: "\(method.rawValue) \(url): \(error)")
            }
            throw S3Error(kind: .transport, code: Self.transportCode(error), message: "\(method.rawValue) \(url): \(error)")
        }
        let status = Int(answer.head.status.code)
        requests.record(Self.operation(method, key: key, query: query), bytesUp: body?.readableBytes ?? 0, bytesDown: answer.bytes)
        if (200..<300).contains(status) || accept.contains(status) {
            return Response(status: status, headers: answer.head.headers, body: answer.body, pieces: answer.pieces)
        }
        throw S3Error.from(status: status, body: Array(answer.body.readableBytesView), requestId: answer.head.headers.first(name: "x-amz-request-id"),
                           bucketRegion: answer.head.headers.first(name: "x-amz-bucket-region"))
    }

    /// A body of one buffer goes as it is; one of several is written part by part, with its
    /// length known (S3 refuses chunked uploads without a signed-chunk scheme).
    static func requestBody(_ body: ObjectBody) -> HTTPClient.Body {
        if body.parts.count <= 1 { return .byteBuffer(body.parts.first ?? ByteBuffer()) }
        let parts = body.parts
        return .stream(contentLength: Int64(body.readableBytes)) { writer in
            // Queued together: NIO gathers what the socket cannot take yet into one writev.
            var last: EventLoopFuture<Void>?
            for p in parts { last = writer.write(.byteBuffer(p)) }
            return last!
        }
    }

    static func operation(_ method: HTTPMethod, key: String?, query: [(String, String)]) -> S3Operation {
        let names = Set(query.map(\.0))
        switch method {
        case .PUT: return names.contains("partNumber") ? .uploadPart : .putObject
        case .POST:
            if names.contains("uploads") { return .createMultipartUpload }
            if names.contains("uploadId") { return .completeMultipartUpload }
            return .deleteObjects
        case .DELETE: return names.contains("uploadId") ? .abortMultipartUpload : .deleteObject
        case .HEAD: return .headObject
        default: return key == nil ? .listObjectsV2 : .getObject
        }
    }

    private static func transportCode(_ error: any Error) -> String {
        if let e = error as? HTTPClientError {
            switch e {
            case .deadlineExceeded, .readTimeout, .writeTimeout: return "Timeout"
            case .connectTimeout: return "ConnectTimeout"
            case .remoteConnectionClosed: return "ConnectionClosed"
            default: return "HTTPClientError"
            }
        }
        if error is NIOConnectionError { return "ConnectionFailed" }
        if error is IOError { return "ConnectionReset" }
        if error is ChannelError { return "ConnectionClosed" }
        return "TransportError"
    }

    /// Runs `op` until it succeeds, fails for good, or runs out of attempts.
    func retrying<T>(_ what: String, maxAttempts: Int? = nil, _ op: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await op()
            } catch let e as S3Error where e.isRetryable && attempt < (maxAttempts ?? config.maxAttempts) {
                logger.debug("S3 request failed; retrying", metadata: ["request": "\(what)", "attempt": "\(attempt)", "error": "\(e)"])
                try await backoff(attempt)
            }
        }
    }

    /// Exponential backoff with "equal jitter": half the delay fixed, half random, so that
    /// clients throttled together spread out.
    func backoff(_ attempt: Int) async throws {
        let ceiling = min(config.retryMaxDelayMs, config.retryBaseDelayMs << min(attempt - 1, 20))
        try await Task.sleep(for: .milliseconds(ceiling / 2 + Int.random(in: 0...max(0, ceiling / 2))))
    }

    // MARK: Objects

    struct HeadInfo {
        var size: Int
        var etag: String?
    }

    func headObject(_ fullKey: String) async throws -> HeadInfo? {
        try await retrying("HEAD \(fullKey)") {
            let r = try await self.send(.HEAD, key: fullKey, accept: [404])
            if r.status == 404 { return nil }
            guard let length = r.headers.first(name: "content-length").flatMap({ Int($0) }) else {
                throw S3Error(kind: .protocolViolation, status: r.status, code: "MissingContentLength", message: "HEAD \(fullKey) without Content-Length")
            }
            return HeadInfo(size: length, etag: r.headers.first(name: "etag").map(Self.unquote))
        }
    }

    static func unquote(_ etag: String) -> String {
        var s = Substring(etag)
        if s.hasPrefix("W/") { s = s.dropFirst(2) }
        if s.hasPrefix("\"") && s.hasSuffix("\"") && s.count >= 2 { s = s.dropFirst().dropLast() }
        return s.lowercased()
    }

    private func getOnce(_ fullKey: String, range: Range<Int>?, split: Int?) async throws -> [ByteBuffer] {
        var headers: [(String, String)] = []
        if let range {
            guard range.lowerBound >= 0 else { throw S3Error(kind: .response, status: 416, code: "InvalidRange", message: "negative range \(range)") }
            headers.append(("range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)"))
        }
        let r = try await send(.GET, key: fullKey, headers: headers, maxResponseBytes: Int.max, expectedBytes: range?.count ?? 0,
                               split: split.map { BodyCollector.Split(pieceBytes: $0, ranged: range != nil) }, pacing: TransferPacing.current)
        let got = r.pieces?.readableBytes ?? r.body.readableBytes
        if let declared = r.headers.first(name: "content-length").flatMap({ Int($0) }), declared != got {
            // A short body is a broken connection, not an object.
            throw S3Error(kind: .transport, code: "TruncatedBody", message: "GET \(fullKey): \(got) of \(declared) bytes")
        }
        if let pieces = r.pieces { return pieces }
        var body = r.body
        if let range, r.status == 200 {
            // The server ignored Range and sent the whole object: cut the range out.
            let upper = min(range.upperBound, body.readableBytes)
            guard range.lowerBound < body.readableBytes else {
                throw S3Error(kind: .response, status: 416, code: "InvalidRange", message: "\(range) of \(body.readableBytes)")
            }
            body = body.getSlice(at: body.readerIndex + range.lowerBound, length: upper - range.lowerBound)!
        }
        return split.map { body.copiedInPieces(of: $0) } ?? [body]
    }

    /// Hex MD5 of the body: S3's ETag of a single-part object.
    public static func md5Hex(_ body: ObjectBody) -> String {
        var md5 = Insecure.MD5()
        body.withEachPart { md5.update(bufferPointer: $0) }
        return SigV4Signer.hex(Array(md5.finalize()))
    }

    /// Whether the object at `fullKey` is the one we meant to write: same size and ETag.
    private func holdsOurObject(_ fullKey: String, size: Int, etag: () -> String) async throws -> Bool? {
        guard let info = try await headObject(fullKey) else { return nil }
        return info.size == size && info.etag == etag()
    }

    func putSingle(_ fullKey: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        var unknown = false  // an earlier attempt may have written the object
        var attempt = 0
        var cachedETag: String?
        func etag() -> String {
            if let cachedETag { return cachedETag }
            let e = Self.md5Hex(body)
            cachedETag = e
            return e
        }
        while true {
            attempt += 1
            if unknown && ifNoneMatch {
                // Check, don't repeat blindly: if the lost attempt landed, a new conditional PUT
                // would fail with 412 although the write is ours.
                switch try await holdsOurObject(fullKey, size: body.readableBytes, etag: etag) {
                case true?: return
                case false?: throw S3Error(kind: .response, status: 412, code: "PreconditionFailed", message: "\(fullKey) holds another object")
                case nil: break
                }
            }
            do {
                _ = try await send(.PUT, key: fullKey, headers: [Self.contentType] + (ifNoneMatch ? [("if-none-match", "*")] : []), body: body,
                                   maxResponseBytes: 64 << 10)
                return
            } catch let e as S3Error where e.kind == .response && e.status == 412 && unknown {
                if try await holdsOurObject(fullKey, size: body.readableBytes, etag: etag) == true { return }
                throw e
            } catch let e as S3Error where e.isRetryable && attempt < config.maxAttempts {
                unknown = unknown || e.outcomeUnknown
                logger.debug("S3 PUT failed; retrying", metadata: ["key": "\(fullKey)", "attempt": "\(attempt)", "error": "\(e)"])
                try await backoff(attempt)
            }
        }
    }

    // MARK: Multipart

    private func putMultipart(_ fullKey: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        if ifNoneMatch, try await headObject(fullKey) != nil {
            // Not every S3 server honours If-None-Match on CompleteMultipartUpload: refuse early.
            throw S3Error(kind: .response, status: 412, code: "PreconditionFailed", message: "\(fullKey) exists")
        }
        let created = try await retrying("CreateMultipartUpload \(fullKey)") {
            try await self.send(.POST, key: fullKey, query: [("uploads", "")], headers: [Self.contentType], maxResponseBytes: 64 << 10)
        }
        guard let root = XMLElementNode.parse(Array(created.body.readableBytesView)), let uploadId = root["UploadId"] else {
            throw S3Error(kind: .protocolViolation, status: created.status, code: "MalformedResponse", message: "CreateMultipartUpload \(fullKey): no UploadId")
        }
        do {
            let partSize = config.partSize
            let count = (body.readableBytes + partSize - 1) / partSize
            var etags = [String](repeating: "", count: count)
            try await withThrowingTaskGroup(of: (Int, String).self) { group in
                var next = 0
                func start() {
                    let n = next
                    next += 1
                    let part = body.slice(n * partSize..<min((n + 1) * partSize, body.readableBytes))
                    group.addTask {
                        await TransferPacing.current?.take(part.readableBytes)
                        let r = try await self.retrying("UploadPart \(n + 1) \(fullKey)") {
                            try await self.send(.PUT, key: fullKey, query: [("partNumber", "\(n + 1)"), ("uploadId", uploadId)], headers: [Self.contentType],
                                               body: part, maxResponseBytes: 64 << 10)
                        }
                        guard let etag = r.headers.first(name: "etag") else {
                            throw S3Error(kind: .protocolViolation, status: r.status, code: "MissingETag", message: "UploadPart \(n + 1) \(fullKey) without ETag")
                        }
                        return (n, etag)
                    }
                }
                // Compaction's parts go one at a time: parallel parts of a 64 MiB output in a burst
                // slowed concurrent WAL uploads on SeaweedFS several-fold (bench/peers' e2e phase).
                let concurrency = IOClass.current == .compaction ? 1 : config.partConcurrency
                while next < min(count, concurrency) { start() }
                while let (n, etag) = try await group.next() {
                    etags[n] = etag
                    if next < count { start() }
                }
            }
            var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            for (i, etag) in etags.enumerated() {
                xml += "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\(XMLElementNode.escape(etag))</ETag></Part>"
            }
            xml += "</CompleteMultipartUpload>"
            // The multipart ETag (MD5 of the parts' MD5s) is needed only to recognise our own
            // object after a lost answer, so it is computed then, not on every upload; each
            // part's bytes are covered by its signed SHA-256 (or by TLS with UNSIGNED-PAYLOAD).
            try await completeMultipart(fullKey, uploadId: uploadId, xml: xml, size: body.readableBytes,
                                        etag: { Self.multipartETag(body, partSize: partSize) }, ifNoneMatch: ifNoneMatch)
        } catch {
            await abortMultipart(fullKey, uploadId: uploadId)
            throw error
        }
    }

    /// S3's ETag of a multipart object: hex MD5 of the parts' binary MD5s, `-`, the part count.
    public static func multipartETag(_ body: ObjectBody, partSize: Int) -> String {
        precondition(partSize > 0, "part size \(partSize)")
        var md5s: [UInt8] = []
        var offset = 0
        repeat {
            let length = min(partSize, body.readableBytes - offset)
            var md5 = Insecure.MD5()
            body.slice(offset..<offset + length).withEachPart { md5.update(bufferPointer: $0) }
            md5s += Array(md5.finalize())
            offset += length
        } while offset < body.readableBytes
        return SigV4Signer.hex(Array(Insecure.MD5.hash(data: md5s))) + "-\(md5s.count / 16)"
    }

    private func completeMultipart(_ fullKey: String, uploadId: String, xml: String, size: Int, etag: () -> String,
                                   ifNoneMatch: Bool) async throws {
        var unknown = false
        var attempt = 0
        while true {
            attempt += 1
            do {
                let r = try await send(.POST, key: fullKey, query: [("uploadId", uploadId)],
                                       headers: ifNoneMatch ? [("if-none-match", "*")] : [],
                                       body: ObjectBody(ByteBuffer(string: xml)), maxResponseBytes: 1 << 20)
                // S3 may answer 200 and put the error in the body.
                if let root = XMLElementNode.parse(Array(r.body.readableBytesView)), root.name == "Error" {
                    throw S3Error(kind: .response, status: 500, code: root["Code"] ?? "InternalError", message: root["Message"] ?? "", requestId: root["RequestId"])
                }
                return
            } catch let e as S3Error where unknown && e.kind == .response && (e.status == 404 || e.status == 412) {
                // NoSuchUpload or PreconditionFailed after a lost answer: the upload may be ours.
                if try await holdsOurObject(fullKey, size: size, etag: etag) == true { return }
                throw e
            } catch let e as S3Error where e.isRetryable && attempt < config.maxAttempts {
                unknown = unknown || e.outcomeUnknown
                try await backoff(attempt)
            }
        }
    }

    private func abortMultipart(_ fullKey: String, uploadId: String) async {
        do {
            try await retrying("AbortMultipartUpload \(fullKey)") {
                _ = try await self.send(.DELETE, key: fullKey, query: [("uploadId", uploadId)], accept: [404])
            }
        } catch {
            logger.warning("could not abort a multipart upload; a lifecycle rule must clean it up",
                           metadata: ["key": "\(fullKey)", "uploadId": "\(uploadId)", "error": "\(error)"])
        }
    }

    // MARK: Listing and deleting

    private func listPage(prefix: String, token: String?, maxKeys: Int = 1000) async throws -> (objects: [(String, Int)], next: String?) {
        var query = [("list-type", "2"), ("prefix", prefix), ("max-keys", "\(maxKeys)")]
        if let token { query.append(("continuation-token", token)) }
        let r = try await send(.GET, key: nil, query: query)
        guard let root = XMLElementNode.parse(Array(r.body.readableBytesView)), root.name == "ListBucketResult" else {
            throw S3Error(kind: .protocolViolation, status: r.status, code: "MalformedResponse", message: "ListObjectsV2: not a ListBucketResult")
        }
        var objects: [(String, Int)] = []
        for c in root.all("Contents") {
            guard let key = c["Key"], let size = c["Size"].flatMap({ Int($0) }) else {
                throw S3Error(kind: .protocolViolation, status: r.status, code: "MalformedResponse", message: "ListObjectsV2: entry without Key or Size")
            }
            objects.append((key, size))
        }
        let truncated = root["IsTruncated"] == "true"
        let next = truncated ? root["NextContinuationToken"] : nil
        if truncated && next == nil {
            throw S3Error(kind: .protocolViolation, status: r.status, code: "MalformedResponse", message: "ListObjectsV2: truncated without NextContinuationToken")
        }
        return (objects, next)
    }

    private func deleteBatch(_ fullKeys: [String]) async throws {
        var xml = "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
        for k in fullKeys { xml += "<Object><Key>\(XMLElementNode.escape(k))</Key></Object>" }
        xml += "</Delete>"
        let body = ObjectBody(ByteBuffer(string: xml))
        // DeleteObjects requires an integrity header: Content-MD5 is understood everywhere.
        let md5 = Data(Insecure.MD5.hash(data: Array(xml.utf8))).base64EncodedString()
        let r = try await send(.POST, key: nil, query: [("delete", "")], headers: [("content-md5", md5), ("content-type", "application/xml")],
                               body: body, maxResponseBytes: 16 << 20)
        guard let root = XMLElementNode.parse(Array(r.body.readableBytesView)) else {
            if r.body.readableBytes == 0 { return }
            throw S3Error(kind: .protocolViolation, status: r.status, code: "MalformedResponse", message: "DeleteObjects: unreadable answer")
        }
        if root.name == "Error" {
            throw S3Error(kind: .response, status: 500, code: root["Code"] ?? "InternalError", message: root["Message"] ?? "")
        }
        let failures = root.all("Error").filter { $0["Code"] != "NoSuchKey" }
        if let first = failures.first {
            let code = first["Code"] ?? "InternalError"
            let retryable = S3Error(kind: .response, status: 500, code: code, message: "").isRetryable || code == "InternalError"
            throw S3Error(kind: .response, status: retryable ? 503 : 403, code: code,
                          message: "DeleteObjects: \(failures.count) of \(fullKeys.count) keys not deleted, first \(first["Key"] ?? "?"): \(first["Message"] ?? "")")
        }
    }
}

/// Collects a response on its event loop: one buffer sized from Content-Length (or the single
/// chunk itself when the body came in one piece), and no hop to a task per chunk, which
/// costs large GETs a tenth of their throughput. Error answers keep at most 64 KiB.
///
/// With `split`, a successful GET's body goes instead into buffers of `pieceBytes` each as it
/// arrives (the blocks a cache keeps), unless the server sent a whole object for a range
/// (then it is cut out of one buffer). With `pacing`, each part of a successful answer's body
/// waits for it before the next is read: the socket is not read meanwhile, so TCP slows the
/// server down to the pace.
final class BodyCollector: HTTPClientResponseDelegate, @unchecked Sendable {
    struct Split: Sendable {
        var pieceBytes: Int
        /// The request named a range: only a 206 answer holds just those bytes.
        var ranged: Bool
    }

    struct Answer: Sendable {
        var head: HTTPResponseHead
        var body: ByteBuffer
        var pieces: [ByteBuffer]?

        var bytes: Int { pieces?.readableBytes ?? body.readableBytes }
    }

    // Touched only on the request's event loop, one call at a time (AHC's contract).
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?
    private var pieces: [ByteBuffer]?
    private var collected = 0
    private var declared: Int?
    private var limit: Int
    private let accept: Set<Int>
    private var split: Split?
    private var pacing: TransferPacing?

    init(limit: Int, accept: Set<Int>, split: Split? = nil, pacing: TransferPacing? = nil) {
        self.limit = limit
        self.accept = accept
        self.split = split
        self.pacing = pacing
    }

    func didReceiveHead(task: HTTPClient.Task<Answer>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        self.head = head
        let status = Int(head.status.code)
        if !(200..<300).contains(status) && !accept.contains(status) { limit = 64 << 10 }
        if !(200..<300).contains(status) { pacing = nil }
        if let s = split, !(status == 206 || (status == 200 && !s.ranged)) { split = nil }
        if split != nil { pieces = [] }
        declared = head.headers.first(name: "content-length").flatMap { Int($0) }
        if let declared, declared > limit {
            return task.eventLoop.makeFailedFuture(S3Error(kind: .protocolViolation, status: status, code: "ResponseTooLarge",
                                                           message: "\(declared) bytes, at most \(limit) expected"))
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Answer>, _ part: ByteBuffer) -> EventLoopFuture<Void> {
        collected += part.readableBytes
        if collected > limit {
            return task.eventLoop.makeFailedFuture(S3Error(kind: .protocolViolation, status: Int(head?.status.code ?? 0),
                                                           code: "ResponseTooLarge", message: "more than \(limit) bytes"))
        }
        keep(part)
        guard let pacing else { return task.eventLoop.makeSucceededVoidFuture() }
        let paced = task.eventLoop.makePromise(of: Void.self)
        pacing.take(part.readableBytes) { paced.succeed() }
        return paced.futureResult
    }

    /// Adds a part to the body or its pieces.
    private func keep(_ part: ByteBuffer) {
        if let split {
            var part = part
            while part.readableBytes > 0 {
                if pieces!.last.map({ $0.readableBytes == split.pieceBytes }) ?? true {
                    let rest = declared.map { $0 - (collected - part.readableBytes) } ?? split.pieceBytes
                    pieces!.append(ByteBufferAllocator().buffer(capacity: max(1, min(split.pieceBytes, rest))))
                }
                let n = min(part.readableBytes, split.pieceBytes - pieces![pieces!.count - 1].readableBytes)
                pieces![pieces!.count - 1].writeImmutableBuffer(part.readSlice(length: n)!)
            }
        } else if body == nil {
            if part.readableBytes == declared {
                body = part  // all of it in one piece: no copy
                return
            }
            var b = ReusedMemory.responseBodies.allocator.buffer(capacity: max(declared ?? 0, part.readableBytes))
            b.writeImmutableBuffer(part)
            body = b
        } else {
            body!.writeImmutableBuffer(part)
        }
    }

    func didReceiveError(task: HTTPClient.Task<Answer>, _ error: any Error) {}

    func didFinishRequest(task: HTTPClient.Task<Answer>) throws -> Answer {
        guard let head else { throw HTTPClientError.remoteConnectionClosed }
        return Answer(head: head, body: body ?? ByteBuffer(), pieces: pieces)
    }
}
