import Foundation
import Logging
import Metadata
import NIOCore
import ObjectStore

/// Snapshots of the metadata store in the bucket (`<cluster>/meta/snapshots/`), and the
/// rebuild of a lost store from the newest one plus the objects written since
/// (ARCHITECTURE.md "Metadata store"; `tern admin rebuild-metadata`).
public enum MetadataSnapshots {
    public static func prefix(cluster: String) -> String { "\(cluster)/meta/snapshots/" }

    /// Names sort by time: 20 digits of the database's clock in ms.
    public static func key(cluster: String, takenMs: Int64) -> String {
        let digits = String(takenMs)
        return prefix(cluster: cluster) + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".json"
    }

    /// Writes a snapshot of `metadata` under `cluster` and deletes all but the newest `keep`.
    /// Returns the new snapshot's key.
    @discardableResult
    public static func write(metadata: any MetadataStore, store: any ObjectStore, cluster: String, keep: Int) async throws -> String {
        let snapshot = try await metadata.snapshot()
        let key = key(cluster: cluster, takenMs: snapshot.takenMs)
        let data = try snapshot.encoded()
        try await store.put(key, ByteBuffer(bytes: data), ifNoneMatch: false)
        let old = try await store.list(prefix: prefix(cluster: cluster)).map(\.key).filter { $0.hasSuffix(".json") }.sorted().dropLast(max(keep, 1))
        if !old.isEmpty { try await store.delete(Array(old)) }
        return key
    }

    /// The clusters in the bucket that have at least one snapshot.
    public static func clusters(in store: any ObjectStore) async throws -> [String] {
        let keys = try await store.list(prefix: "").map(\.key)
        return Array(Set(keys.compactMap { k -> String? in
            let parts = k.split(separator: "/", maxSplits: 3)
            guard parts.count == 4, parts[1] == "meta", parts[2] == "snapshots" else { return nil }
            return String(parts[0])
        })).sorted()
    }

    /// The newest snapshot of `cluster`, with its key.
    public static func newest(in store: any ObjectStore, cluster: String) async throws -> (key: String, snapshot: MetadataSnapshot)? {
        guard let key = try await store.list(prefix: prefix(cluster: cluster)).map(\.key).filter({ $0.hasSuffix(".json") }).max() else {
            return nil
        }
        let body = try await store.get(key, range: nil)
        return (key, try MetadataSnapshot.decode(Data(body.readableBytesView)))
    }
}

/// What a rebuild found and did, for the operator.
public struct RebuildReport: Sendable, Equatable {
    public var snapshotKey = ""
    public var snapshotTakenMs: Int64 = 0
    /// Objects in the bucket the snapshot did not know, read and applied.
    public var objectsAdded = 0
    /// Objects that a newer object's footer says it supersedes (compaction), dropped.
    public var objectsSuperseded = 0
    /// Objects the snapshot named that are no longer in the bucket (collected since).
    public var objectsGone = 0
    /// Listed keys that are not Tern objects (markers), left alone.
    public var notObjects = 0
    /// Records (offsets) added to streams past the snapshot's end offsets.
    public var offsetsAdded: Int64 = 0
    /// Streams the snapshot does not know (topics created after it): no topic to put their
    /// records in. Their objects are not registered; a broker's recovery collects them.
    public var unknownStreams: [Int64] = []
    /// Streams whose objects leave a hole: offsets from `from` on could not be chained.
    public var holes: [(streamId: Int64, from: Int64)] = []

    public init() {}

    public static func == (a: RebuildReport, b: RebuildReport) -> Bool {
        a.snapshotKey == b.snapshotKey && a.objectsAdded == b.objectsAdded && a.objectsSuperseded == b.objectsSuperseded
            && a.objectsGone == b.objectsGone && a.offsetsAdded == b.offsetsAdded && a.unknownStreams == b.unknownStreams
            && a.holes.map(\.streamId) == b.holes.map(\.streamId) && a.holes.map(\.from) == b.holes.map(\.from)
    }
}

public struct RebuildError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Rebuilds the metadata store of a cluster from its bucket: the newest snapshot, then every
/// object the snapshot does not know (read by its index), in offset order per stream.
///
/// - Objects that a newer object's footer supersedes are dropped, with their ranges.
/// - Objects the snapshot names that are gone from the bucket lose their ranges; a stream
///   whose first objects went (retention since the snapshot) starts at its first range left.
/// - Where two objects hold the same offsets (a fenced broker's write next to its
///   successor's), the higher stream epoch wins, and epochs never go back along a stream.
/// - Broker epochs move past every epoch in the WAL's keys, so no new WAL object can reuse
///   an old key; leases are expired, so recovery runs for every broker that does not return.
/// - Producer ids skip ahead by `producerIdGap`: ids handed out after the snapshot are not
///   handed out again.
///
/// What the snapshot alone held and was changed after it is as of the snapshot: group
/// offsets, topic configs, transactions, producer state, DeleteRecords.
public enum MetadataRebuild {
    public static let producerIdGap: Int64 = 1 << 20

    public static func run(store: any ObjectStore, into metadata: any MetadataStore, cluster: String?, logger: Logger) async throws -> RebuildReport {
        let clusterId: String
        if let cluster {
            clusterId = cluster
        } else {
            let found = try await MetadataSnapshots.clusters(in: store)
            guard found.count == 1 else {
                throw RebuildError(description: found.isEmpty
                                   ? "no metadata snapshot in the bucket (looked for <cluster>/meta/snapshots/*.json)"
                                   : "the bucket holds snapshots of several clusters (\(found.joined(separator: ", "))); name one with --cluster-id")
            }
            clusterId = found[0]
        }
        guard let (key, snapshot) = try await MetadataSnapshots.newest(in: store, cluster: clusterId) else {
            throw RebuildError(description: "no metadata snapshot of cluster \(clusterId) in the bucket")
        }
        var listed: [String: Int] = [:]
        for prefix in ["\(clusterId)/wal/", "\(clusterId)/data/"] {
            for o in try await store.list(prefix: prefix) { listed[o.key] = o.size }
        }
        let (rebuilt, report) = try await rebuild(snapshot, key: key, cluster: clusterId, listed: listed) { k, size in
            try await ObjectFormat.readIndex(store, key: k, size: size)
        }
        try await metadata.restore(rebuilt)
        return report
    }

    /// The rebuild itself, on rows: `snapshot` plus the `listed` objects (key → size), whose
    /// indexes `readIndex` reads.
    public static func rebuild(_ snapshot: MetadataSnapshot, key: String, cluster: String, listed: [String: Int],
                               readIndex: (String, Int) async throws -> ObjectFormat.Parsed) async throws -> (MetadataSnapshot, RebuildReport) {
        var s = snapshot
        var report = RebuildReport()
        report.snapshotKey = key
        report.snapshotTakenMs = snapshot.takenMs

        // Objects the snapshot knows: key → (id, garbage?).
        let objects = s["objects"]
        let (oId, oKey, oGarbage) = (objects.column("object_id"), objects.column("key"), objects.column("garbage_since"))
        var known: [String: (id: Int64, garbage: Bool)] = [:]
        var keyOfId: [Int64: String] = [:]
        for r in objects.rows {
            known[r[oKey].text!] = (r[oId].int!, r[oGarbage] != .null)
            keyOfId[r[oId].int!] = r[oKey].text!
        }

        // New objects: indexes read, supersessions gathered.
        var added: [(key: String, size: Int, parsed: ObjectFormat.Parsed)] = []
        var superseded = Set<String>()
        for (k, size) in listed.sorted(by: { $0.key < $1.key }) where known[k] == nil {
            guard let parsed = try? await readIndex(k, size) else {
                report.notObjects += 1
                continue
            }
            added.append((k, size, parsed))
            superseded.formUnion(parsed.superseded)
        }

        // Streams.
        let streams = s["streams"]
        let sc = (id: streams.column("stream_id"), epoch: streams.column("epoch"), owner: streams.column("owner"),
                  start: streams.column("start_offset"), end: streams.column("end_offset"))
        var streamRow: [Int64: Int] = [:]
        for (i, r) in streams.rows.enumerated() { streamRow[r[sc.id].int!] = i }

        // Every candidate range per stream: the snapshot's (objects still there and not
        // superseded) and the new objects'.
        struct Candidate {
            var range: StreamRange
            var objectKey: String
        }
        var byStream: [Int64: [Candidate]] = [:]
        let ranges = s["stream_ranges"]
        let rc = (stream: ranges.column("stream_id"), start: ranges.column("start_offset"), end: ranges.column("end_offset"),
                  epoch: ranges.column("epoch"), object: ranges.column("object_id"), position: ranges.column("position"),
                  size: ranges.column("size"), minTs: ranges.column("min_timestamp"), maxTs: ranges.column("max_timestamp"))
        var gone = Set<String>()
        for r in ranges.rows {
            guard let k = keyOfId[r[rc.object].int!] else { continue }
            if listed[k] == nil { gone.insert(k); continue }
            if superseded.contains(k) { continue }
            let range = StreamRange(streamId: r[rc.stream].int!, epoch: r[rc.epoch].int!, startOffset: r[rc.start].int!,
                                    endOffset: r[rc.end].int!, objectKey: k, position: Int(r[rc.position].int!),
                                    size: Int(r[rc.size].int!), minTimestamp: r[rc.minTs].int!, maxTimestamp: r[rc.maxTs].int!)
            byStream[range.streamId, default: []].append(Candidate(range: range, objectKey: k))
        }
        var unknown = Set<Int64>()
        var objectsWithUnknown = Set<String>()
        for a in added where !superseded.contains(a.key) {
            for r in ObjectFormat.ranges(of: a.parsed.entries, key: a.key) {
                guard streamRow[r.streamId] != nil else {
                    unknown.insert(r.streamId)
                    objectsWithUnknown.insert(a.key)
                    continue
                }
                byStream[r.streamId, default: []].append(Candidate(range: r, objectKey: a.key))
            }
        }
        report.objectsGone = known.keys.filter { listed[$0] == nil }.count
        report.unknownStreams = unknown.sorted()

        // Chain each stream from its start offset.
        var chosen: [Int64: [StreamRange]] = [:]
        var epochStarts: [Int64: [(epoch: Int64, start: Int64)]] = [:]
        var usedObjects = Set<String>()
        var rows = streams.rows
        for (id, row) in streamRow {
            let start = rows[row][sc.start].int!, oldEnd = rows[row][sc.end].int!
            var candidates = byStream[id] ?? []
            candidates.sort { ($0.range.startOffset, -$0.range.epoch) < ($1.range.startOffset, -$1.range.epoch) }
            var cursor = start
            var epoch: Int64 = .min
            var picked: [StreamRange] = []
            if let first = candidates.first(where: { $0.range.endOffset > start }), first.range.startOffset > start {
                cursor = first.range.startOffset  // its first objects were collected (retention since the snapshot)
            }
            let newStart = cursor
            while true {
                let usable = candidates.filter { $0.range.startOffset <= cursor && $0.range.endOffset > cursor && $0.range.epoch >= epoch }
                guard let best = usable.max(by: { $0.range.epoch < $1.range.epoch }) else { break }
                if best.range.startOffset < cursor {
                    // Straddles the cursor: only the log's first range may (its start is inside it).
                    guard picked.isEmpty else { break }
                }
                picked.append(best.range)
                usedObjects.insert(best.objectKey)
                if best.range.epoch != epoch { epochStarts[id, default: []].append((best.range.epoch, max(best.range.startOffset, newStart))) }
                epoch = best.range.epoch
                cursor = best.range.endOffset
            }
            if !picked.isEmpty && (cursor < oldEnd || candidates.contains { $0.range.endOffset > cursor && $0.range.epoch >= epoch }) {
                report.holes.append((id, cursor))
            }
            chosen[id] = picked
            if cursor > oldEnd { report.offsetsAdded += cursor - oldEnd }
            rows[row][sc.start] = .int(picked.isEmpty ? max(start, oldEnd) : newStart)
            rows[row][sc.end] = .int(picked.isEmpty ? max(start, oldEnd) : cursor)
            let oldEpoch = rows[row][sc.epoch].int!
            if epoch > oldEpoch { rows[row][sc.epoch] = .int(epoch) }
            rows[row][sc.owner] = .null  // every broker is down; opening the stream sets it
        }
        report.holes.sort { $0.streamId < $1.streamId }
        s["streams"].rows = rows

        // Epoch history: epochs first seen past the snapshot.
        var epochs = s["stream_epochs"]
        let ec = (stream: epochs.column("stream_id"), epoch: epochs.column("epoch"), start: epochs.column("start_offset"))
        var haveEpoch = Set(epochs.rows.map { "\($0[ec.stream].int!):\($0[ec.epoch].int!)" })
        for (id, starts) in epochStarts.sorted(by: { $0.key < $1.key }) {
            for e in starts where !haveEpoch.contains("\(id):\(e.epoch)") {
                var row = [SQLValue](repeating: .null, count: epochs.columns.count)
                row[ec.stream] = .int(id)
                row[ec.epoch] = .int(e.epoch)
                row[ec.start] = .int(e.start)
                epochs.rows.append(row)
                haveEpoch.insert("\(id):\(e.epoch)")
            }
        }
        s["stream_epochs"] = epochs

        // Objects: gone ones dropped; superseded ones garbage from now; new ones added (as
        // garbage when nothing of theirs was used and they hold no unknown stream).
        var objectRows = objects.rows.filter { listed[$0[oKey].text!] != nil }
        for i in objectRows.indices where superseded.contains(objectRows[i][oKey].text!) && objectRows[i][oGarbage] == .null {
            objectRows[i][oGarbage] = .int(snapshot.takenMs)
            report.objectsSuperseded += 1
        }
        var nextId = (objects.rows.compactMap { $0[oId].int }.max() ?? 0) + 1
        var idOfKey: [String: Int64] = [:]
        for r in objectRows { idOfKey[r[oKey].text!] = r[oId].int! }
        for a in added {
            let used = usedObjects.contains(a.key)
            if !used && objectsWithUnknown.contains(a.key) { continue }  // left alone: a topic the snapshot missed
            var row = [SQLValue](repeating: .null, count: objects.columns.count)
            row[oId] = .int(nextId)
            row[oKey] = .text(a.key)
            row[objects.column("size")] = .int(Int64(a.size))
            if !used { row[oGarbage] = .int(snapshot.takenMs) }
            if superseded.contains(a.key) { report.objectsSuperseded += 1 } else if used { report.objectsAdded += 1 }
            objectRows.append(row)
            idOfKey[a.key] = nextId
            nextId += 1
        }
        s["objects"].rows = objectRows

        // Ranges: the chains.
        var rangeRows: [[SQLValue]] = []
        for (id, picked) in chosen.sorted(by: { $0.key < $1.key }) {
            for r in picked {
                var row = [SQLValue](repeating: .null, count: ranges.columns.count)
                row[rc.stream] = .int(id)
                row[rc.start] = .int(r.startOffset)
                row[rc.end] = .int(r.endOffset)
                row[rc.epoch] = .int(r.epoch)
                row[rc.object] = .int(idOfKey[r.objectKey]!)
                row[rc.position] = .int(Int64(r.position))
                row[rc.size] = .int(Int64(r.size))
                row[rc.minTs] = .int(r.minTimestamp)
                row[rc.maxTs] = .int(r.maxTimestamp)
                rangeRows.append(row)
            }
        }
        s["stream_ranges"].rows = rangeRows

        // Brokers: epochs past every WAL key's, leases expired.
        var brokers = s["brokers"]
        let bc = (node: brokers.column("node_id"), epoch: brokers.column("broker_epoch"), lease: brokers.column("lease_expires_ms"))
        var walEpoch: [Int64: Int64] = [:]
        for k in listed.keys {
            let parts = k.dropFirst(cluster.count + 1).split(separator: "/")
            guard parts.count >= 3, parts[0] == "wal", let node = Int64(parts[1]), let epoch = Int64(parts[2]) else { continue }
            walEpoch[node] = max(walEpoch[node] ?? 0, epoch)
        }
        for i in brokers.rows.indices {
            let node = brokers.rows[i][bc.node].int!
            if let e = walEpoch.removeValue(forKey: node), e > brokers.rows[i][bc.epoch].int! { brokers.rows[i][bc.epoch] = .int(e) }
            brokers.rows[i][bc.lease] = .int(0)
        }
        for (node, epoch) in walEpoch.sorted(by: { $0.key < $1.key }) {
            var row = [SQLValue](repeating: .int(0), count: brokers.columns.count)
            row[bc.node] = .int(node)
            row[bc.epoch] = .int(epoch)
            row[brokers.column("host")] = .text("")
            row[brokers.column("rack")] = .null
            brokers.rows.append(row)
        }
        s["brokers"] = brokers

        // The cluster row: producer ids skip ahead; the change version moves.
        var clusterTable = s["cluster"]
        if !clusterTable.rows.isEmpty {
            let p = clusterTable.column("next_producer_id"), v = clusterTable.column("version")
            clusterTable.rows[0][p] = .int((clusterTable.rows[0][p].int ?? 0) + producerIdGap)
            clusterTable.rows[0][v] = .int((clusterTable.rows[0][v].int ?? 0) + 1)
        }
        s["cluster"] = clusterTable
        return (s, report)
    }
}
