import Foundation
import Logging
import Metadata
import PostgresNIO
import Testing

/// The metadata stores that the store tests run against (`@Test(arguments: StoreKind.testable)`):
/// SQLite always, PostgreSQL when `TERN_TEST_POSTGRES_URL` names a server (tools/test.sh
/// starts one); without it the PostgreSQL cases are left out and a line on stderr says so.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    static let testable: [StoreKind] = {
        if TestDatabase.postgresURL != nil { return allCases }
        FileHandle.standardError.write(Data("note: PostgreSQL variants of the metadata-store tests skipped: TERN_TEST_POSTGRES_URL is not set (tools/test.sh starts a server and sets it)\n".utf8))
        return [.sqlite]
    }()
}

/// A fresh, empty metadata database of one kind (a new SQLite file; a new PostgreSQL
/// database per test), opened as many times as a test wants: each `open()` is a new
/// connection, what a restarted broker or a second broker sees.
struct TestDatabase: Sendable {
    let kind: StoreKind
    let url: String

    func open() async throws -> any MetadataStore {
        switch kind {
        case .sqlite: try SQLiteMetadataStore(path: url)
        case .postgres: try await PostgresMetadataStore.connect(url: url, logger: Logger(label: "test"))
        }
    }

    static let postgresURL = ProcessInfo.processInfo.environment["TERN_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

    static func fresh(_ kind: StoreKind) async throws -> TestDatabase {
        switch kind {
        case .sqlite:
            return TestDatabase(kind: .sqlite, url: NSTemporaryDirectory() + "tern-test-\(UUID().uuidString).sqlite")
        case .postgres:
            guard let base = postgresURL else { throw MetadataError(.database, "TERN_TEST_POSTGRES_URL is not set") }
            let u = try PostgresURL(parsing: base)
            let name = "tern_test_" + UUID().uuidString.replacing("-", with: "").lowercased()
            let conn = try await PostgresConnection.connect(
                configuration: .init(host: u.host, port: u.port, username: u.user, password: u.password, database: u.database, tls: .disable),
                id: 1, logger: Logger(label: "test"))
            try await conn.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: Logger(label: "test"))
            try await conn.close()
            return TestDatabase(kind: .postgres, url: String(base[..<base.lastIndex(of: "/")!]) + "/" + name)
        }
    }
}
