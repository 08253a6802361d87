import NIOConcurrencyHelpers
import NIOCore

/// Counts requests, failures and bytes by request type, for `/metrics`.
public final class ObjectStoreMeter: Sendable {
    public struct Counts: Sendable, Equatable {
        /// Requests made: `duration.count`.
        public var requests: Int { duration.count }
        public var errors = 0
        public var bytesIn = 0
        public var bytesOut = 0
        public var duration = DurationHistogram()
    }

    private let counts = NIOLockedValueBox<[ObjectStoreRequest: Counts]>([:])

    public init() {}

    public func snapshot() -> [ObjectStoreRequest: Counts] { counts.withLockedValue { $0 } }

    func record(_ r: ObjectStoreRequest, ok: Bool, bytesIn: Int = 0, bytesOut: Int = 0, seconds: Double) {
        counts.withLockedValue {
            var c = $0[r] ?? Counts()
            if !ok { c.errors += 1 }
            c.bytesIn += bytesIn
            c.bytesOut += bytesOut
            c.duration.record(seconds)
            $0[r] = c
        }
    }
}

/// Wraps a store and reports every request to an `ObjectStoreMeter`.
public struct MeteredObjectStore<Base: ObjectStore>: ObjectStore {
    public let base: Base
    public let meter: ObjectStoreMeter

    public init(base: Base, meter: ObjectStoreMeter) {
        self.base = base
        self.meter = meter
    }

    private func timed<T>(_ r: ObjectStoreRequest, bytesOut: Int = 0, _ body: () async throws -> T, bytesIn: (T) -> Int = { _ in 0 }) async throws -> T {
        let start = ContinuousClock.now
        do {
            let v = try await body()
            meter.record(r, ok: true, bytesIn: bytesIn(v), bytesOut: bytesOut, seconds: (ContinuousClock.now - start).seconds)
            return v
        } catch {
            meter.record(r, ok: false, bytesOut: bytesOut, seconds: (ContinuousClock.now - start).seconds)
            throw error
        }
    }

    public func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        try await timed(.put, bytesOut: body.readableBytes) { try await base.put(key, body, ifNoneMatch: ifNoneMatch) }
    }

    public var pacesDownloads: Bool { base.pacesDownloads }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        try await timed(.get, { try await base.get(key, range: range) }, bytesIn: { $0.readableBytes })
    }

    public func get(_ key: String, range: Range<Int>?, pieceBytes: Int) async throws -> [ByteBuffer] {
        try await timed(.get, { try await base.get(key, range: range, pieceBytes: pieceBytes) }, bytesIn: { $0.readableBytes })
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        try await timed(.head) { try await base.head(key) }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try await timed(.list) { try await base.list(prefix: prefix) }
    }

    public func delete(_ keys: [String]) async throws {
        try await timed(.delete) { try await base.delete(keys) }
    }
}

extension Duration {
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
