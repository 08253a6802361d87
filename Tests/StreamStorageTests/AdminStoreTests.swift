import Foundation
import KafkaProtocol
import Metadata
import StreamStorage
import Testing

/// The metadata-store and engine operations behind AlterConfigs, CreatePartitions and
/// DeleteRecords, each checked again through a second connection to the same database
/// (what a restarted broker sees), on SQLite and on PostgreSQL.
@Suite struct AdminStoreTests {
    @Test(arguments: StoreKind.testable) func topicConfigsAreReplacedAsAWholeAndPersist(kind: StoreKind) async throws {
        let db = try await TestDatabase.fresh(kind)
        let store = try await db.open()
        _ = try await store.bootstrap(nodeId: 1)
        _ = try await store.createTopic(name: "t", topicId: KafkaUUID.random().hex, partitions: 1,
                                        configs: ["retention.ms": "1000", "cleanup.policy": "compact"])
        _ = try await store.createTopic(name: "other", topicId: KafkaUUID.random().hex, partitions: 1, configs: ["retention.ms": "5"])
        try await store.setTopicConfigs(name: "t", configs: ["max.message.bytes": "2048", "retention.ms": "7"])

        let reopened = try await db.open()
        let topics = try await reopened.topics()
        #expect(topics.first { $0.name == "t" }?.configs == ["max.message.bytes": "2048", "retention.ms": "7"],
                "keys left out are deleted, the others replaced")
        #expect(topics.first { $0.name == "other" }?.configs == ["retention.ms": "5"], "other topics untouched")

        try await reopened.setTopicConfigs(name: "t", configs: [:])
        #expect(try await store.topics().first { $0.name == "t" }?.configs == [:])

        await #expect(throws: MetadataError.self) { try await store.setTopicConfigs(name: "missing", configs: ["retention.ms": "1"]) }
    }

    @Test(arguments: StoreKind.testable) func addPartitionsCreatesNewStreamsAfterTheExistingOnes(kind: StoreKind) async throws {
        let db = try await TestDatabase.fresh(kind)
        let store = try await db.open()
        _ = try await store.bootstrap(nodeId: 1)
        let t = try await store.createTopic(name: "t", topicId: KafkaUUID.random().hex, partitions: 2, configs: [:])
        let u = try await store.createTopic(name: "u", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:])

        let grown = try await store.addPartitions(name: "t", count: 5)
        #expect(grown.streamIds.count == 5)
        #expect(Array(grown.streamIds.prefix(2)) == t.streamIds, "existing partitions keep their streams")
        let all = grown.streamIds + u.streamIds
        #expect(Set(all).count == all.count, "new stream ids are fresh")
        #expect(grown.topicId == t.topicId)

        // Not larger: nothing changes.
        #expect(try await store.addPartitions(name: "t", count: 3) == grown)
        #expect(try await store.addPartitions(name: "t", count: 5) == grown)
        await #expect(throws: MetadataError.self) { _ = try await store.addPartitions(name: "missing", count: 3) }

        let reopened = try await db.open()
        #expect(try await reopened.topics().first { $0.name == "t" } == grown)
        // The new streams are real: they open like any other, empty.
        let opened = try await reopened.openStream(streamId: grown.streamIds[4], owner: 1)
        #expect(opened.startOffset == 0 && opened.endOffset == 0 && opened.epoch == 1)
        // And a later topic does not reuse their ids.
        let v = try await reopened.createTopic(name: "v", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:])
        #expect(!all.contains(v.streamIds[0]))
    }

    @Test(arguments: StoreKind.testable) func startOffsetOnlyRisesAndIsFencedByEpoch(kind: StoreKind) async throws {
        let db = try await TestDatabase.fresh(kind)
        let store = try await db.open()
        _ = try await store.bootstrap(nodeId: 1)
        let sid = try await store.createTopic(name: "t", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]
        let epoch = try await store.openStream(streamId: sid, owner: 1).epoch

        #expect(try await store.advanceStartOffset(streamId: sid, epoch: epoch, to: 4) == 4)
        #expect(try await store.advanceStartOffset(streamId: sid, epoch: epoch, to: 2) == 4, "never lowered")
        await #expect(throws: MetadataError.self) { _ = try await store.advanceStartOffset(streamId: sid, epoch: epoch - 1, to: 9) }
        await #expect(throws: MetadataError.self) { _ = try await store.advanceStartOffset(streamId: 9999, epoch: 1, to: 9) }

        let reopened = try await db.open()
        let record = try await reopened.openStream(streamId: sid, owner: 1)
        #expect(record.startOffset == 4)
    }

    @Test(arguments: StoreKind.testable) func engineTrimMovesTheLogStartOffsetDurably(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        let e = try await EngineTests.engine(f)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        for (i, ts) in [Int64(1000), 2000, 3000].enumerated() {
            let (b, h) = EngineTests.batch(["r\(i)a", "r\(i)b"], ts: ts)  // offsets 2i, 2i+1 at ts, ts+1
            _ = try await e.append(streamId: f.streamId, batch: b, header: h, timeout: .seconds(10)).result().get()
        }
        #expect(try await e.advanceLogStart(streamId: f.streamId, to: 3) == 3)
        #expect(try await e.advanceLogStart(streamId: f.streamId, to: 1) == 3, "a lower offset changes nothing")
        await #expect(throws: TrimError.offsetOutOfRange) { _ = try await e.advanceLogStart(streamId: f.streamId, to: 7) }
        await #expect(throws: TrimError.offsetOutOfRange) { _ = try await e.advanceLogStart(streamId: f.streamId, to: -2) }
        await #expect(throws: TrimError.unknownStream) { _ = try await e.advanceLogStart(streamId: 9999, to: 0) }
        #expect(e.offsets(streamId: f.streamId)?.logStartOffset == 3)

        await #expect(throws: ReadError.offsetOutOfRange) { _ = try await e.read(streamId: f.streamId, offset: 2, maxBytes: 1 << 20) }
        #expect(try await e.read(streamId: f.streamId, offset: 3, maxBytes: 1 << 20).logStartOffset == 3)
        // A timestamp lookup does not answer with a deleted record.
        #expect(try await e.offset(forTimestamp: 0, streamId: f.streamId)! == (3, 2001))
        // Produce answers carry the new start.
        #expect(try await EngineTests.append(e, f.streamId, ["later"]).get().logStartOffset == 3)

        // -1 is the high watermark.
        #expect(try await e.advanceLogStart(streamId: f.streamId, to: -1) == 7)
        await e.shutdown()
        await committer.value

        let e2 = try await EngineTests.engine(f)
        let opened = try await e2.open(streamId: f.streamId)
        #expect(opened.logStartOffset == 7 && opened.highWatermark == 7)
        await #expect(throws: ReadError.offsetOutOfRange) { _ = try await e2.read(streamId: f.streamId, offset: 6, maxBytes: 1 << 20) }
    }
}
