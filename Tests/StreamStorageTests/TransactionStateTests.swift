import KafkaProtocol
import Metadata
import NIOCore
import StreamStorage
import Testing

/// Per-partition transaction state in the engine: the last stable offset, control markers,
/// the aborted-transaction index, and both surviving a restart (real SQLite file).
@Suite struct TransactionStateTests {
    static func txnBatch(_ values: [String], producerId: Int64 = 5, epoch: Int16 = 0, sequence: Int32) -> (ByteBuffer, RecordBatchHeader) {
        var b = RecordBatchBuilder(baseTimestamp: 1000)
        b.producerId = producerId
        b.producerEpoch = epoch
        b.baseSequence = sequence
        b.attributes = 0x10  // transactional
        for v in values { b.append(key: nil, value: ByteBuffer(string: v)) }
        let bytes = b.build()
        return (bytes, try! RecordBatch.validateSingle(bytes))
    }

    static func marker(commit: Bool, producerId: Int64 = 5, epoch: Int16 = 0) -> (ByteBuffer, RecordBatchHeader) {
        let bytes = ControlMarker(isCommit: commit, coordinatorEpoch: 3).batch(producerId: producerId, producerEpoch: epoch, timestamp: 1000)
        return (bytes, RecordBatchHeader(peeking: bytes)!)
    }

    static func put(_ e: StreamEngine, _ s: Int64, _ b: (ByteBuffer, RecordBatchHeader)) async -> Result<AppendResult, AppendError> {
        await e.append(streamId: s, batch: b.0, header: b.1, timeout: .seconds(10)).result()
    }

    @Test func markerRoundTrips() {
        let (b, h) = Self.marker(commit: true)
        #expect(h.isControl && h.isTransactional && h.recordCount == 1)
        #expect(ControlMarker(controlBatch: b) == ControlMarker(isCommit: true, coordinatorEpoch: 3))
        #expect(ControlMarker(controlBatch: Self.marker(commit: false).0)?.isCommit == false)
    }

    @Test(arguments: StoreKind.testable) func abortedTransactionIsIndexedAndSurvivesRestart(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        var e = try await EngineTests.engine(f)
        var committer = Task { [e] in await e.runCommitter() }
        let s = f.streamId
        try await e.open(streamId: s)
        #expect(try await Self.put(e, s, EngineTests.batch(["plain"])).get().baseOffset == 0)
        #expect(try await Self.put(e, s, Self.txnBatch(["a", "b"], sequence: 0)).get().baseOffset == 1)
        var o = try #require(e.offsets(streamId: s))
        #expect((o.highWatermark, o.lastStableOffset) == (3, 1))
        // read_committed stops at the open transaction; read_uncommitted does not.
        #expect(try EngineTests.values(try await e.read(streamId: s, offset: 0, maxBytes: 1 << 20, readCommitted: true)) == ["plain"])
        #expect(try await e.read(streamId: s, offset: 1, maxBytes: 1 << 20, readCommitted: true).batches.isEmpty)
        #expect(try EngineTests.values(try await e.read(streamId: s, offset: 0, maxBytes: 1 << 20)) == ["plain", "a", "b"])
        // A plain batch from a producer with an open transaction is refused (ProducerStateManager).
        let (pb, ph) = EngineTests.batch(["x"], producerId: 5, epoch: 0, sequence: 2)
        #expect(await e.append(streamId: s, batch: pb, header: ph, timeout: .seconds(10)).result() == .failure(.rejected(.invalidTxnState)))
        #expect(e.producerStates(streamId: s)?.first?.txnFirstOffset == 1)

        #expect(try await Self.put(e, s, Self.marker(commit: false)).get().baseOffset == 3)
        o = try #require(e.offsets(streamId: s))
        #expect((o.highWatermark, o.lastStableOffset) == (4, 4))
        let r = try await e.read(streamId: s, offset: 0, maxBytes: 1 << 20, readCommitted: true)
        #expect(r.abortedTxns == [AbortedTxnRecord(streamId: s, producerId: 5, firstOffset: 1, lastOffset: 3)])
        #expect(r.lastStableOffset == 4)
        #expect(e.producerStates(streamId: s)?.first?.coordinatorEpoch == 3)
        // The next transaction stays open across the restart.
        #expect(try await Self.put(e, s, Self.txnBatch(["c"], sequence: 2)).get().baseOffset == 4)
        await e.shutdown()
        await committer.value

        e = try await EngineTests.engine(f)
        committer = Task { [e] in await e.runCommitter() }
        try await e.open(streamId: s)
        o = try #require(e.offsets(streamId: s))
        #expect((o.highWatermark, o.lastStableOffset) == (5, 4))
        let again = try await e.read(streamId: s, offset: 2, maxBytes: 1 << 20, readCommitted: true)
        #expect(again.abortedTxns == [AbortedTxnRecord(streamId: s, producerId: 5, firstOffset: 1, lastOffset: 3)])
        // A read past the aborted transaction does not list it.
        #expect(try await e.read(streamId: s, offset: 4, maxBytes: 1 << 20, readCommitted: true).abortedTxns == [])
        // COMMIT: the LSO reaches the end and nothing new is aborted.
        #expect(try await Self.put(e, s, Self.marker(commit: true)).get().baseOffset == 5)
        o = try #require(e.offsets(streamId: s))
        #expect((o.highWatermark, o.lastStableOffset) == (6, 6))
        #expect(try await e.read(streamId: s, offset: 4, maxBytes: 1 << 20, readCommitted: true).abortedTxns == [])
        #expect(try EngineTests.values(try await e.read(streamId: s, offset: 4, maxBytes: 1 << 20, readCommitted: true)).first == "c")
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func recoveryFromUncommittedWALRebuildsTransactionState(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        let e = try await EngineTests.engine(f)
        // No committer: the objects are acked but never committed, as when a broker dies.
        let s = f.streamId
        try await e.open(streamId: s)
        _ = try await Self.put(e, s, Self.txnBatch(["a", "b"], sequence: 0)).get()  // 0-1
        _ = try await Self.put(e, s, Self.marker(commit: false)).get()  // 2
        _ = try await Self.put(e, s, Self.txnBatch(["c"], producerId: 6, sequence: 0)).get()  // 3, left open

        let e2 = try await EngineTests.engine(f)
        #expect(try await e2.recover() == 3)
        let o = try await e2.open(streamId: s)
        #expect((o.highWatermark, o.lastStableOffset) == (4, 3))
        let r = try await e2.read(streamId: s, offset: 0, maxBytes: 1 << 20, readCommitted: true)
        #expect(r.abortedTxns == [AbortedTxnRecord(streamId: s, producerId: 5, firstOffset: 0, lastOffset: 2)])
        #expect(r.batches.count == 1)
        // The marker is readable; the open transaction (offset 3) is above the LSO.
        #expect(try await e2.read(streamId: s, offset: 2, maxBytes: 1 << 20, readCommitted: true).batches.count == 1)
        #expect(try await e2.read(streamId: s, offset: 3, maxBytes: 1 << 20, readCommitted: true).batches.isEmpty)
        #expect(try await e2.read(streamId: s, offset: 3, maxBytes: 1 << 20).batches.count == 1)
    }

    /// Raising the log start (DeleteRecords, retention) drops the aborted transactions that
    /// end below it, in the store with the same update (Kafka deletes a segment's
    /// aborted-transaction index with the segment).
    @Test(arguments: StoreKind.testable) func abortedIndexIsTrimmedWithTheLogStart(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        var e = try await EngineTests.engine(f)
        var committer = Task { [e] in await e.runCommitter() }
        let s = f.streamId
        try await e.open(streamId: s)
        _ = try await Self.put(e, s, Self.txnBatch(["a", "b"], sequence: 0)).get()  // 0-1
        _ = try await Self.put(e, s, Self.marker(commit: false)).get()  // 2
        _ = try await Self.put(e, s, Self.txnBatch(["c"], producerId: 6, sequence: 0)).get()  // 3
        _ = try await Self.put(e, s, Self.marker(commit: false, producerId: 6)).get()  // 4
        _ = try await Self.put(e, s, EngineTests.batch(["d"])).get()  // 5
        await e.shutdown()
        await committer.value

        e = try await EngineTests.engine(f)
        committer = Task { [e] in await e.runCommitter() }
        try await e.open(streamId: s)
        #expect(try await f.metadata.abortedTxns(streamId: s).count == 2)
        #expect(try await e.advanceLogStart(streamId: s, to: 3) == 3)
        #expect(try await f.metadata.abortedTxns(streamId: s) == [AbortedTxnRecord(streamId: s, producerId: 6, firstOffset: 3, lastOffset: 4)])
        #expect(try await e.read(streamId: s, offset: 3, maxBytes: 1 << 20, readCommitted: true).abortedTxns
            == [AbortedTxnRecord(streamId: s, producerId: 6, firstOffset: 3, lastOffset: 4)])
        #expect(try await e.advanceLogStart(streamId: s, to: 5) == 5)
        #expect(try await f.metadata.abortedTxns(streamId: s) == [])
        #expect(try await e.read(streamId: s, offset: 5, maxBytes: 1 << 20, readCommitted: true).abortedTxns == [])
        await e.shutdown()
        await committer.value
    }

    @Test(arguments: StoreKind.testable) func markerWithBumpedEpochFencesTheOldEpoch(kind: StoreKind) async throws {
        let f = try await EngineTests.fixture(kind)
        let e = try await EngineTests.engine(f)
        let committer = Task { await e.runCommitter() }
        let s = f.streamId
        try await e.open(streamId: s)
        _ = try await Self.put(e, s, Self.txnBatch(["a"], sequence: 0)).get()
        _ = try await Self.put(e, s, Self.marker(commit: false, epoch: 1)).get()
        #expect(await Self.put(e, s, Self.txnBatch(["late"], sequence: 1)) == .failure(.rejected(.invalidProducerEpoch)))
        #expect(await Self.put(e, s, Self.marker(commit: false, epoch: 0)) == .failure(.rejected(.invalidProducerEpoch)))
        await e.shutdown()
        await committer.value
    }
}
