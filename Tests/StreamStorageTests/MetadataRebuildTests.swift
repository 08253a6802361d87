import Foundation
import KafkaProtocol
import Logging
import Metadata
import NIOCore
import NIOPosix
import ObjectStore
import StreamStorage
import Testing

/// Metadata snapshots in the bucket, and `MetadataRebuild`: a lost store made again from the
/// newest snapshot plus the objects written since.
@Suite struct MetadataRebuildTests {
    typealias E = EngineTests
    typealias C = CompactionTests

    /// Writes 6 rounds, snapshots, writes 4 more, compacts all of them into one SSO, optionally
    /// collects the inputs, writes 2 more; loses the store and rebuilds it into a new one.
    /// A round is usually one WAL object, but two when its appends straddle a flush, so the
    /// expected counts come from the objects actually written.
    @Test(arguments: StoreKind.testable, [true, false])
    func everyAckedRecordComesBackAfterCompactionSinceTheSnapshot(kind: StoreKind, collect: Bool) async throws {
        let f = try await E.fixture(kind)
        let second = try await f.metadata.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let e = try await E.engine(f, config: C.noCache)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        try await e.open(streamId: second)
        let value = { (s: Int64, i: Int) in "s\(s)-\(i)" }
        let walPrefix = "\(f.clusterId)/wal/"
        try await C.fill(e, [f.streamId, second], rounds: 6, value: value)
        let beforeSnapshot = try await C.committedWALObjects(f)
        #expect(beforeSnapshot >= 6)
        try await f.metadata.commitOffsets(group: "g", [CommittedOffset(topic: "t", partition: 0, offset: 3, leaderEpoch: -1, metadata: nil)])
        let snapshotKey = try await MetadataSnapshots.write(metadata: f.metadata, store: f.store, cluster: f.clusterId, keep: 3)
        #expect(snapshotKey.hasPrefix("\(f.clusterId)/meta/snapshots/"))

        try await C.fill(e, [f.streamId, second], rounds: 4) { s, i in value(s, i + 6) }
        let beforeCompaction = try await C.committedWALObjects(f)
        #expect(beforeCompaction >= beforeSnapshot + 4)
        var compaction = CompactionConfig()
        compaction.splitBytes = 1 << 30
        compaction.minMergeObjects = 2
        let compacted = try #require(try await e.compactOnce(config: compaction, now: 1_000))
        #expect(compacted.inputs == beforeCompaction && compacted.outputs == 1)
        if collect {
            var gc = GarbageCollectionConfig()
            gc.graceMs = 0
            #expect(try await e.collectGarbage(now: 2_000, config: gc).deleted == beforeCompaction)
        }
        try await C.fill(e, [f.streamId, second], rounds: 2) { s, i in value(s, i + 10) }
        await e.shutdown()
        await committer.value
        try await f.metadata.commitOffsets(group: "g", [CommittedOffset(topic: "t", partition: 0, offset: 9, leaderEpoch: -1, metadata: nil)])
        let walEpochs = try await f.store.list(prefix: "\(f.clusterId)/wal/1/").compactMap { Int64($0.key.split(separator: "/")[3]) }
        #expect(!walEpochs.isEmpty)
        let afterCompaction = try await f.store.list(prefix: walPrefix).count - (collect ? 0 : beforeCompaction)
        #expect(afterCompaction >= 2)

        // The store is lost; a new one is rebuilt from the bucket.
        let fresh = try await TestDatabase.fresh(kind).open()
        let report = try await MetadataRebuild.run(store: f.store, into: fresh, cluster: nil, logger: Logger(label: "test"))
        #expect(report.snapshotKey == snapshotKey)
        #expect(report.offsetsAdded == 12, "6 records past the snapshot in each of 2 streams")
        #expect(report.objectsGone == (collect ? beforeSnapshot : 0))
        #expect(report.objectsAdded == 1 + afterCompaction, "the SSO and the WAL objects after it")
        #expect(report.objectsSuperseded == (collect ? 0 : beforeCompaction))
        #expect(report.holes.isEmpty && report.unknownStreams.isEmpty)

        let (cluster, epoch) = try await fresh.bootstrap(nodeId: 1)
        #expect(cluster == f.clusterId)
        #expect(epoch > walEpochs.max()!, "no new WAL object may reuse an old key")
        #expect(try await fresh.fetchOffsets(group: "g").map(\.offset) == [3], "group offsets are as of the snapshot")
        let e2 = StreamEngine(config: C.noCache, objectStore: f.store, metadata: fresh, nodeId: 1, clusterId: cluster,
                              brokerEpoch: epoch, loop: MultiThreadedEventLoopGroup.singleton.next(), logger: Logger(label: "test"))
        #expect(try await e2.recover() == 0, "every WAL object is committed already")
        for s in [f.streamId, second] {
            try await e2.open(streamId: s)
            #expect(e2.offsets(streamId: s)?.highWatermark == 12)
            let got = try await C.readAll(e2, s)
            #expect(got.map(\.0) == (0..<12).map(Int64.init))
            #expect(got.map(\.1) == (0..<12).map { value(s, $0) })
        }
        // What the rebuild found superseded is garbage: collected, nothing else.
        var gc = GarbageCollectionConfig()
        gc.graceMs = 0
        _ = try await e2.collectGarbage(now: .max / 2, config: gc)
        let left = try await f.store.list(prefix: "\(cluster)/").map(\.key).filter { !$0.contains("/meta/") }
        #expect(left.count == 1 + afterCompaction, "\(left)")
        // Still appendable at the right offsets.
        let committer2 = Task { await e2.runCommitter() }
        guard case .success(let r) = await E.append(e2, f.streamId, ["after"]) else { Issue.record("append failed"); return }
        #expect(r.baseOffset == 12)
        await e2.shutdown()
        await committer2.value
    }

    @Test func restoreRefusesAStoreInUseAndRebuildNeedsASnapshot() async throws {
        let f = try await E.fixture(.sqlite)
        await #expect(throws: RebuildError.self) {
            try await MetadataRebuild.run(store: f.store, into: try await TestDatabase.fresh(.sqlite).open(), cluster: nil, logger: Logger(label: "test"))
        }
        try await MetadataSnapshots.write(metadata: f.metadata, store: f.store, cluster: f.clusterId, keep: 3)
        do {
            try await MetadataRebuild.run(store: f.store, into: f.metadata, cluster: nil, logger: Logger(label: "test"))
            Issue.record("a store with topics was overwritten")
        } catch let e as MetadataError {
            #expect(e.message.contains("not empty"))
        }
    }

    /// A snapshot that does not fit the schema (damaged, hand-edited, another format) is
    /// refused with a reason, never read into a crash.
    @Test func aMalformedSnapshotIsRefusedByName() async throws {
        let f = try await E.fixture(.sqlite)
        var good = try await f.metadata.snapshot()
        #expect(try MetadataSnapshot.decode(try good.encoded()) == good)
        func refused(_ s: MetadataSnapshot, _ reason: String) {
            #expect { _ = try MetadataSnapshot.decode(try s.encoded()) } throws: { ($0 as? MetadataError)?.message.contains(reason) == true }
        }
        var noColumn = good
        noColumn["objects"].columns.removeLast()
        noColumn["objects"].rows = noColumn["objects"].rows.map { Array($0.dropLast()) }
        refused(noColumn, "lacks column garbage_since")
        var shortRow = good
        shortRow["streams"].rows[0].removeLast()
        refused(shortRow, "row 1 of table streams")
        var textForInt = good
        textForInt["streams"].rows[0][textForInt["streams"].column("end_offset")] = .text("ten")
        refused(textForInt, "row 1 of table streams")
        good.tables.removeAll { $0.name == "stream_ranges" }
        refused(good, "lacks table stream_ranges")
        #expect(throws: MetadataError.self) { _ = try MetadataSnapshot.decode(Data("{\"format\": 1}".utf8)) }
    }

    @Test func snapshotsBeyondTheRetainedCountAreDeleted() async throws {
        let f = try await E.fixture(.sqlite)
        var keys: [String] = []
        for _ in 0..<5 {
            keys.append(try await MetadataSnapshots.write(metadata: f.metadata, store: f.store, cluster: f.clusterId, keep: 2))
            try await Task.sleep(for: .milliseconds(3))  // distinct database-clock names
        }
        let left = try await f.store.list(prefix: MetadataSnapshots.prefix(cluster: f.clusterId)).map(\.key).sorted()
        #expect(left == Array(keys.suffix(2)))
        let snapshot = try await MetadataSnapshots.newest(in: f.store, cluster: f.clusterId)
        #expect(snapshot?.key == keys.last)
        #expect(snapshot?.snapshot == (try await f.metadata.snapshot()).withTime(of: snapshot!.snapshot))
    }

    /// Two objects hold the same offsets (a fenced broker's write beside its successor's):
    /// the higher epoch wins and the stream's epoch moves; a stream no snapshot names and a
    /// gap are reported.
    @Test func theHigherEpochWinsAndUnknownStreamsAndHolesAreReported() async throws {
        let f = try await E.fixture(.sqlite)
        let snapshot = try await f.metadata.snapshot()
        let s = f.streamId
        func entry(_ stream: Int64, _ epoch: Int64, _ start: Int64, _ end: Int64) -> ObjectFormat.Entry {
            .init(streamId: stream, epoch: epoch, startOffset: start, endOffset: end, recordCount: Int32(end - start),
                  minTimestamp: 0, maxTimestamp: 0, position: 0, size: 10)
        }
        let c = f.clusterId
        let objects: [String: ObjectFormat.Parsed] = [
            "\(c)/wal/1/0000000001/00000000000000000000": .init(entries: [entry(s, 0, 0, 5)], superseded: []),
            "\(c)/wal/1/0000000001/00000000000000000001": .init(entries: [entry(s, 0, 5, 9), entry(99, 0, 0, 3)], superseded: []),  // the zombie
            "\(c)/wal/2/0000000007/00000000000000000000": .init(entries: [entry(s, 1, 5, 8)], superseded: []),  // its successor
            "\(c)/wal/2/0000000007/00000000000000000001": .init(entries: [entry(s, 1, 8, 10)], superseded: []),
            "\(c)/wal/2/0000000007/00000000000000000002": .init(entries: [entry(s, 1, 12, 14)], superseded: []),  // after a gap
            "\(c)/wal/1/file-wal": .init(entries: [], superseded: []),
        ]
        let (rebuilt, report) = try await MetadataRebuild.rebuild(snapshot, key: "k", cluster: c, listed: objects.mapValues { _ in 100 }) { key, _ in
            if key.hasSuffix("file-wal") { throw RebuildError(description: "not an object") }
            return objects[key]!
        }
        #expect(report.notObjects == 1)
        #expect(report.unknownStreams == [99])
        #expect(report.holes.map { $0.streamId } == [s] && report.holes.map { $0.from } == [10])
        #expect(report.offsetsAdded == 10)
        let streams = rebuilt["streams"]
        let row = try #require(streams.rows.first { $0[streams.column("stream_id")] == .int(s) })
        #expect(row[streams.column("end_offset")] == .int(10))
        #expect(row[streams.column("epoch")] == .int(1))
        let ranges = rebuilt["stream_ranges"]
        let startsAndEpochs: [[SQLValue]] = ranges.rows.map { [$0[ranges.column("start_offset")], $0[ranges.column("epoch")]] }
        #expect(startsAndEpochs == [[.int(0), .int(0)], [.int(5), .int(1)], [.int(8), .int(1)]])
        let epochs = rebuilt["stream_epochs"]
        let (es, ee, eo) = (epochs.column("stream_id"), epochs.column("epoch"), epochs.column("start_offset"))
        let epochRows: [[SQLValue]] = epochs.rows.filter { $0[es] == SQLValue.int(s) }.map { [$0[ee], $0[eo]] }
        #expect(epochRows.contains([.int(1), .int(5)]), "\(epochRows)")
        let brokers = rebuilt["brokers"]
        let (bn, be) = (brokers.column("node_id"), brokers.column("broker_epoch"))
        let nodeEpochs: [[SQLValue]] = brokers.rows.map { [$0[bn], $0[be]] }
        #expect(nodeEpochs == [[.int(1), .int(1)], [.int(2), .int(7)]])
        // The zombie's object holds a stream no snapshot names: not registered (nor collected).
        let keys = rebuilt["objects"].rows.map { $0[rebuilt["objects"].column("key")].text! }
        #expect(!keys.contains("\(c)/wal/1/0000000001/00000000000000000001"))
        #expect(keys.count == 4)
    }
}

extension MetadataSnapshot {
    /// This snapshot with `other`'s time: equal when the rows are.
    func withTime(of other: MetadataSnapshot) -> MetadataSnapshot {
        var s = self
        s.takenMs = other.takenMs
        return s
    }
}
