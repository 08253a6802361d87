import NIOCore
import ObjectStore
import Testing

/// The fault-injecting decorator's faults, deterministic ones exactly, on an in-memory store.
@Suite struct FaultInjectionTests {
    typealias Store = FaultInjectingObjectStore<InMemoryObjectStore>

    @Test func theNthRequestFailsOnceWithoutReachingTheStore() async throws {
        let base = InMemoryObjectStore()
        let store = Store(base: base, faults: try Store.parseFaults(["object.store.fault.put.fail.nth": "2"]))
        try await store.put("a", ByteBuffer(string: "1"), ifNoneMatch: true)
        await #expect(throws: ObjectStoreError.self) { try await store.put("b", ByteBuffer(string: "2"), ifNoneMatch: true) }
        #expect(try await base.head("b") == nil, "the failed request never reached the store")
        try await store.put("b", ByteBuffer(string: "2"), ifNoneMatch: true)  // once only
        #expect(try await base.head("b")?.size == 1)
    }

    @Test func aLostAnswerLeavesTheObjectWritten() async throws {
        let base = InMemoryObjectStore()
        let store = Store(base: base, faults: try Store.parseFaults(["object.store.fault.put.lost.nth": "1"]))
        do {
            try await store.put("wal/1", ByteBuffer(string: "abc"), ifNoneMatch: true)
            Issue.record("the lost answer must look like a failure")
        } catch let e as ObjectStoreError {
            #expect(e.code == .unavailable)
        }
        #expect(try await base.head("wal/1")?.size == 3, "the store did the write")
        // What the engine's retry then meets: the key taken, by its own bytes.
        await #expect(throws: ObjectStoreError.self) { try await store.put("wal/1", ByteBuffer(string: "abc"), ifNoneMatch: true) }
    }

    @Test func aTimeoutHangsThenFails() async throws {
        let store = Store(base: InMemoryObjectStore(),
                          faults: try Store.parseFaults(["object.store.fault.get.timeout.rate": "1", "object.store.fault.get.timeout.ms": "200"]))
        let start = ContinuousClock.now
        await #expect(throws: ObjectStoreError.self) { _ = try await store.get("x", range: nil) }
        #expect(ContinuousClock.now - start >= .milliseconds(200))
    }

    @Test func badSettingsAreNamed() {
        for (key, value) in [("object.store.fault.put.fail.nth", "0"), ("object.store.fault.put.lost.rate", "1.5"),
                             ("object.store.fault.put.timeout.ms", "-1"), ("object.store.fault.put.sometimes.rate", "0.1")] {
            #expect(throws: ObjectStoreError.self, "\(key)=\(value)") { _ = try Store.parseFaults([key: value]) }
        }
    }
}

extension FaultInjectionTests {
    @Test func lostNthCountsOnlyRequestsThatReachedTheStore() async throws {
        let base = InMemoryObjectStore()
        let store = Store(base: base, faults: try Store.parseFaults(["object.store.fault.put.fail.nth": "1",
                                                                     "object.store.fault.put.lost.nth": "1"]))
        await #expect(throws: ObjectStoreError.self) { try await store.put("k", ByteBuffer(string: "x"), ifNoneMatch: true) }
        #expect(try await base.head("k") == nil, "request 1 failed before the store")
        await #expect(throws: ObjectStoreError.self) { try await store.put("k", ByteBuffer(string: "x"), ifNoneMatch: false) }
        #expect(try await base.head("k")?.size == 1, "request 2 was the first to reach the store: written, answer lost")
        try await store.put("k", ByteBuffer(string: "y"), ifNoneMatch: false)
    }
}
