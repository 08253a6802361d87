// Test-only tool, like `codec-check`: the Swift half of two test suites.
//
// `s3-check sign`  (tests/test_sigv4_crosscheck.py) reads one JSON request per line on stdin,
//   builds and signs it with the S3 client's own `S3RequestBuilder`, and prints the URL and
//   headers as one JSON line, for comparison with botocore's S3SigV4Auth.
//   In:  {"endpoint", "bucket", "path_style", "region", "access_key", "secret_key", "token" (or
//         null), "unsigned", "method", "key" (or null), "query": [[k, v]], "headers": [[k, v]],
//         "body_hex", "date" (seconds since the epoch)}
//   Out: {"url": ..., "headers": [[k, v]]}  or  {"error": ...}
//
// `s3-check store` (tests/integration/test_s3.py) drives an `S3ObjectStore` against a real
//   server, one operation per stdin line, so the test can check each result with boto3.
//   Settings from the environment: S3_ENDPOINT, S3_BUCKET, S3_PREFIX, S3_REGION,
//   S3_PATH_STYLE, S3_PART_SIZE, S3_MAX_ATTEMPTS, S3_TIMEOUT_MS, credentials as the broker.
//   In:  {"op": "put"|"get"|"head"|"list"|"delete", "key", "body_hex" | "fill": [byte, count],
//         "if_none_match", "range": [lo, hi], "prefix", "keys", "class": "compaction", "paced"}
//   Out: {"ok": true, ...result} or {"error": code, "message": ...}
//
// `s3-check bench put|get SIZE COUNT CONCURRENCY` PUTs or GETs COUNT objects `bench/SIZE/<i>`
//   of SIZE bytes, CONCURRENCY at a time, with the same settings as `store`, and prints
//   {"seconds": ..., "bytes": ...} (time measured around the requests only).
// `s3-check bench-serve` (bench/s3_client.py) does the same for each stdin line
//   `put|get SIZE COUNT CONCURRENCY`, with one store for all of them.
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import ObjectStore

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(hex.utf8.count / 2)
    var it = hex.utf8.makeIterator()
    while let a = it.next(), let b = it.next() {
        func v(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : (c | 0x20) - 87 }
        out.append(v(a) << 4 | v(b))
    }
    return out
}

func hex(_ buffer: ByteBuffer) -> String {
    SigV4Signer.hex(buffer.readableBytesView)
}

func pairs(_ any: Any?) -> [(String, String)] {
    (any as? [[String]] ?? []).map { ($0[0], $0[1]) }
}

func emit(_ result: [String: Any]) {
    let out = try! JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    FileHandle.standardOutput.write(out + Data("\n".utf8))
}

func sign(_ obj: [String: Any]) throws -> [String: Any] {
    let credentials = S3Credentials(accessKeyId: obj["access_key"] as! String, secretAccessKey: obj["secret_key"] as! String,
                                    sessionToken: obj["token"] as? String)
    var config = S3Configuration(bucket: obj["bucket"] as! String, endpoint: obj["endpoint"] as? String,
                                 region: obj["region"] as! String, pathStyle: obj["path_style"] as! Bool, credentials: credentials)
    config.unsignedPayload = obj["unsigned"] as? Bool ?? false
    let builder = try S3RequestBuilder(config)
    let body = bytes(hex: obj["body_hex"] as? String ?? "")
    let (url, headers) = builder.build(method: obj["method"] as! String, key: obj["key"] as? String, query: pairs(obj["query"]),
                                       headers: pairs(obj["headers"]), body: body.isEmpty ? nil : ObjectBody(ByteBuffer(bytes: body)),
                                       date: obj["date"] as! Int)
    return ["url": url, "headers": headers.map { [$0.0, $0.1] }]
}

func run(_ store: S3ObjectStore, _ obj: [String: Any]) async throws -> [String: Any] {
    let key = obj["key"] as? String ?? ""
    switch obj["op"] as? String {
    case "put":
        var body: ByteBuffer
        if let fill = obj["fill"] as? [Int] {
            body = ByteBuffer(repeating: UInt8(fill[0]), count: fill[1])
        } else {
            body = ByteBuffer(bytes: bytes(hex: obj["body_hex"] as? String ?? ""))
        }
        // "class": the traffic class the put runs under ("compaction" sends parts one at a time).
        let ioClass = IOClass.allCases.first { $0.label == obj["class"] as? String } ?? .produce
        // "paced": answer with the bytes the store asked `TransferPacing` for, in order.
        let asked = NIOLockedValueBox<[Int]>([])
        let pacing = obj["paced"] as? Bool == true ? TransferPacing { n, then in asked.withLockedValue { $0.append(n) }; then() } : nil
        try await IOClass.$current.withValue(ioClass) {
            try await TransferPacing.$current.withValue(pacing) {
                try await store.put(key, body, ifNoneMatch: obj["if_none_match"] as? Bool ?? false)
            }
        }
        return pacing == nil ? [:] : ["paced": asked.withLockedValue { $0 }]
    case "get":
        let r = (obj["range"] as? [Int]).map { $0[0]..<$0[1] }
        // "pace_ms": the store asks `TransferPacing` for each part it receives, answered that
        // long after; the answer adds the parts' sizes and the milliseconds the GET took.
        let asked = NIOLockedValueBox<[Int]>([])
        let pacing = (obj["pace_ms"] as? Int).map { ms in
            TransferPacing { n, then in
                asked.withLockedValue { $0.append(n) }
                Task {
                    try? await Task.sleep(for: .milliseconds(ms))
                    then()
                }
            }
        }
        let start = ContinuousClock.now
        var answer: [String: Any] = try await TransferPacing.$current.withValue(pacing) {
            if let pieceBytes = obj["piece_bytes"] as? Int {
                // Read straight into pieces (the block cache's GETs): their sizes, and the bytes joined.
                let pieces = try await store.get(key, range: r, pieceBytes: pieceBytes)
                var joined = ByteBuffer()
                for p in pieces { joined.writeImmutableBuffer(p) }
                return ["body_hex": hex(joined), "size": joined.readableBytes, "pieces": pieces.map(\.readableBytes)]
            }
            let b = try await store.get(key, range: r)
            return ["body_hex": hex(b), "size": b.readableBytes]
        }
        if pacing != nil {
            answer["paced"] = asked.withLockedValue { $0 }
            answer["ms"] = Int((ContinuousClock.now - start).seconds * 1000)
        }
        return answer
    case "head":
        let info = try await store.head(key)
        return info.map { ["size": $0.size] } ?? ["missing": true]
    case "list":
        let all = try await store.list(prefix: obj["prefix"] as? String ?? "")
        return ["objects": all.map { [$0.key, $0.size] as [Any] }]
    case "delete":
        try await store.delete(obj["keys"] as? [String] ?? [])
        return [:]
    default:
        throw ObjectStoreError(.failed, "unknown op \(obj["op"] ?? "nil")")
    }
}

let mode = CommandLine.arguments.dropFirst().first ?? ""
switch mode {
case "sign":
    while let line = readLine(strippingNewline: true) {
        if line.isEmpty { continue }
        do {
            guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { throw CocoaError(.coderReadCorrupt) }
            emit(try sign(obj))
        } catch {
            emit(["error": "\(error)"])
        }
    }
case "store":
    let env = ProcessInfo.processInfo.environment
    guard let endpoint = env["S3_ENDPOINT"], let bucket = env["S3_BUCKET"], let credentials = S3Configuration.credentials(from: env) else {
        FileHandle.standardError.write(Data("S3_ENDPOINT, S3_BUCKET and credentials are required\n".utf8))
        exit(64)
    }
    var config = S3Configuration(bucket: bucket, prefix: env["S3_PREFIX"] ?? "", endpoint: endpoint, region: env["S3_REGION"] ?? "us-east-1",
                                 pathStyle: env["S3_PATH_STYLE"] != "false", credentials: credentials)
    if let v = env["S3_PART_SIZE"].flatMap({ Int($0) }) { config.partSize = v }
    if let v = env["S3_MAX_ATTEMPTS"].flatMap({ Int($0) }) { config.maxAttempts = v }
    if let v = env["S3_TIMEOUT_MS"].flatMap({ Int($0) }) { config.requestTimeoutMs = v }
    if let v = env["S3_RETRY_BASE_MS"].flatMap({ Int($0) }) { config.retryBaseDelayMs = v }
    let store = try S3ObjectStore(config: config)
    while let line = readLine(strippingNewline: true) {
        if line.isEmpty { continue }
        do {
            guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { throw CocoaError(.coderReadCorrupt) }
            var result = try await run(store, obj)
            result["ok"] = true
            emit(result)
        } catch let e as ObjectStoreError {
            emit(["error": "\(e.code)", "message": e.message])
        } catch {
            emit(["error": "other", "message": "\(error)"])
        }
    }
    try await store.shutdown()
case "bench", "bench-serve":
    // `bench` runs once from its arguments; `bench-serve` keeps one store (and so its warm
    // connection pool and body memory, as bench/s3_client.py keeps its boto3 client) and runs
    // one `put|get SIZE COUNT CONCURRENCY` per stdin line.
    let env = ProcessInfo.processInfo.environment
    let usage = "usage: s3-check bench put|get SIZE COUNT CONCURRENCY, or bench-serve with those on each stdin line (with S3_ENDPOINT, S3_BUCKET, credentials)\n"
    guard let endpoint = env["S3_ENDPOINT"], let bucket = env["S3_BUCKET"], let credentials = S3Configuration.credentials(from: env) else {
        FileHandle.standardError.write(Data(usage.utf8))
        exit(64)
    }
    var config = S3Configuration(bucket: bucket, endpoint: endpoint, region: env["S3_REGION"] ?? "us-east-1",
                                 pathStyle: env["S3_PATH_STYLE"] != "false", credentials: credentials)
    config.partSize = Int.max  // single PUTs, like boto3's put_object
    let store = try S3ObjectStore(config: config)
    var runs: [[String]] = []
    if mode == "bench" {
        runs = [Array(CommandLine.arguments.dropFirst(2))]
    }
    func next() -> [String]? {
        if mode == "bench" { return runs.popLast() }
        while let line = readLine(strippingNewline: true) {
            let words = line.split(separator: " ").map(String.init)
            if !words.isEmpty { return words }
        }
        return nil
    }
    while let args = next() {
        guard args.count == 4, args[0] == "put" || args[0] == "get", let size = Int(args[1]), let count = Int(args[2]),
              let concurrency = Int(args[3]), size > 0, count > 0, concurrency > 0 else {
            FileHandle.standardError.write(Data(usage.utf8))
            exit(64)
        }
        let put = args[0] == "put"
        let body: ByteBuffer = {
            var b = ByteBuffer()
            if put {
                b.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
                    for i in 0..<size { raw[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
                    return size
                }
            }
            return b
        }()
        // Warm the pool as boto3's reused client is: one connection per concurrent request.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<concurrency { group.addTask { _ = try await store.head("bench/warm/\(i)") } }
            try await group.waitForAll()
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Int.self) { group in
            var next = 0
            var total = 0
            func add() {
                let i = next
                next += 1
                group.addTask {
                    let key = "bench/\(size)/\(i)"
                    if put {
                        try await store.put(key, body, ifNoneMatch: false)
                        return size
                    }
                    return try await store.get(key, range: nil).readableBytes
                }
            }
            while next < min(count, concurrency) { add() }
            while let n = try await group.next() {
                total += n
                if next < count { add() }
            }
            precondition(total == size * count, "read \(total) bytes, expected \(size * count)")
        }
        let elapsed = ContinuousClock.now - start
        let (secs, atto) = elapsed.components
        emit(["seconds": Double(secs) + Double(atto) / 1e18, "bytes": size * count])
    }
    try await store.shutdown()
default:
    FileHandle.standardError.write(Data("usage: s3-check sign|store|bench (test-only; see tests/test_sigv4_crosscheck.py)\n".utf8))
    exit(64)
}
