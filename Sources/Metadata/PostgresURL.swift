import Foundation

/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or `postgresql://`), user and password
/// percent-decoded. TLS is not offered yet: the connection is plain TCP.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String

    public init(host: String, port: Int = 5432, user: String, password: String?, database: String) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    public static func isPostgres(_ url: String) -> Bool {
        url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")
    }

    public init(parsing url: String) throws {
        let expected = "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        guard Self.isPostgres(url), let c = URLComponents(string: url) else {
            throw MetadataError(.database, "\(expected), got '\(Self.redact(url))'")
        }
        guard let host = c.host, !host.isEmpty else { throw MetadataError(.database, "no host in '\(Self.redact(url))': \(expected)") }
        guard let user = c.user, !user.isEmpty else { throw MetadataError(.database, "no user in '\(Self.redact(url))': \(expected)") }
        let db = String(c.path.drop { $0 == "/" })
        guard !db.isEmpty, !db.contains("/") else { throw MetadataError(.database, "no database in '\(Self.redact(url))': \(expected)") }
        if let port = c.port, !(1...65535).contains(port) {
            throw MetadataError(.database, "bad port in '\(Self.redact(url))'")
        }
        if let q = c.queryItems, !q.isEmpty {
            throw MetadataError(.database, "URL parameters are not supported yet ('\(c.query ?? "")' in '\(Self.redact(url))')")
        }
        // URLComponents' user, password and path are already percent-decoded.
        self.init(host: host, port: c.port ?? 5432, user: user, password: c.password, database: db)
    }

    /// The URL with its password hidden, for logs and errors.
    public var description: String { "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)" }

    /// Hides the password of a URL that may not parse.
    public static func redact(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url.range(of: "@", options: .backwards),
              at.lowerBound > scheme.upperBound else { return url }
        let userinfo = url[scheme.upperBound..<at.lowerBound]
        guard let colon = userinfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at.lowerBound...])
    }
}
