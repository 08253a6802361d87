import NIOCore

/// Adds latency and failures to another store, so tests can drive the real binary with slow
/// or failing object writes. Configured by `--set object.store.fault.<request>.delay.ms=N`
/// and `--set object.store.fault.<request>.error.rate=R` (request: put, get, head, list, delete).
public struct FaultInjectingObjectStore<Base: ObjectStore>: ObjectStore {
    public struct Fault: Sendable, Equatable {
        public var delayMs: Int = 0
        public var errorRate: Double = 0
        public init(delayMs: Int = 0, errorRate: Double = 0) {
            self.delayMs = delayMs
            self.errorRate = errorRate
        }
    }

    public let base: Base
    public let faults: [ObjectStoreRequest: Fault]

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
            switch parts[4] + "." + parts[5] {
            case "delay.ms":
                guard let v = Int(value), v >= 0 else { throw ObjectStoreError(.failed, "\(key) must be a whole number of milliseconds, not \(value)") }
                fault.delayMs = v
            case "error.rate":
                guard let v = Double(value), v >= 0, v <= 1 else { throw ObjectStoreError(.failed, "\(key) must be between 0 and 1, not \(value)") }
                fault.errorRate = v
            default:
                throw ObjectStoreError(.failed, "unknown setting \(key)")
            }
            out[request] = fault
        }
        return out
    }

    private func inject(_ request: ObjectStoreRequest, _ key: String) async throws {
        guard let fault = faults[request] else { return }
        if fault.delayMs > 0 { try await Task.sleep(for: .milliseconds(fault.delayMs)) }
        if fault.errorRate > 0, Double.random(in: 0..<1) < fault.errorRate {
            throw ObjectStoreError(.unavailable, "injected \(request.rawValue) failure for \(key)")
        }
    }

    public func put(_ key: String, _ body: ByteBuffer, ifNoneMatch: Bool) async throws {
        try await inject(.put, key)
        try await base.put(key, body, ifNoneMatch: ifNoneMatch)
    }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        try await inject(.get, key)
        return try await base.get(key, range: range)
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        try await inject(.head, key)
        return try await base.head(key)
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try await inject(.list, prefix)
        return try await base.list(prefix: prefix)
    }

    public func delete(_ keys: [String]) async throws {
        try await inject(.delete, keys.first ?? "")
        try await base.delete(keys)
    }
}
