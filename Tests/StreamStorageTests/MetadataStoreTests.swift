import Foundation
import KafkaProtocol
import Metadata
import Testing

/// What a cluster needs of the shared metadata store: several connections (brokers) writing
/// at once get the answers one writer at a time would give. Epoch fencing is a compare-and-set,
/// ids are never handed out twice, a name is created once. On SQLite (two connections to one
/// file) and on PostgreSQL when TERN_TEST_POSTGRES_URL is set.
@Suite struct MetadataStoreTests {
    @Test(arguments: StoreKind.testable) func bootstrapIsRepeatableAndRaisesTheBrokerEpoch(kind: StoreKind) async throws {
        let db = try await TestDatabase.fresh(kind)
        let a = try await db.open()
        let (cluster, e1) = try await a.bootstrap(nodeId: 1)
        #expect(e1 == 1)
        let b = try await db.open()
        let (again, e2) = try await b.bootstrap(nodeId: 1)
        #expect(again == cluster, "one cluster id per database")
        #expect(e2 == 2, "every start of a broker gets a new broker epoch")
        #expect(try await b.bootstrap(nodeId: 2).brokerEpoch == 1, "epochs are per node")
        #expect(try await a.topics() == [])
    }

    @Test(arguments: StoreKind.testable) func concurrentOpensAreFencedByEpoch(kind: StoreKind) async throws {
        let db = try await TestDatabase.fresh(kind)
        let a = try await db.open()
        _ = try await a.bootstrap(nodeId: 1)
        let b = try await db.open()
        let sid = try await a.createTopic(name: "t", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]).streamIds[0]

        // Two brokers take the stream over and over at the same time.
        let epochs = try await withThrowingTaskGroup(of: Int64?.self) { group in
            for i in 0..<16 {
                let store = i % 2 == 0 ? a : b
                group.addTask {
                    do { return try await store.openStream(streamId: sid, owner: Int32(1 + i % 2)).epoch }
                    catch let e as MetadataError where e.code == .fenced { return nil }
                }
            }
            return try await group.reduce(into: [Int64]()) { if let e = $1 { $0.append(e) } }
        }
        #expect(Set(epochs).count == epochs.count, "no epoch is handed out twice")
        let record = try await b.openStream(streamId: sid, owner: 2)
        #expect(record.epoch == Int64(epochs.count) + 1)
        #expect(record.epochHistory.map(\.epoch) == Array(1...record.epoch), "one history entry per successful open")

        // A commit from an older owner is fenced; the owner's commit lands.
        func range(_ epoch: Int64, _ start: Int64, _ end: Int64) -> StreamRange {
            StreamRange(streamId: sid, epoch: epoch, startOffset: start, endOffset: end, objectKey: "o-\(epoch)-\(start)",
                        position: 0, size: 10, minTimestamp: 1, maxTimestamp: 2)
        }
        let stale = ObjectCommit(key: "stale", size: 10, ranges: [range(record.epoch - 1, 0, 5)], producerStates: [])
        let fenced = await #expect(throws: MetadataError.self) { try await a.commit(stale) }
        #expect(fenced?.code == .fenced)
        let gap = ObjectCommit(key: "gap", size: 10, ranges: [range(record.epoch, 3, 5)], producerStates: [])
        let mismatch = await #expect(throws: MetadataError.self) { try await b.commit(gap) }
        #expect(mismatch?.code == .offsetMismatch)
        let good = ObjectCommit(key: "good", size: 10, ranges: [range(record.epoch, 0, 5)],
                                producerStates: [ProducerStateRecord(streamId: sid, producerId: 4, producerEpoch: 1,
                                                                     batches: [.init(firstSequence: 0, lastSequence: 4, baseOffset: 0, lastOffset: 4, maxTimestamp: 2)])])
        try await b.commit(good)
        #expect(try await a.ranges(streamId: sid).map(\.endOffset) == [5], "seen through the other connection")
        #expect(try await a.producerStates(streamId: sid) == good.producerStates)
        #expect(try await a.committedObjectKeys(prefix: "go") == ["good"])
        #expect(try await a.committedObjectKeys(prefix: "") == ["good"], "failed commits leave no object behind")
    }

    @Test(arguments: StoreKind.testable) func concurrentCreatesHandOutDistinctStreamsAndNamesOnce(kind: StoreKind) async throws {
        let db = try await TestDatabase.fresh(kind)
        let a = try await db.open()
        _ = try await a.bootstrap(nodeId: 1)
        let b = try await db.open()
        let topics = try await withThrowingTaskGroup(of: TopicRecord.self) { group in
            for i in 0..<8 {
                let store = i % 2 == 0 ? a : b
                group.addTask { try await store.createTopic(name: "t\(i)", topicId: KafkaUUID.random().hex, partitions: 3, configs: ["k": "\(i)"]) }
            }
            return try await group.reduce(into: [TopicRecord]()) { $0.append($1) }
        }
        let streams = topics.flatMap(\.streamIds)
        #expect(streams.count == 24 && Set(streams).count == 24, "stream ids are never handed out twice")
        #expect(try await b.topics().map(\.name) == (0..<8).map { "t\($0)" })

        // The same name from both at once: exactly one wins.
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for store in [a, b, a, b] {
                group.addTask {
                    do { _ = try await store.createTopic(name: "same", topicId: KafkaUUID.random().hex, partitions: 1, configs: [:]); return true }
                    catch let e as MetadataError where e.code == .topicExists { return false }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)

        let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<20 { group.addTask { try await (i % 2 == 0 ? a : b).allocateProducerId() } }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(ids) == Set(0..<20), "producer ids are unique and dense")
    }
}

/// `--metadata postgres://…` as the broker reads it.
@Suite struct PostgresURLTests {
    @Test func partsArePercentDecodedOnce() throws {
        let u = try PostgresURL(parsing: "postgres://us%40er:p%25a%3As%2Fs@db.example:6543/my%20db")
        #expect(u == PostgresURL(host: "db.example", port: 6543, user: "us@er", password: "p%a:s/s", database: "my db"))
        #expect(u.description == "postgres://us@er:***@db.example:6543/my db", "the password is never shown")
        #expect(try PostgresURL(parsing: "postgresql://u@h/d") == PostgresURL(host: "h", port: 5432, user: "u", password: nil, database: "d"))
    }

    @Test(arguments: ["postgres://h:5432/db", "postgres://u:p@h:5432/", "postgres://u:p@:5432/db", "postgres://u:p@h/db?sslmode=require",
                      "mysql://u:p@h/db", "postgres://u:p@h:0/db"])
    func malformedURLsAreRefusedWithoutThePassword(url: String) {
        #expect(throws: MetadataError.self) { try PostgresURL(parsing: url) }
        do { _ = try PostgresURL(parsing: url) } catch { #expect(!"\(error)".contains(":p@"), "\(error)") }
    }
}
