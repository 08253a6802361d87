import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// `tern admin`: questions for a running broker's admin HTTP listener (`metrics.listen`).
struct Admin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Storage report (admin listener); partition moves (Kafka protocol); metadata rebuild from the bucket.",
        subcommands: [Storage.self, Reassign.self, Drain.self, RebuildMetadata.self])

    struct Storage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Objects and bytes in the bucket, object-store request rates, and the estimated monthly cost at AWS S3 Standard prices.",
            discussion: """
            Lists the bucket (under its prefix) through the broker, so the numbers are what S3 \
            bills. Request rates are averages since the broker started; S3 requests are counted \
            as sent, retries included (for a local directory: the requests S3 would have had).
            """)

        @Option(name: .customLong("metrics-url"),
                help: ArgumentHelp("The broker's admin listener. Default: $TERN_METRICS_URL, else http://127.0.0.1:9644.", valueName: "url"))
        var metricsURL: String?

        @Flag(name: .customLong("json"), help: "Print the broker's JSON answer as it is.")
        var json = false

        func run() async throws {
            var base = metricsURL ?? ProcessInfo.processInfo.environment["TERN_METRICS_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:9644"
            if !base.hasPrefix("http://") && !base.hasPrefix("https://") { base = "http://" + base }
            while base.hasSuffix("/") { base.removeLast() }
            let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
            let body: ByteBuffer
            let status: UInt
            do {
                let response = try await client.execute(HTTPClientRequest(url: base + "/admin/storage"), timeout: .seconds(120))
                status = response.status.code
                body = try await response.body.collect(upTo: 16 << 20)
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw CLIError("cannot reach \(base): \(error)")
            }
            let text = String(buffer: body)
            guard status == 200 else { throw CLIError("\(base)/admin/storage answered \(status): \(text.trimmingCharacters(in: .whitespacesAndNewlines))") }
            if json {
                print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
                return
            }
            guard let report = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                throw CLIError("\(base)/admin/storage: not a storage report")
            }
            print(Self.render(report))
        }

        static func render(_ r: [String: Any]) -> String {
            func d(_ k: String, _ from: [String: Any] = r) -> Double { (from[k] as? NSNumber)?.doubleValue ?? 0 }
            func money(_ v: Double) -> String { String(format: "$%.2f", v) }
            let bytes = Int(d("bytes"))
            var lines = [
                "object store  \(r["object_store"] as? String ?? "?")",
                "objects       \(Int(d("objects")))",
                "bytes         \(bytes) (\(String(format: "%.1f", Double(bytes) / Double(1 << 20))) MiB)",
                "uptime        \(Int(d("uptime_seconds")))s",
                "bytes moved   \(Int(d("bytes_up"))) up, \(Int(d("bytes_down"))) down",
                "",
                "requests (\(r["requests_counted"] as? String ?? ""), rate since start):",
            ]
            let requests = r["requests"] as? [String: Any] ?? [:]
            for (op, v) in requests.sorted(by: { $0.key < $1.key }) {
                guard let v = v as? [String: Any] else { continue }
                lines.append("  " + op.padding(toLength: 24, withPad: " ", startingAt: 0)
                             + String(format: "%10d  %10.3f/s  %@", Int(d("count", v)), d("per_second", v), (v["tier"] as? String ?? "") as NSString))
            }
            let cost = r["estimated_monthly_cost_usd"] as? [String: Any] ?? [:]
            let prices = r["prices_usd"] as? [String: Any] ?? [:]
            lines += [
                "",
                "estimated monthly cost at AWS S3 Standard prices (\(String(format: "$%g", d("put_post_list_per_1000", prices)))/1000 PUT/POST/LIST, "
                    + "\(String(format: "$%g", d("get_per_1000", prices)))/1000 GET, \(String(format: "$%g", d("storage_per_gb_month", prices)))/GB-month):",
                "  requests  \(money(d("requests", cost)))",
                "  storage   \(money(d("storage", cost)))",
                "  total     \(money(d("total", cost)))",
            ]
            return lines.joined(separator: "\n")
        }
    }
}
