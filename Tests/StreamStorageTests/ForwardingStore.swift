import NIOCore
import ObjectStore

/// A test bucket over an in-memory one: each request goes to `base` unless the store
/// implements it itself (to record, hold back or change it).
protocol ForwardingStore: ObjectStore {
    var base: InMemoryObjectStore { get }
}

extension ForwardingStore {
    func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws { try await base.put(key, body, ifNoneMatch: ifNoneMatch) }
    func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer { try await base.get(key, range: range) }
    func head(_ key: String) async throws -> ObjectInfo? { try await base.head(key) }
    func list(prefix: String) async throws -> [ObjectInfo] { try await base.list(prefix: prefix) }
    func delete(_ keys: [String]) async throws { try await base.delete(keys) }
}
