import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// The metadata store of a cluster: PostgreSQL, shared by every broker. What it runs is
/// `SQLMetadataStore`'s, as for SQLite; `PostgresEngine` says how.
public final class PostgresMetadataStore: SQLMetadataStore, @unchecked Sendable {
    private let runner: Task<Void, Never>
    public let url: PostgresURL
    /// For the connection that LISTENs (outside the pool: it stays open).
    private let listenConfig: PostgresConnection.Configuration

    /// Connects once to check that the server is reachable and takes the credentials (so that
    /// a wrong URL fails at startup with the server's reason, not on the first request), then
    /// starts the connection pool.
    public static func connect(url: String, logger: Logger) async throws -> PostgresMetadataStore {
        let u = try PostgresURL(parsing: url)
        var config = PostgresConnection.Configuration(host: u.host, port: u.port, username: u.user, password: u.password,
                                                      database: u.database, tls: .disable)
        config.options.connectTimeout = .seconds(10)
        do {
            let probe = try await PostgresConnection.connect(configuration: config, id: 0, logger: logger)
            try? await probe.close()
        } catch {
            throw MetadataError(.database, "cannot connect: \(PostgresEngine.describe(error))")
        }
        return PostgresMetadataStore(url: u, logger: logger)
    }

    private init(url: PostgresURL, logger: Logger) {
        var config = PostgresClient.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                  database: url.database, tls: .disable)
        config.options.connectTimeout = .seconds(10)
        config.options.maximumConnections = 8
        // The pool's own log lines (connections opened and closed, leases before run() has
        // started) are noise at the broker's level; its failures reach us as errors.
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: config, backgroundLogger: background)
        self.url = url
        var listen = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                      database: url.database, tls: .disable)
        listen.options.connectTimeout = .seconds(10)
        listenConfig = listen
        runner = Task { await client.run() }
        super.init(engine: PostgresEngine(client: client, logger: logger), logger: logger)
    }

    deinit { runner.cancel() }

    /// LISTENs on the cluster's channel on a connection of its own and calls `onChange` for
    /// every notification, until cancelled; connects again after a failure (and calls
    /// `onChange` then, for what it may have missed).
    public override func watchChanges(_ onChange: @escaping @Sendable () -> Void) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let conn = try await PostgresConnection.connect(configuration: listenConfig, id: 1, logger: logger)
                do {
                    try await conn.listen(on: MetadataSQL.clusterChannel) { notifications in
                        failures = 0
                        onChange()
                        for try await _ in notifications { onChange() }
                    }
                } catch {
                    try? await conn.close()
                    throw error
                }
                try? await conn.close()
            } catch {
                if Task.isCancelled { return }
                failures += 1
                if failures == 1 { logger.warning("metadata store: LISTEN failed; polling until it works again", metadata: ["error": "\(error)"]) }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Closes the pool; the store fails every call afterwards.
    public func shutdown() async {
        runner.cancel()
        await runner.value
    }
}

/// PostgreSQL's side of `SQLMetadataStore`. SQLite runs one writer at a time (`BEGIN
/// IMMEDIATE`); here every transaction is SERIALIZABLE and is run again from the start when
/// PostgreSQL reports a serialization failure or deadlock, so the same read-then-write
/// statements keep SQLite's meaning with many brokers writing at once.
struct PostgresEngine: SQLEngine {
    let client: PostgresClient
    let logger: Logger

    var dialect: SQLDialect { .postgres }

    /// SQLSTATEs after which a transaction is run again: serialization_failure, deadlock_detected.
    private static let retryable: Set<String> = ["40001", "40P01"]

    /// SERIALIZABLE, run again from the start on a serialization failure (up to 30 times,
    /// with a short random pause growing per attempt).
    func transaction<T: Sendable>(_ body: (any SQLSession) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await Self.bounded { try await inTransaction("BEGIN ISOLATION LEVEL SERIALIZABLE", body) }
            } catch let e as PSQLError {
                if let state = e.serverInfo?[.sqlState], Self.retryable.contains(state), attempt < 30 {
                    try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * min(attempt, 20)))))
                    continue
                }
                throw MetadataError(.database, Self.describe(e))
            }
        }
    }

    func read<T: Sendable>(_ body: (any SQLSession) async throws -> T) async throws -> T {
        do {
            return try await Self.bounded {
                try await client.withConnection { conn in try await body(PostgresSession(conn, logger: logger)) }
            }
        } catch let e as PSQLError {
            throw MetadataError(.database, Self.describe(e))
        }
    }

    /// Under an advisory lock, so that brokers starting together apply each migration once.
    func migrate(_ body: (any SQLSession) async throws -> Void) async throws {
        do {
            try await inTransaction("BEGIN") { db in
                try await db.query("SELECT 1 FROM pg_advisory_xact_lock(7429017)")  // one lock key for tern's schema
                try await body(db)
            }
        } catch let e as PSQLError {
            throw MetadataError(.database, "schema migration: \(Self.describe(e))")
        }
    }

    /// How long one store call (lease a connection, run its statements, commit) may take
    /// before it fails. Without it a call in flight when the server goes away can wait for
    /// ever: the pool queues the lease while it backs off reconnecting, and a query on a
    /// connection the server never answers again has no timeout of its own. Failing lets the
    /// callers' retry loops (the committer, the cluster round) run.
    static let deadline: Duration = .seconds(10)

    struct DeadlineExceeded: Error {}

    /// Runs `work`, and cancels it after `deadline`: cancellation stops a queued lease and
    /// closes the connection under a running query (`PostgresSession.query`), so the call
    /// fails with `.database` within about `deadline`.
    static func bounded<T: Sendable>(_ work: () async throws -> T) async throws -> T {
        try await withoutActuallyEscaping(work) { escaping in
            let op = Unchecked(escaping)
            // The group waits for both children, so `work` never outlives this call.
            return try await withThrowingTaskGroup(of: Unchecked<T>?.self) { group in
                group.addTask { Unchecked(try await op.value()) }
                group.addTask {
                    try? await Task.sleep(for: deadline)
                    return nil
                }
                defer { group.cancelAll() }
                do {
                    guard let first = try await group.next(), let result = first else {
                        throw MetadataError(.database, "no answer from PostgreSQL within \(deadline)")
                    }
                    return result.value
                } catch is CancellationError {
                    throw MetadataError(.database, "no answer from PostgreSQL within \(deadline)")
                }
            }
        }
    }

    private func inTransaction<T: Sendable>(_ begin: String, _ body: (any SQLSession) async throws -> T) async throws -> T {
        try await client.withConnection { conn in
            let s = PostgresSession(conn, logger: logger)
            try await s.query(begin)
            do {
                let value = try await body(s)
                try await s.query("COMMIT")
                return value
            } catch {
                _ = try? await s.query("ROLLBACK")
                throw error
            }
        }
    }

    /// What went wrong, in one line: the server's message and SQLSTATE, or the connection
    /// error. (PSQLError's own description hides both.)
    static func describe(_ error: any Error) -> String {
        guard let e = error as? PSQLError else { return "\(error)" }
        if let info = e.serverInfo {
            let message = info[.message] ?? "error"
            let state = info[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            let detail = info[.detail].map { ": \($0)" } ?? ""
            return "\(message)\(detail)\(state)"
        }
        if e.code == .authMechanismRequiresPassword { return "the server asks for a password and the URL has none" }
        if let c = e.underlying as? NIOConnectionError {
            let reasons = c.connectionErrors.map { "\($0.error)" } + (c.dnsAError.map { ["\($0)"] } ?? [])
            return reasons.isEmpty ? "\(c)" : reasons.joined(separator: "; ")
        }
        if let u = e.underlying { return "\(e.code): \(u)" }
        return "\(e.code)"
    }
}

/// A value handed between tasks whose use is confined by structure (`PostgresEngine.bounded`).
struct Unchecked<V>: @unchecked Sendable {
    let value: V
    init(_ value: V) { self.value = value }
}

/// One connection lent by the pool, speaking the stores' shared SQL: `?` parameters,
/// rows as `SQLValue`s, and the rows affected by the last statement.
final class PostgresSession: SQLSession {
    private let connection: PostgresConnection
    private let logger: Logger
    /// Rows changed by the last statement (its command tag's count).
    private(set) var changes = 0

    init(_ connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    @discardableResult
    func query(_ sql: String, _ params: [SQLValue]) async throws -> [[SQLValue]] {
        var binds = PostgresBindings(capacity: params.count)
        for p in params {
            switch p {
            case .int(let v): binds.append(v)
            case .text(let v): binds.append(v)
            case .null: binds.appendNull()
            }
        }
        let query = PostgresQuery(unsafeSQL: SQLDialect.postgres.parameters(sql), binds: binds)
        try Task.checkCancellation()
        // A query written to a channel already closed (the server went away between the
        // lease and now) is dropped by PostgresNIO with its answer never completed: fail it
        // here, and let the deadline below catch the same race when it is narrower.
        if connection.isClosed { throw MetadataError(.database, "the connection to PostgreSQL is closed") }
        let future: EventLoopFuture<PostgresQueryResult> = connection.query(query, logger: logger)
        // Cancelled (the call's deadline passed): stop waiting, and close the connection so
        // that the server's backend is freed rather than left answering no one.
        let connection = self.connection
        let result = try await future.valueUnlessCancelled {
            let closing: EventLoopFuture<Void> = connection.close()
            _ = closing
        }
        changes = result.metadata.rows ?? 0
        return try result.rows.map { row in try row.map(Self.value) }
    }

    private static func value(_ cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return .int(try cell.decode(Int64.self))
        case .bool: return .int(try cell.decode(Bool.self) ? 1 : 0)
        default: return .text(try cell.decode(String.self))
        }
    }
}
