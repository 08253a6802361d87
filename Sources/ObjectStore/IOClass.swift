/// Object-store traffic classes, highest priority first (ARCHITECTURE.md "Throughput
/// classes"). Tail reads are served from the LogCache and make no object-store traffic.
public enum IOClass: Int, Sendable, CaseIterable {
    /// WAL uploads and recovery: never waits, but its bytes count against the total.
    case produce = 0
    /// Fetches that miss the LogCache: block-cache GETs and their readahead.
    case catchUpRead
    /// Compaction's reads and writes. Its multipart uploads send one part at a time.
    case compaction

    /// Its label on `/metrics`.
    public var label: String {
        switch self {
        case .produce: "produce"
        case .catchUpRead: "catchup_read"
        case .compaction: "compaction"
        }
    }

    /// The class of the object-store requests the current task makes.
    @TaskLocal public static var current: IOClass = .produce
}

/// How a limiter paces a transfer that a store makes in parts: while `current` is set, a store
/// calls `take` with the bytes of each part of an upload before it sends them (each part of a
/// multipart upload, or the body of a single PUT), and, if it `pacesDownloads`, with those of
/// each part of a download as it receives them, reading no more until `then` is called. Set
/// by `ThrottledObjectStore` for the classes that wait. (A class: a task-local holding an
/// optional closure crashed in `swift_task_localValuePush`, Swift 6.3.)
public final class TransferPacing: Sendable {
    /// Calls `then` once `bytes` may go (at once, or later on another thread).
    public let take: @Sendable (_ bytes: Int, _ then: @escaping @Sendable () -> Void) -> Void

    public init(take: @escaping @Sendable (_ bytes: Int, _ then: @escaping @Sendable () -> Void) -> Void) {
        self.take = take
    }

    /// Returns once `bytes` may go.
    public func take(_ bytes: Int) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in take(bytes) { c.resume() } }
    }

    @TaskLocal public static var current: TransferPacing?
}
