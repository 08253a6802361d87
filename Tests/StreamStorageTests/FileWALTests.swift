import Foundation
import KafkaProtocol
import Logging
import Metadata
import NIOCore
import NIOPosix
import ObjectStore
import StreamStorage
import Testing

/// The file WAL: produce acked on fdatasync, objects uploaded behind it, segments replayed
/// after a crash, fencing by fence file.
@Suite struct FileWALTests {
    static func directory() -> String {
        let d = NSTemporaryDirectory() + "tern-filewal-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// An engine on the file WAL under `dir`, at the node's next broker epoch.
    static func engine(_ f: EngineTests.Fixture, dir: String, config: StorageConfig = slow,
                       minSyncInterval: Duration = .zero) async throws -> StreamEngine {
        let (_, epoch) = try await f.metadata.bootstrap(nodeId: 1)
        return StreamEngine(config: config, objectStore: f.store, metadata: f.metadata, nodeId: 1, clusterId: f.clusterId,
                            brokerEpoch: epoch, loop: MultiThreadedEventLoopGroup.singleton.next(), logger: Logger(label: "test"),
                            fileWAL: try FileWAL(root: dir, node: 1, epoch: epoch, minSyncInterval: minSyncInterval))
    }

    /// Uploads wait a minute unless flushed: whatever is acked before is acked by the file.
    static let slow: StorageConfig = {
        var c = StorageConfig()
        c.uploadIntervalMs = 60_000
        c.uploadBytes = 64 << 20
        return c
    }()

    static func segments(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/1")) ?? []).filter { $0.hasSuffix(".wal") }.sorted()
    }

    /// Segments with frames in them (the next segment is created ahead, empty).
    static func dataSegments(_ dir: String) -> [String] {
        segments(dir).filter { ((try? FileManager.default.attributesOfItem(atPath: dir + "/1/" + $0))?[.size] as? Int ?? 0) > 0 }
    }

    static func readAll(_ e: StreamEngine, _ s: Int64, to end: Int64) async throws -> [String] {
        var got: [String] = []
        var offset: Int64 = 0
        while offset < end {
            let r = try await e.read(streamId: s, offset: offset, maxBytes: 1 << 20)
            got += try EngineTests.values(r)
            offset += Int64(try r.batches.map { try Record.decodeAll(batch: $0).count }.reduce(0, +))
        }
        return got
    }

    @Test func produceIsAckedOnSyncAndUploadedBehind() async throws {
        let f = try await EngineTests.fixture()
        let dir = Self.directory()
        let e = try await Self.engine(f, dir: dir)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        for i in 0..<3 { #expect(try await EngineTests.append(e, f.streamId, ["v\(i)"]).get().baseOffset == Int64(i)) }
        #expect(try await f.store.list(prefix: "").isEmpty, "acked before any object was written")
        #expect(e.offsets(streamId: f.streamId)?.highWatermark == 3)
        #expect(try await Self.readAll(e, f.streamId, to: 3) == ["v0", "v1", "v2"], "served from the LogCache")
        #expect(Self.dataSegments(dir).count == 1)
        // The next segment is created ahead, off the WAL thread: a journal commit that a group
        // commit would otherwise wait for when the next object begins.
        for _ in 0..<100 where Self.segments(dir).count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(Self.segments(dir) == ["0000000002-00000000000000000000.wal", "0000000002-00000000000000000001.wal"])

        e.flush()
        await e.shutdown()
        await committer.value
        #expect(try await f.store.list(prefix: "").count == 1, "one object for the three acks")
        try await Task.sleep(for: .milliseconds(100))  // the segment is deleted off the WAL thread
        #expect(Self.segments(dir).isEmpty, "a committed object's segment is deleted, and a clean shutdown deletes the next one")
    }

    /// `wal.sync.min.interval.us`: a group that would begin sooner after the last one waits,
    /// and what arrives meanwhile joins it.
    @Test func groupsBeginAtLeastTheMinimumIntervalApart() async throws {
        let f = try await EngineTests.fixture()
        let dir = Self.directory()
        let e = try await Self.engine(f, dir: dir, minSyncInterval: .milliseconds(300))
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        let start = ContinuousClock.now
        for i in 0..<3 { #expect(try await EngineTests.append(e, f.streamId, ["v\(i)"]).get().baseOffset == Int64(i)) }
        #expect(ContinuousClock.now - start >= .milliseconds(600), "three groups one after another, each 300 ms after the last")
        #expect(e.walSyncDurations.count == 3)

        // Appended together right after a group: they wait for the interval, in one group.
        var tickets: [StreamEngine.AppendTicket] = []
        for i in 3..<13 {
            let (b, h) = EngineTests.batch(["v\(i)"])
            tickets.append(await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(10)))
        }
        for (i, t) in tickets.enumerated() { #expect(try await t.result().get().baseOffset == Int64(3 + i)) }
        #expect(e.walSyncDurations.count == 4, "ten appends, one group")
        #expect(try await Self.readAll(e, f.streamId, to: 13) == (0..<13).map { "v\($0)" })

        await e.shutdown()
        await committer.value
    }

    /// A group waits only for what is left of the interval: nothing before the first group
    /// or after a quiet spell as long as the interval.
    @Test func aGroupAfterAQuietSpellBeginsAtOnce() throws {
        let wal = try FileWAL(root: Self.directory(), node: 1, epoch: 1, minSyncInterval: .milliseconds(100))
        defer { wal.stop() }
        #expect(wal.waitForNextGroup() == .zero, "no group yet")
        #expect(try wal.append([], segment: 0))
        let waited = wal.waitForNextGroup()
        #expect(waited > .zero && waited <= .milliseconds(100), "right after a group")
        #expect(try wal.append([], segment: 0))
        Thread.sleep(forTimeInterval: 0.15)
        #expect(wal.waitForNextGroup() == .zero, "after a quiet spell")
    }

    @Test func aCrashBeforeTheUploadIsReplayedFromTheSegment() async throws {
        let f = try await EngineTests.fixture()
        let dir = Self.directory()
        let e = try await Self.engine(f, dir: dir)
        try await e.open(streamId: f.streamId)
        for i in 0..<5 { _ = try await EngineTests.append(e, f.streamId, ["v\(i)"]).get() }
        _ = try await EngineTests.append(e, f.streamId, ["p0", "p1"], producerId: 9, sequence: 0).get()
        // The broker dies here: nothing uploaded, nothing committed. A torn frame follows.
        #expect(try await f.store.list(prefix: "").isEmpty)
        let segment = dir + "/1/" + Self.segments(dir)[0]
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data([0x54, 0x57, 0x41, 0x4C, 0, 0, 1, 0, 1, 2, 3, 4, 5]))
        try handle.close()

        let e2 = try await Self.engine(f, dir: dir)
        #expect(try await e2.recover() == 1)
        #expect(Self.segments(dir).isEmpty, "a replayed segment is deleted")
        let opened = try await e2.open(streamId: f.streamId)
        #expect(opened.highWatermark == 7)
        #expect(try await Self.readAll(e2, f.streamId, to: 7) == ["v0", "v1", "v2", "v3", "v4", "p0", "p1"])
        // The producer's state came back with the records: a retry of its batch is a duplicate.
        #expect(try await EngineTests.append(e2, f.streamId, ["p0", "p1"], producerId: 9, sequence: 0).get().baseOffset == 5)
        #expect(e2.offsets(streamId: f.streamId)?.highWatermark == 7)
    }

    @Test func segmentsAreReplayedInOrderWithObjectsAlreadyUploaded() async throws {
        let f = try await EngineTests.fixture()
        let dir = Self.directory()
        let e = try await Self.engine(f, dir: dir)
        try await e.open(streamId: f.streamId)
        _ = try await EngineTests.append(e, f.streamId, ["a"]).get()
        e.flush()  // object 0 is uploaded, but no committer runs: never committed
        for _ in 0..<100 where try await f.store.list(prefix: "").isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        _ = try await EngineTests.append(e, f.streamId, ["b"]).get()  // in segment 1 only

        let e2 = try await Self.engine(f, dir: dir)
        #expect(try await e2.recover() == 2)
        let opened = try await e2.open(streamId: f.streamId)
        #expect(opened.highWatermark == 2)
        #expect(try await Self.readAll(e2, f.streamId, to: 2) == ["a", "b"])
        #expect(Self.segments(dir).isEmpty)
    }

    @Test func aRestartWithoutTheFileWALStillReplaysItsSegments() async throws {
        let f = try await EngineTests.fixture()
        let dir = Self.directory()
        let e = try await Self.engine(f, dir: dir)
        #expect(try await e.recover() == 0)  // names the WAL directory in the bucket
        try await e.open(streamId: f.streamId)
        _ = try await EngineTests.append(e, f.streamId, ["acked"]).get()

        let e2 = try await EngineTests.engine(f)  // the S3 WAL now
        #expect(try await e2.recover() == 1, "the marker led to the segment")
        #expect(try await f.store.list(prefix: "\(f.clusterId)/wal/1/file-wal").isEmpty, "the marker goes with the file WAL")
        let opened = try await e2.open(streamId: f.streamId)
        #expect(try await Self.readAll(e2, f.streamId, to: opened.highWatermark) == ["acked"])
    }

    @Test func aFileWALThatCannotBeReadHereStopsTheRecovery() async throws {
        let f = try await EngineTests.fixture()
        let dir = Self.directory()
        let e = try await Self.engine(f, dir: dir)
        _ = try await e.recover()
        try await e.open(streamId: f.streamId)
        _ = try await EngineTests.append(e, f.streamId, ["acked"]).get()
        try FileManager.default.moveItem(atPath: dir, toPath: dir + "-elsewhere")  // another machine's disk

        let e2 = try await EngineTests.engine(f)
        await #expect(throws: RecoveryError.self) { try await e2.recover() }
        try FileManager.default.moveItem(atPath: dir + "-elsewhere", toPath: dir)  // shared again
        #expect(try await e2.recover() == 1)
    }

    @Test func aFencedBrokerAcksNothing() async throws {
        let f = try await EngineTests.fixture()
        let dir = Self.directory()
        let e = try await Self.engine(f, dir: dir)
        try await e.open(streamId: f.streamId)
        _ = try await EngineTests.append(e, f.streamId, ["before"]).get()
        // Its successor takes over: it fences this run's epoch, then replays its segments.
        let e2 = try await Self.engine(f, dir: dir)
        #expect(try await e2.recover() == 1)
        #expect(await EngineTests.append(e, f.streamId, ["after"]) == .failure(.fenced))
        let opened = try await e2.open(streamId: f.streamId)
        #expect(opened.highWatermark == 1)
        #expect(try await Self.readAll(e2, f.streamId, to: 1) == ["before"])
    }

    @Test func failedUploadsDoNotHoldUpAcks() async throws {
        let f = try await EngineTests.fixture(store: FaultInjectingObjectStore(base: InMemoryObjectStore(), faults: [.put: .init(errorRate: 1)]))
        let dir = Self.directory()
        var config = StorageConfig()
        config.uploadIntervalMs = 1
        let e = try await Self.engine(f, dir: dir, config: config)
        try await e.open(streamId: f.streamId)
        for i in 0..<20 { #expect(try await EngineTests.append(e, f.streamId, ["v\(i)"]).get().baseOffset == Int64(i)) }
        #expect(try await Self.readAll(e, f.streamId, to: 20).count == 20)
    }

    @Test func aTornOrCorruptFrameEndsTheSegment() throws {
        var good = ByteBuffer()
        func frame(_ values: [String]) -> ByteBuffer {
            let (b, h) = EngineTests.batch(values)
            return FileWAL.frame([ObjectFormat.Batch(streamId: 4, epoch: 2, header: h, bytes: b)])
        }
        good.writeImmutableBuffer(frame(["a"]))
        good.writeImmutableBuffer(frame(["b", "c"]))
        #expect(good.readableBytes == 2 * 4096, "frames are padded to 4 KiB for O_DIRECT")
        #expect(FileWAL.parse(good).map(\.header.recordCount) == [1, 2])
        #expect(FileWAL.parse(good).allSatisfy { $0.streamId == 4 && $0.epoch == 2 })
        var corrupt = good
        var bad = frame(["d"])
        bad.setInteger(UInt8(0xFF), at: 40)  // a flipped byte in the batch
        corrupt.writeImmutableBuffer(bad)
        corrupt.writeImmutableBuffer(frame(["e"]))
        #expect(FileWAL.parse(corrupt).count == 2, "nothing after a frame whose CRC fails")
        var torn = good
        torn.writeImmutableBuffer(frame(["d"]).getSlice(at: 0, length: 20)!)
        #expect(FileWAL.parse(torn).count == 2)
        // Every byte is under a CRC: the entry header and a batch's first 21 bytes under the
        // frame's, the rest under the batch's own.
        let (one, _) = EngineTests.batch(["value"])
        for at in [12, 12 + 19, 12 + 20, 12 + 20 + 12, 12 + 20 + 20, 12 + 20 + 21, 12 + 20 + one.readableBytes - 1] {
            var flipped = frame(["value"])
            flipped.setInteger(flipped.getInteger(at: at, as: UInt8.self)! ^ 0x10, at: at)
            var segment = good
            segment.writeImmutableBuffer(flipped)
            segment.writeImmutableBuffer(frame(["e"]))
            #expect(FileWAL.parse(segment).count == 2, "byte \(at) of the frame flipped")
        }
    }

    /// Segments written before the frame CRC left the records to the batches' own CRCs: one
    /// CRC over the whole payload, magic "TWAL". A broker restarted on a newer build still
    /// replays them.
    @Test func framesOfTheEarlierFormatAreStillRead() throws {
        let (b, h) = EngineTests.batch(["old", "frame"])
        var payload = ByteBuffer()
        payload.writeInteger(Int64(7))
        payload.writeInteger(Int64(3))
        payload.writeInteger(UInt32(b.readableBytes))
        payload.writeImmutableBuffer(b)
        var old = ByteBuffer()
        old.writeInteger(UInt32(0x5457_414C))
        old.writeInteger(UInt32(payload.readableBytes))
        old.writeInteger(CRC32C.checksum(payload))
        old.writeImmutableBuffer(payload)
        old.writeRepeatingByte(0, count: 4096 - old.readableBytes)
        old.writeImmutableBuffer(FileWAL.frame([ObjectFormat.Batch(streamId: 7, epoch: 3, header: h, bytes: b)]))
        let parsed = FileWAL.parse(old)
        #expect(parsed.count == 2 && parsed.allSatisfy { $0.streamId == 7 && $0.epoch == 3 && $0.bytes == b })
        var corrupt = old
        corrupt.setInteger(UInt8(0xFF), at: 12 + 20 + 70)
        #expect(FileWAL.parse(corrupt).isEmpty, "its CRC still checked")
    }
}
