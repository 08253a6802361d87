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

/// How a limiter paces an upload that a store sends in parts: while `current` is set, a
/// store calls `beforeSending` with the bytes it is about to send, before each part of a
/// multipart upload (or the body of a single PUT), and sends them once it returns. Set by
/// `ThrottledObjectStore` for the classes that wait; `S3ObjectStore` calls it. (A class: a
/// task-local holding an optional closure crashed in `swift_task_localValuePush`, Swift 6.3.)
public final class UploadPacing: Sendable {
    public let beforeSending: @Sendable (Int) async -> Void

    public init(beforeSending: @escaping @Sendable (Int) async -> Void) {
        self.beforeSending = beforeSending
    }

    @TaskLocal public static var current: UploadPacing?
}
