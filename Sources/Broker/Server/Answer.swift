import NIOCore
import Synchronization

/// A response frame to come, handed to its callbacks on the thread that completes it: the
/// WAL thread for a produce acked on fsync, the task of a request whose work is async. The
/// connection's writer is the last callback and moves the frame to the event loop, so an
/// answer needs no Swift concurrency thread to reach the socket.
public final class Answer: Sendable {
    private struct State {
        var bytes: ResponseFrame?
        // The first callback inline and the task by itself: an answer costs few allocations.
        var first: (@Sendable (ResponseFrame) -> Void)?
        var more: [@Sendable (ResponseFrame) -> Void] = []
        var task: Task<Void, Never>?
    }

    private let state = Mutex(State())
    /// Whether the work behind the answer may still read the request's bytes. When not (a
    /// produce: its batches are copied into the engine before it is answered), the server
    /// reuses the request's frame for the next one at once, not only after the answer.
    public let readsRequest: Bool

    /// An answer that `succeed` completes.
    public init(readsRequest: Bool = true) {
        self.readsRequest = readsRequest
    }

    /// An answer complete already.
    public static func ready(_ bytes: ByteBuffer) -> Answer {
        let a = Answer()
        a.succeed(bytes)
        return a
    }

    /// An answer computed by `work` in a task of its own; cancelling the answer cancels the
    /// task, whose work then ends early with an answer of its own.
    public static func task(_ work: @escaping @Sendable () async -> ByteBuffer) -> Answer {
        frameTask { .whole(await work()) }
    }

    /// An answer computed by `work` in a task of its own, as a frame of parts maybe.
    public static func frameTask(_ work: @escaping @Sendable () async -> ResponseFrame) -> Answer {
        let a = Answer()
        let t = Task { a.succeed(await work()) }
        a.state.withLock { s in if s.bytes == nil { s.task = t } }
        return a
    }

    /// Completes the answer and runs its callbacks in the order they were added; later calls
    /// are ignored.
    public func succeed(_ bytes: ByteBuffer) {
        succeed(.whole(bytes))
    }

    public func succeed(_ bytes: ResponseFrame) {
        let callbacks: (first: (@Sendable (ResponseFrame) -> Void)?, more: [@Sendable (ResponseFrame) -> Void])? = state.withLock { s in
            guard s.bytes == nil else { return nil }
            s.bytes = bytes
            s.task = nil
            defer {
                s.first = nil
                s.more = []
            }
            return (s.first, s.more)
        }
        guard let callbacks else { return }
        callbacks.first?(bytes)
        for f in callbacks.more { f(bytes) }
    }

    /// Calls `f` with the frame once it is there (at once if it is).
    public func whenReady(_ f: @escaping @Sendable (ResponseFrame) -> Void) {
        let ready: ResponseFrame? = state.withLock { s in
            if s.bytes == nil {
                if s.first == nil { s.first = f } else { s.more.append(f) }
            }
            return s.bytes
        }
        if let ready { f(ready) }
    }

    /// Stops the work behind an answer nobody will read (its connection closed).
    public func cancel() {
        state.withLock { s in
            defer { s.task = nil }
            return s.task
        }?.cancel()
    }

    /// Waits for the frame, as it goes to the socket (benchmarks).
    public var frame: ResponseFrame {
        get async {
            await withCheckedContinuation { c in whenReady { c.resume(returning: $0) } }
        }
    }

    /// Waits for the frame, in one buffer (tests, benchmarks and the fuzzer; the server uses
    /// `whenReady`).
    public var value: ByteBuffer {
        get async {
            await frame.joined
        }
    }
}

/// A response frame as it goes to the socket: one buffer, or parts written in order (a Fetch
/// response's record sets as the slices the caches hold, between the bytes encoded around
/// them: `RecordsSplice`).
public enum ResponseFrame: Sendable {
    case whole(ByteBuffer)
    case parts([ByteBuffer])

    public var readableBytes: Int {
        switch self {
        case .whole(let b): b.readableBytes
        case .parts(let parts): parts.reduce(0) { $0 + $1.readableBytes }
        }
    }

    /// The frame in one buffer (a copy, when in parts).
    public var joined: ByteBuffer {
        switch self {
        case .whole(let b): return b
        case .parts(let parts):
            var out = ByteBufferAllocator().buffer(capacity: readableBytes)
            for p in parts { out.writeImmutableBuffer(p) }
            return out
        }
    }
}
