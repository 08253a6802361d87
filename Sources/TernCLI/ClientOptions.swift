import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import ObjectStore

/// `--bootstrap-server`, shared by every command that talks to a running broker.
struct ClientOptions: ParsableArguments {
    @Option(name: .customLong("bootstrap-server"),
            help: ArgumentHelp("Broker to connect to; several may be given comma-separated. Default: $TERN_BOOTSTRAP, else localhost:9092.",
                               valueName: "host:port"))
    var bootstrapServer: String?

    func validate() throws { _ = try addresses() }

    func addresses() throws -> [BrokerAddress] {
        let text = bootstrapServer ?? ProcessInfo.processInfo.environment["TERN_BOOTSTRAP"].flatMap { $0.isEmpty ? nil : $0 } ?? "localhost:9092"
        guard let list = BrokerAddress.parseList(text) else {
            throw ValidationError("--bootstrap-server: expected HOST:PORT[,HOST:PORT...], got '\(text)'")
        }
        return list
    }

    /// What the CLI's connections say of themselves.
    var configuration: KafkaClientConfiguration {
        var configuration = KafkaClientConfiguration()
        configuration.clientId = "tern-cli"
        configuration.softwareName = "tern-cli"
        configuration.softwareVersion = ternVersion
        // Fetch responses of many MiB, one after another: reuse their memory.
        configuration.responseAllocator = ReusedMemory.responseBodies.allocator
        return configuration
    }

    /// Runs `body` with a client and closes its connections afterwards, whatever happens.
    func withClient<T>(_ body: (KafkaClient) async throws -> T) async throws -> T {
        let client = KafkaClient(bootstrap: try addresses(), configuration: configuration)
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }
}

/// A failure the CLI reports in one line (`Error: …`) with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Parses repeated `KEY=VALUE` options; `flag` names the option in the error.
func parseConfigs(_ items: [String], flag: String) throws -> [(String, String)] {
    try items.map { item in
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw ValidationError("\(flag): expected KEY=VALUE, got '\(item)'")
        }
        return (String(item[..<eq]), String(item[item.index(after: eq)...]))
    }
}

/// Writes bytes to standard output unbuffered, so a consumer's output appears as it arrives
/// (and reaches a pipe before the process is stopped).
func writeStdout(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { p in
        var done = 0
        while done < p.count {
            let n = write(STDOUT_FILENO, p.baseAddress! + done, p.count - done)
            if n > 0 {
                done += n
            } else if n < 0 && errno != EINTR {
                return  // stdout closed (EPIPE): nothing more can be shown
            }
        }
    }
}

func writeStderr(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// The topic's entry in a Metadata response, or an error naming the topic and Kafka's code.
func topicMetadata(_ response: MetadataResponse, _ topic: String, action: String) throws -> MetadataResponse.MetadataResponseTopic {
    guard let t = response.topics.first(where: { $0.name == topic }) else {
        throw CLIError("cannot \(action) topic '\(topic)': the broker's metadata does not mention it")
    }
    if t.errorCode != 0 {
        throw KafkaClientError(kafka: t.errorCode, "cannot \(action) topic '\(topic)'",
                               brokerMessage: t.errorCode == ErrorCode.unknownTopicOrPartition.rawValue ? "it does not exist" : nil)
    }
    return t
}
