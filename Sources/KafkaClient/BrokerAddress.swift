/// A broker's `host:port`, as given on a command line or advertised in Metadata.
public struct BrokerAddress: Sendable, Hashable, CustomStringConvertible {
    public static let defaultPort = 9092

    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `host` (port 9092) or `[v6-address]:port`; nil if malformed.
    public init?(parsing text: some StringProtocol) {
        let s = text.trimmingWhitespace()
        guard !s.isEmpty else { return nil }
        var host = Substring(s)
        var port = Self.defaultPort
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                port = p
            }
        } else if let colon = s.lastIndex(of: ":") {
            // More than one colon without brackets: a bare IPv6 address, no port.
            if s.firstIndex(of: ":") == colon {
                guard let p = Int(s[s.index(after: colon)...]) else { return nil }
                host = s[..<colon]
                port = p
            }
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.init(host: String(host), port: port)
    }

    /// Parses a comma-separated list (`bootstrap.servers` style); nil if any entry is malformed.
    public static func parseList(_ text: String) -> [BrokerAddress]? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: true)
        guard !parts.isEmpty else { return nil }
        var out: [BrokerAddress] = []
        for p in parts {
            guard let a = BrokerAddress(parsing: p) else { return nil }
            out.append(a)
        }
        return out
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
