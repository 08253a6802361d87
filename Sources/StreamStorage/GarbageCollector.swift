import Logging
import Metadata
import ObjectStore

/// Garbage-collection settings, by their property names.
public struct GarbageCollectionConfig: Sendable {
    /// `object.gc.grace.ms`: how long an object stays in the bucket after nothing references
    /// it, because a reader may still hold it (Kafka's `file.delete.delay.ms`, 60 s).
    public var graceMs: Int64 = 60_000
    /// `object.gc.interval.ms`: how often garbage is marked and collected.
    public var intervalMs = 10_000
    /// Keys deleted per batch request (S3 DeleteObjects takes at most 1000).
    public var batchSize = 1000

    public init() {}
}

/// What one garbage-collection pass did.
public struct GarbageCollectionReport: Sendable, Equatable {
    /// Objects newly found unreferenced.
    public var marked = 0
    /// Objects deleted from the object store (and their rows dropped).
    public var deleted = 0

    public init(marked: Int = 0, deleted: Int = 0) {
        self.marked = marked
        self.deleted = deleted
    }
}

extension StreamEngine {
    /// One garbage-collection pass (ARCHITECTURE.md "Compaction and retention"):
    /// 1. forgets in-memory ranges below each open stream's log start offset;
    /// 2. marks garbage in the metadata store: ranges below their stream's start offset go,
    ///    and every object no range references (trimmed, its topic deleted, or superseded by
    ///    compaction) is marked with the time `now`;
    /// 3. deletes objects marked at least `graceMs` ago from the object store (batch delete),
    ///    then drops their rows. The object goes before its row: a crash in between leaves a
    ///    row whose next deletion is a no-op, never an object nobody knows about.
    @discardableResult
    public func collectGarbage(now: Int64, config: GarbageCollectionConfig) async throws -> GarbageCollectionReport {
        pruneTrimmedRanges()
        var report = GarbageCollectionReport()
        report.marked = try await metadata.markGarbage(now: now)
        while true {
            let keys = try await metadata.garbageObjects(markedBefore: now - config.graceMs, limit: config.batchSize)
            if keys.isEmpty { break }
            try await objectStore.delete(keys)
            try await metadata.dropGarbage(keys: keys)
            report.deleted += keys.count
            for k in keys { logger.debug("deleted garbage object", metadata: ["key": "\(k)"]) }
            if keys.count < config.batchSize { break }
        }
        if report.marked > 0 || report.deleted > 0 {
            logger.info("garbage collection", metadata: ["marked": "\(report.marked)", "deleted": "\(report.deleted)"])
        }
        return report
    }

    /// Drops the in-memory ranges of open streams that lie wholly below the log start offset:
    /// no read can reach them, and their objects may be deleted.
    func pruneTrimmedRanges() {
        state.withLockedValue { s in
            for (id, st) in s.streams where st.ranges.contains(where: { $0.endOffset <= st.logStartOffset }) {
                s.streams[id]!.ranges.removeAll { $0.endOffset <= st.logStartOffset }
            }
        }
    }

    /// Deletes compaction outputs that an earlier run of this node wrote but never committed
    /// (it stopped between the PUT and the commit). Only keys of this node's older broker
    /// epochs are touched: a live compaction of this or another broker is never raced.
    @discardableResult
    public func sweepOrphans() async throws -> Int {
        let prefix = "\(clusterId)/data/"
        let committed = try await metadata.committedObjectKeys(prefix: prefix)
        let orphans = try await objectStore.list(prefix: prefix).map(\.key).filter { key in
            guard !committed.contains(key), let w = CompactionKeys.writer(of: key) else { return false }
            return w.node == nodeId && w.brokerEpoch < brokerEpoch
        }
        if !orphans.isEmpty {
            try await objectStore.delete(orphans)
            logger.info("deleted uncommitted compaction outputs of an earlier run", metadata: ["count": "\(orphans.count)"])
        }
        return orphans.count
    }
}

extension StreamEngine {
    /// One garbage-collection pass (every `object.gc.interval.ms`); a failure is logged and
    /// the next pass tries again.
    public func runGarbageCollection(config: GarbageCollectionConfig, now: Int64) async {
        do {
            try await collectGarbage(now: now, config: config)
        } catch {
            logger.warning("garbage collection failed; retrying next interval", metadata: ["error": "\(error)"])
        }
    }

    /// At startup: deletes compaction outputs an earlier run of this broker wrote but never
    /// committed. A failure is logged; they are retried at the next start.
    public func sweepOrphansLogged() async {
        do {
            try await sweepOrphans()
        } catch {
            logger.warning("could not sweep uncommitted compaction outputs", metadata: ["error": "\(error)"])
        }
    }
}
