import NIOConcurrencyHelpers
import NIOCore

/// Wakes long-polling fetches when data becomes readable: no sleeping, no polling.
///
/// A waiter registers before it re-checks, so an append between its check and its wait is
/// never missed (the generation number tells).
public final class AppendNotifier: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextId: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public var generation: UInt64 { state.withLockedValue { $0.generation } }

    /// Resumes every waiter.
    public func notifyAll() {
        let waiters = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            s.generation &+= 1
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    /// Returns when the generation moves past `seen`, or at the deadline, or on cancellation.
    public func wait(after seen: UInt64, until deadline: NIODeadline, on loop: any EventLoop) async {
        let id = state.withLockedValue { s -> UInt64 in
            s.nextId &+= 1
            return s.nextId
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLockedValue { s -> Bool in
                    if s.generation != seen || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if resumeNow {
                    c.resume()
                    return
                }
                loop.scheduleTask(deadline: deadline) { self.cancel(id) }
            }
        } onCancel: {
            self.cancel(id)
        }
    }

    private func cancel(_ id: UInt64) {
        let c = state.withLockedValue { $0.waiters.removeValue(forKey: id) }
        c?.resume()
    }
}
