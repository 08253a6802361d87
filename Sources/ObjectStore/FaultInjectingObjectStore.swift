import NIOConcurrencyHelpers
import NIOCore

/// Adds latency and failures to another store, so tests can drive the real binary with slow
/// or failing object requests. Configured per request type (put, get, head, list, delete) by
/// `--set object.store.fault.<request>.<fault>=V`:
///
/// - `delay.ms=N`: every request waits N ms first.
/// - `error.rate=R`: this share of requests fails without reaching the store.
/// - `timeout.rate=R` (with `timeout.ms=N`, default 1000): this share hangs N ms, then fails
///   as a timeout, without reaching the store.
/// - `fail.nth=N`: the N-th request of that type (counting from 1) fails, once.
/// - `lost.rate=R`: this share reaches the store and succeeds there, but its answer is lost:
///   the caller sees a failure (for a conditional PUT, the ambiguity the engine must resolve).
/// - `lost.nth=N`: the N-th request of that type to succeed in the store (other faults let
///   through) has its answer lost.
public struct FaultInjectingObjectStore<Base: ObjectStore>: ObjectStore {
    public struct Fault: Sendable, Equatable {
        public var delayMs: Int = 0
        public var errorRate: Double = 0
        public var timeoutRate: Double = 0
        public var timeoutMs: Int = 1000
        public var failNth: Int = 0
        public var lostRate: Double = 0
        public var lostNth: Int = 0
        public init(delayMs: Int = 0, errorRate: Double = 0, timeoutRate: Double = 0, timeoutMs: Int = 1000,
                    failNth: Int = 0, lostRate: Double = 0) {
            self.delayMs = delayMs
            self.errorRate = errorRate
            self.timeoutRate = timeoutRate
            self.timeoutMs = timeoutMs
            self.failNth = failNth
            self.lostRate = lostRate
        }
    }

    public let base: Base
    public let faults: [ObjectStoreRequest: Fault]
    private let counts = NIOLockedValueBox<[ObjectStoreRequest: Int]>([:])
    private let succeeded = NIOLockedValueBox<[ObjectStoreRequest: Int]>([:])

    public init(base: Base, faults: [ObjectStoreRequest: Fault]) {
        self.base = base
        self.faults = faults
    }

    /// Parses `object.store.fault.*` settings; throws naming the bad key.
    public static func parseFaults(_ settings: [String: String]) throws -> [ObjectStoreRequest: Fault] {
        var out: [ObjectStoreRequest: Fault] = [:]
        for (key, value) in settings where key.hasPrefix("object.store.fault.") {
            let parts = key.split(separator: ".").map(String.init)
            guard parts.count == 6, let request = ObjectStoreRequest(rawValue: parts[3].uppercased()) else {
                throw ObjectStoreError(.failed, "unknown setting \(key)")
            }
            var fault = out[request] ?? Fault()
            func milliseconds() throws -> Int {
                guard let v = Int(value), v >= 0 else { throw ObjectStoreError(.failed, "\(key) must be a whole number of milliseconds, not \(value)") }
                return v
            }
            func rate() throws -> Double {
                guard let v = Double(value), v >= 0, v <= 1 else { throw ObjectStoreError(.failed, "\(key) must be between 0 and 1, not \(value)") }
                return v
            }
            switch parts[4] + "." + parts[5] {
            case "delay.ms": fault.delayMs = try milliseconds()
            case "error.rate": fault.errorRate = try rate()
            case "timeout.rate": fault.timeoutRate = try rate()
            case "timeout.ms": fault.timeoutMs = try milliseconds()
            case "lost.rate": fault.lostRate = try rate()
            case "fail.nth", "lost.nth":
                guard let v = Int(value), v >= 1 else { throw ObjectStoreError(.failed, "\(key) must be a request number from 1, not \(value)") }
                if parts[4] == "fail" { fault.failNth = v } else { fault.lostNth = v }
            default:
                throw ObjectStoreError(.failed, "unknown setting \(key)")
            }
            out[request] = fault
        }
        return out
    }

    /// Runs `op` with the faults configured for `request`.
    private func inject<T>(_ request: ObjectStoreRequest, _ key: String, _ op: () async throws -> T) async throws -> T {
        guard let fault = faults[request] else { return try await op() }
        let n = counts.withLockedValue { c -> Int in
            c[request, default: 0] += 1
            return c[request]!
        }
        if fault.delayMs > 0 { try await Task.sleep(for: .milliseconds(fault.delayMs)) }
        if fault.failNth == n {
            throw ObjectStoreError(.unavailable, "injected failure of \(request.rawValue) #\(n) for \(key)")
        }
        if fault.errorRate > 0, Double.random(in: 0..<1) < fault.errorRate {
            throw ObjectStoreError(.unavailable, "injected \(request.rawValue) failure for \(key)")
        }
        if fault.timeoutRate > 0, Double.random(in: 0..<1) < fault.timeoutRate {
            try await Task.sleep(for: .milliseconds(fault.timeoutMs))
            throw ObjectStoreError(.unavailable, "injected \(request.rawValue) timeout after \(fault.timeoutMs) ms for \(key)")
        }
        let result = try await op()
        let done = succeeded.withLockedValue { c -> Int in
            c[request, default: 0] += 1
            return c[request]!
        }
        if fault.lostNth == done || (fault.lostRate > 0 && Double.random(in: 0..<1) < fault.lostRate) {
            throw ObjectStoreError(.unavailable, "injected lost answer of a \(request.rawValue) that succeeded, for \(key)")
        }
        return result
    }

    public func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        try await inject(.put, key) { try await base.put(key, body, ifNoneMatch: ifNoneMatch) }
    }

    public var pacesDownloads: Bool { base.pacesDownloads }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        try await inject(.get, key) { try await base.get(key, range: range) }
    }

    public func get(_ key: String, range: Range<Int>?, pieceBytes: Int) async throws -> [ByteBuffer] {
        try await inject(.get, key) { try await base.get(key, range: range, pieceBytes: pieceBytes) }
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        try await inject(.head, key) { try await base.head(key) }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try await inject(.list, prefix) { try await base.list(prefix: prefix) }
    }

    public func delete(_ keys: [String]) async throws {
        try await inject(.delete, keys.first ?? "") { try await base.delete(keys) }
    }
}
