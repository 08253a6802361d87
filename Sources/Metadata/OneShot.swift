import NIOConcurrencyHelpers
import NIOCore

/// A value set once, by whichever of several events comes first (an upload's completion or a
/// timeout, say), and awaited by one task or handed to one callback; the value may arrive
/// before either waits.
public final class OneShot<Value: Sendable>: Sendable {
    private enum Phase {
        case idle
        case waiting(CheckedContinuation<Value, Never>)
        case callback(@Sendable (Value) -> Void)
        case done(Value)
    }

    private let phase = NIOLockedValueBox(Phase.idle)

    public init() {}

    /// Sets the value; later calls are ignored.
    public func resume(_ value: Value) {
        let waiter: Phase? = phase.withLockedValue { p in
            switch p {
            case .idle:
                p = .done(value)
                return nil
            case .waiting, .callback:
                let w = p
                p = .done(value)
                return w
            case .done:
                return nil
            }
        }
        switch waiter {
        case .waiting(let c): c.resume(returning: value)
        case .callback(let f): f(value)
        default: break
        }
    }

    /// Calls `f` with the value, on the thread that sets it (at once if it is set already).
    /// Instead of `wait()`: a second waiter of either kind is a programming error.
    public func whenDone(_ f: @escaping @Sendable (Value) -> Void) {
        let ready: Value? = phase.withLockedValue { p in
            switch p {
            case .done(let v): return v
            case .idle:
                p = .callback(f)
                return nil
            case .waiting, .callback:
                preconditionFailure("OneShot awaited twice")
            }
        }
        if let ready { f(ready) }
    }

    /// Waits for the value (once: a second waiter is a programming error).
    public func wait() async -> Value {
        await withCheckedContinuation { c in
            let ready: Value? = phase.withLockedValue { p in
                switch p {
                case .done(let v): return v
                case .idle:
                    p = .waiting(c)
                    return nil
                case .waiting, .callback:
                    preconditionFailure("OneShot awaited twice")
                }
            }
            if let ready { c.resume(returning: ready) }
        }
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
