import NIOConcurrencyHelpers
import NIOCore

/// A value set once, by whichever of several events comes first (an upload's completion or a
/// timeout, say), and awaited by one task or handed to one callback; the value may arrive
/// before either waits.
public final class OneShot<Value: Sendable>: Sendable {
    private enum Phase {
        case idle
        case waiting(@Sendable (Value) -> Void)
        case done(Value)
    }

    private let phase = NIOLockedValueBox(Phase.idle)

    public init() {}

    /// Sets the value; later calls are ignored.
    public func resume(_ value: Value) {
        let waiter: (@Sendable (Value) -> Void)? = phase.withLockedValue { p in
            switch p {
            case .idle:
                p = .done(value)
                return nil
            case .waiting(let f):
                p = .done(value)
                return f
            case .done:
                return nil
            }
        }
        waiter?(value)
    }

    /// Calls `f` with the value, on the thread that sets it (at once if it is set already).
    /// Once: a second waiter, this way or through `wait()`, is a programming error.
    public func whenDone(_ f: @escaping @Sendable (Value) -> Void) {
        let ready: Value? = phase.withLockedValue { p in
            switch p {
            case .done(let v): return v
            case .idle:
                p = .waiting(f)
                return nil
            case .waiting:
                preconditionFailure("OneShot awaited twice")
            }
        }
        if let ready { f(ready) }
    }

    /// Waits for the value (once, as `whenDone`).
    public func wait() async -> Value {
        await withCheckedContinuation { c in whenDone { c.resume(returning: $0) } }
    }
}

extension EventLoopFuture where Value: Sendable {
    /// The future's value, or `CancellationError` as soon as the waiting task is cancelled,
    /// whether or not the future ever completes. (`get()` waits for the future however long:
    /// a future its producer forgot, such as a query written to a channel already closed,
    /// would hold the task for ever.) `onCancel` runs once, on cancellation.
    public func valueUnlessCancelled(onCancel: @Sendable () -> Void = {}) async throws -> Value {
        let answer = OneShot<Result<Value, any Error>>()
        whenComplete { answer.resume($0) }
        return try await withTaskCancellationHandler {
            try await answer.wait().get()
        } onCancel: {
            answer.resume(.failure(CancellationError()))
            onCancel()
        }
    }
}
