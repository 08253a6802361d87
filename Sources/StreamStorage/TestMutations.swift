/// TEST-ONLY: bugs that the crash simulation must catch (issue 5, "planted mutants"). An
/// engine built with a non-empty set misbehaves on purpose; nothing outside
/// `Tests/StreamStorageTests/SimulationTests.swift` may pass one. The default (empty) set
/// costs one branch on a constant at each site.
public struct TestMutations: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Acks a flush's appends when its upload starts, before the WAL object is written.
    public static let ackBeforeWrite = TestMutations(rawValue: 1 << 0)
    /// Compaction deletes its inputs before the metadata commit that supersedes them.
    public static let deleteBeforeSupersedingCommit = TestMutations(rawValue: 1 << 1)
    /// Skips the fence-key read after the WAL PUT (ARCHITECTURE.md "Fencing before ack").
    public static let skipFenceCheck = TestMutations(rawValue: 1 << 2)
    /// The file WAL acks a group once it is written, without fdatasync.
    public static let skipWALSync = TestMutations(rawValue: 1 << 3)
}
