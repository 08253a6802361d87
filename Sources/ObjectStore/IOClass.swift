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
