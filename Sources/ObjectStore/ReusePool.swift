import NIOConcurrencyHelpers

/// A few big buffers kept for reuse: a buffer taken from here is already backed by memory,
/// so writing it again costs no page faults, where fresh multi-MiB memory costs one per page
/// (mallocs of 4 MiB and more are mmap'd and given back on free, see `tern serve`).
public final class ReusePool<Item: Sendable>: Sendable {
    private let items = NIOLockedValueBox<[Item]>([])
    private let keep: Int

    /// Holds at most `keep` items; more given back are dropped.
    public init(keep: Int) { self.keep = keep }

    /// Items kept right now.
    public var count: Int { items.withLockedValue { $0.count } }

    public func take() -> Item? { items.withLockedValue { $0.popLast() } }

    public func give(_ item: Item) {
        items.withLockedValue { if $0.count < keep { $0.append(item) } }
    }
}
