import NIOConcurrencyHelpers

/// Objects' block indexes (their footers). A metadata row holds one contiguous run of a
/// stream in an object, which may span many blocks; a read that starts inside such a run
/// finds the block holding its offset in the object's index, read once (one tail GET) and
/// kept here. Bounded by index entries, least recently used out first; concurrent misses on
/// one object share its read.
final class ObjectIndexCache: Sendable {
    private struct State {
        var indexes: [String: (entries: [ObjectFormat.Entry], used: UInt64)] = [:]
        var loading: [String: Task<[ObjectFormat.Entry], any Error>] = [:]
        var count = 0
        var clock: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())
    let maxEntries: Int

    init(maxEntries: Int) {
        self.maxEntries = maxEntries
    }

    /// The index of object `key`, from the cache or from `load`.
    func entries(of key: String, load: @escaping @Sendable () async throws -> [ObjectFormat.Entry]) async throws -> [ObjectFormat.Entry] {
        enum Found { case hit([ObjectFormat.Entry]), wait(Task<[ObjectFormat.Entry], any Error>, owner: Bool) }
        let found: Found = state.withLockedValue { s in
            s.clock += 1
            if let hit = s.indexes[key] {
                s.indexes[key]!.used = s.clock
                return .hit(hit.entries)
            }
            if let t = s.loading[key] { return .wait(t, owner: false) }
            let t = Task { try await load() }
            s.loading[key] = t
            return .wait(t, owner: true)
        }
        switch found {
        case .hit(let entries):
            return entries
        case .wait(let task, let owner):
            let result = await task.result
            if owner {
                state.withLockedValue { s in
                    s.loading[key] = nil
                    guard case .success(let entries) = result, entries.count <= maxEntries else { return }
                    s.clock += 1
                    s.indexes[key] = (entries, s.clock)
                    s.count += entries.count
                    while s.count > maxEntries, let oldest = s.indexes.min(by: { $0.value.used < $1.value.used }) {
                        s.indexes[oldest.key] = nil
                        s.count -= oldest.value.entries.count
                    }
                }
            }
            return try result.get()
        }
    }

    /// Drops an object's index (the object is gone).
    func forget(_ key: String) {
        state.withLockedValue { s in
            if let gone = s.indexes.removeValue(forKey: key) { s.count -= gone.entries.count }
        }
    }

    /// Index entries held.
    var count: Int { state.withLockedValue { $0.count } }
}

extension ObjectFormat {
    /// The entry of `entries` (an object's index, in stream order, each stream's by offset)
    /// that holds `offset` of stream `streamId`.
    static func entry(holding offset: Int64, of streamId: Int64, in entries: [Entry]) -> Entry? {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let e = entries[mid]
            if e.streamId < streamId || (e.streamId == streamId && e.endOffset <= offset) { lo = mid + 1 } else { hi = mid }
        }
        guard lo < entries.count else { return nil }
        let e = entries[lo]
        return e.streamId == streamId && e.startOffset <= offset ? e : nil
    }
}
