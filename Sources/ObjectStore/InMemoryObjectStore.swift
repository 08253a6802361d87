import NIOConcurrencyHelpers
import NIOCore

/// An object store in memory, for unit tests.
public final class InMemoryObjectStore: ObjectStore {
    private let objects = NIOLockedValueBox<[String: ByteBuffer]>([:])

    public init() {}

    public func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        let bytes = body.joined()
        try objects.withLockedValue {
            if ifNoneMatch, $0[key] != nil { throw ObjectStoreError(.alreadyExists, key) }
            $0[key] = bytes
        }
    }

    public func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        guard let body = objects.withLockedValue({ $0[key] }) else { throw ObjectStoreError(.notFound, key) }
        guard let r = range else { return body }
        guard r.lowerBound <= body.readableBytes else { throw ObjectStoreError(.invalidRange, key) }
        return body.getSlice(at: body.readerIndex + r.lowerBound, length: min(r.upperBound, body.readableBytes) - r.lowerBound)!
    }

    public func head(_ key: String) async throws -> ObjectInfo? {
        objects.withLockedValue { $0[key].map { ObjectInfo(key: key, size: $0.readableBytes) } }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        objects.withLockedValue { all in
            all.filter { $0.key.hasPrefix(prefix) }.map { ObjectInfo(key: $0.key, size: $0.value.readableBytes) }
        }.sorted { $0.key < $1.key }
    }

    public func delete(_ keys: [String]) async throws {
        objects.withLockedValue { for k in keys { $0[k] = nil } }
    }
}
