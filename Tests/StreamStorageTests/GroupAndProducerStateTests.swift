import Foundation
import KafkaProtocol
import Metadata
import StreamStorage
import Testing

/// The store methods behind ListGroups/DeleteGroups/OffsetDelete, and the engine state behind
/// DescribeProducers and DescribeLogDirs (on SQLite, and on PostgreSQL when TERN_TEST_POSTGRES_URL is set).
@Suite struct GroupAndProducerStateTests {
    static func offset(_ topic: String, _ partition: Int32, _ offset: Int64) -> CommittedOffset {
        CommittedOffset(topic: topic, partition: partition, offset: offset, leaderEpoch: -1, metadata: nil)
    }

    @Test(arguments: StoreKind.testable) func groupsAreThoseWithCommittedOffsets(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        let m = f.metadata
        #expect(try await m.groupsWithOffsets() == [])
        try await m.commitOffsets(group: "g2", [Self.offset("t", 0, 1), Self.offset("t", 1, 2)])
        try await m.commitOffsets(group: "g1", [Self.offset("t", 0, 5)])
        #expect(try await m.groupsWithOffsets() == ["g1", "g2"])

        #expect(try await m.deleteGroupOffsets(group: "g2"))
        #expect(try await m.fetchOffsets(group: "g2") == [])
        #expect(try await m.groupsWithOffsets() == ["g1"])
        #expect(try await !m.deleteGroupOffsets(group: "g2"), "a group without offsets does not exist")
        #expect(try await m.fetchOffsets(group: "g1") == [Self.offset("t", 0, 5)])
    }

    @Test(arguments: StoreKind.testable) func deleteOffsetsDeletesOnlyTheNamedPartitionsOfAKnownGroup(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        let m = f.metadata
        try await m.commitOffsets(group: "g", [Self.offset("t", 0, 1), Self.offset("t", 1, 2), Self.offset("u", 0, 3)])
        #expect(try await !m.deleteOffsets(group: "nobody", [("t", 0)]))
        #expect(try await m.deleteOffsets(group: "g", [("t", 0), ("t", 7)]), "a partition without an offset is no error")
        #expect(Set(try await m.fetchOffsets(group: "g").map { "\($0.topic)-\($0.partition)" }) == ["t-1", "u-0"])
        #expect(try await m.deleteOffsets(group: "g", [("t", 1), ("u", 0)]))
        #expect(try await m.groupsWithOffsets() == [])
    }

    /// Offset expiration's two store calls: a touch moves a commit time forward only, and an
    /// expiry deletes only offsets committed before its cutoff (one committed since stays).
    @Test(arguments: StoreKind.testable) func offsetCommitTimesMoveForwardAndExpireByCutoff(kind: StoreKind) async throws {
        let m = try await EngineTests.fixture(kind).metadata
        func at(_ p: Int32, _ t: Int64) -> CommittedOffset {
            CommittedOffset(topic: "t", partition: p, offset: 9, leaderEpoch: -1, metadata: nil, commitTimestampMs: t)
        }
        try await m.commitOffsets(group: "g", [at(0, 1000), at(1, 5000)])
        try await m.touchOffsets(group: "g", [("t", 0)], at: 500)
        #expect(try await m.fetchOffsets(group: "g").first { $0.partition == 0 }?.commitTimestampMs == 1000, "a touch never moves back")
        try await m.touchOffsets(group: "g", [("t", 0)], at: 3000)
        #expect(try await m.fetchOffsets(group: "g").first { $0.partition == 0 }?.commitTimestampMs == 3000)
        #expect(try await m.expireOffsets(group: "g", [("t", 0), ("t", 1)], committedBefore: 4000) == 1)
        #expect(try await m.fetchOffsets(group: "g") == [at(1, 5000)])
    }

    @Test(arguments: StoreKind.testable) func producerStateKeepsTheLastTimestampAcrossARestart(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        let e = try await EngineTests.engine(f)
        let committer = Task { await e.runCommitter() }
        try await e.open(streamId: f.streamId)
        #expect(e.storedBytes(streamId: f.streamId) == 0)
        #expect(e.producerStates(streamId: f.streamId) == [])
        let (b1, h1) = EngineTests.batch(["a", "b"], producerId: 9, epoch: 0, sequence: 0, ts: 5000)
        let (b2, h2) = EngineTests.batch(["c"], producerId: 9, epoch: 0, sequence: 2, ts: 7000)
        _ = try await e.append(streamId: f.streamId, batch: b1, header: h1, timeout: .seconds(10)).result().get()
        _ = try await e.append(streamId: f.streamId, batch: b2, header: h2, timeout: .seconds(10)).result().get()
        #expect(e.storedBytes(streamId: f.streamId) == Int64(b1.readableBytes + b2.readableBytes))
        let states = try #require(e.producerStates(streamId: f.streamId))
        #expect(states.map(\.producerId) == [9])
        #expect(states[0].batches.last?.lastSequence == 2)
        #expect(states[0].batches.last?.maxTimestamp == h2.maxTimestamp)
        #expect(h2.maxTimestamp == 7000)
        #expect(e.producerStates(streamId: 12345) == nil)
        await e.shutdown()
        await committer.value

        // Reopened from the metadata store: the same state, timestamps included.
        let e2 = try await EngineTests.engine(f)
        try await e2.open(streamId: f.streamId)
        #expect(e2.producerStates(streamId: f.streamId) == states)
        #expect(e2.storedBytes(streamId: f.streamId) == Int64(b1.readableBytes + b2.readableBytes))
    }
}
