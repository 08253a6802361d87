import Foundation
import Metadata
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// `valueUnlessCancelled`: what lets a PostgreSQL call's deadline end a query whose answer
/// never comes (PostgresNIO drops a query written to a closed channel without completing it).
@Suite struct FutureCancellationTests {
    @Test func aCancelledWaitReturnsAlthoughTheFutureNeverCompletes() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let forgotten = loop.makePromise(of: Int.self)
        let cancelHandlerRan = NIOLockedValueBox(0)
        let outcome = NIOLockedValueBox<Result<Int, any Error>?>(nil)
        let waiter = Task {
            let r = await Result { try await forgotten.futureResult.valueUnlessCancelled { cancelHandlerRan.withLockedValue { $0 += 1 } } }
            outcome.withLockedValue { $0 = r }
        }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        // Polled rather than awaited: with `get()` the waiter would never finish, and the test
        // must fail then, not hang.
        let deadline = ContinuousClock.now + .seconds(5)
        while outcome.withLockedValue({ $0 }) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let r = outcome.withLockedValue { $0 }
        #expect(r != nil, "the cancelled wait returned")
        if case .failure(let e)? = r { #expect(e is CancellationError) } else { Issue.record("expected CancellationError, got \(String(describing: r))") }
        #expect(cancelHandlerRan.withLockedValue { $0 } == 1)
        forgotten.fail(CancellationError())  // a promise must not be dropped uncompleted
    }

    @Test func aCompletedFutureGivesItsValueOrError() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        #expect(try await loop.makeSucceededFuture(7).valueUnlessCancelled() == 7)
        let late = loop.makePromise(of: Int.self)
        loop.scheduleTask(in: .milliseconds(20)) { late.succeed(8) }
        #expect(try await late.futureResult.valueUnlessCancelled() == 8)
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await loop.makeFailedFuture(Boom()).valueUnlessCancelled() as Int }
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
