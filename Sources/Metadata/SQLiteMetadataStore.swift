import Logging
import NIOPosix
import Synchronization

/// The embedded metadata store: one SQLite file, one writer connection run on a thread of
/// its own (never an event loop, never Swift's cooperative pool: SQLite blocks).
public final class SQLiteMetadataStore: SQLMetadataStore, @unchecked Sendable {
    public init(path: String) throws {
        let engine = try SQLiteEngine(path: path)
        super.init(engine: engine, logger: Logger(label: "tern.metadata"))
    }
}

/// SQLite's side of `SQLMetadataStore`: one transaction at a time (`BEGIN IMMEDIATE`), each
/// run whole on the connection's thread. The thread is the body's task executor, so the
/// statements of a transaction run one after another on it without a hop between them.
struct SQLiteEngine: SQLEngine {
    private let connection: SQLiteConnection
    private let thread = SQLiteThread()
    private let gate = SQLiteGate()

    init(path: String) throws {
        connection = try SQLiteConnection(path: path)
    }

    var dialect: SQLDialect { .sqlite }

    /// `BEGIN IMMEDIATE`: a deferred transaction that upgrades to a writer can fail with
    /// SQLITE_BUSY_SNAPSHOT whatever the busy timeout says.
    func transaction<T: Sendable>(_ body: (any SQLSession) async throws -> T) async throws -> T {
        try await onThread { db in
            try db.execute("BEGIN IMMEDIATE")
            do {
                let v = try await body(db)
                try db.execute("COMMIT")
                return v
            } catch {
                try? db.execute("ROLLBACK")
                throw error
            }
        }
    }

    func read<T: Sendable>(_ body: (any SQLSession) async throws -> T) async throws -> T {
        try await onThread { try await body($0) }
    }

    /// One broker per file: the transaction is enough.
    func migrate(_ body: (any SQLSession) async throws -> Void) async throws {
        try await transaction(body)
    }

    /// Runs `body` on the connection's thread, alone on the connection.
    private func onThread<T>(_ body: (SQLiteConnection) async throws -> T) async throws -> T {
        try await withTaskExecutorPreference(thread) {
            await gate.enter()
            defer { gate.leave() }
            return try await body(connection)
        }
    }
}

/// The SQLite connection's thread as a task executor.
final class SQLiteThread: TaskExecutor {
    private let pool = NIOThreadPool(numberOfThreads: 1)

    init() { pool.start() }

    // Not the synchronous shutdown: the last reference may go on the thread itself.
    deinit { pool.shutdownGracefully { _ in } }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        // A pool shut down runs the item at once, marked cancelled: the job must run anyway.
        pool.submit { _ in job.runSynchronously(on: executor) }
    }
}

/// Lets one transaction or read at a time use the connection. A body runs on the thread
/// from start to end without suspending as written, but nothing else makes that a rule.
final class SQLiteGate: Sendable {
    private let state = Mutex<(busy: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func enter() async {
        if claim() { return }
        await withCheckedContinuation { c in if claim(orWait: c) { c.resume() } }
    }

    /// Takes the connection if it is free; else queues `c` (if any) for it.
    private func claim(orWait c: CheckedContinuation<Void, Never>? = nil) -> Bool {
        state.withLock { s in
            if !s.busy {
                s.busy = true
                return true
            }
            if let c { s.waiting.append(c) }
            return false
        }
    }

    /// Hands the connection to the next waiter, if any.
    func leave() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiting.isEmpty {
                s.busy = false
                return nil
            }
            return s.waiting.removeFirst()
        }
        next?.resume()
    }
}
