import ArgumentParser
import KafkaClient
import KafkaProtocol

/// `tern transactions …`: transaction administration over the Kafka protocol, like
/// kafka-transactions.sh (list, describe) plus `abort` for a hanging transaction.
struct TransactionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transactions",
        abstract: "List, describe and abort transactions on a running broker.",
        subcommands: [List.self, Describe.self, Abort.self])

    static let concurrentTransactions: Int16 = 51

    static func describe(_ conn: KafkaConnection, _ id: String) async throws -> DescribeTransactionsResponse.TransactionState {
        var req = DescribeTransactionsRequest()
        req.transactionalIds = [id]
        let r = try await conn.send(req, version: try conn.version(for: .describeTransactions))
        guard let s = r.transactionStates.first else { throw CLIError("no answer for transactional id \(id)") }
        if s.errorCode != 0 { throw KafkaClientError(kafka: s.errorCode, "cannot describe transactional id \(id)") }
        return s
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List transactional ids: TRANSACTIONAL-ID PRODUCER-ID STATE, one a line.")

        @OptionGroup var client: ClientOptions
        @Option(name: .customLong("state"), help: "Only transactions in this state (repeatable): Empty, Ongoing, PrepareCommit, ...")
        var states: [String] = []

        func run() async throws {
            let rows = try await client.withClient { c in
                let conn = try await c.anyConnection()
                var req = ListTransactionsRequest()
                req.stateFilters = states
                let r = try await conn.send(req, version: try conn.version(for: .listTransactions))
                if r.errorCode != 0 { throw KafkaClientError(kafka: r.errorCode, "cannot list transactions") }
                if !r.unknownStateFilters.isEmpty {
                    throw ValidationError("--state: unknown state \(r.unknownStateFilters.joined(separator: ", "))")
                }
                return r.transactionStates.sorted { $0.transactionalId < $1.transactionalId }
            }
            var table = TextTable(["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"])
            for s in rows { table.append([s.transactionalId, String(s.producerId), s.transactionState]) }
            print(table.render(), terminator: "")
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Describe a transactional id: producer, epoch, state, timeout, start time and partitions.")

        @OptionGroup var client: ClientOptions
        @Option(name: .customLong("transactional-id"), help: "The transactional id.")
        var transactionalId: String

        func run() async throws {
            let s = try await client.withClient { c in try await TransactionsCommand.describe(try await c.anyConnection(), transactionalId) }
            var table = TextTable(["TRANSACTIONAL-ID", "PRODUCER-ID", "PRODUCER-EPOCH", "STATE", "TIMEOUT-MS", "START-TIME-MS", "PARTITIONS"])
            let parts = s.topics.flatMap { t in t.partitions.map { "\(t.topic)-\($0)" } }.joined(separator: ",")
            table.append([s.transactionalId, String(s.producerId), String(s.producerEpoch), s.transactionState,
                          String(s.transactionTimeoutMs), String(s.transactionStartTimeMs), parts])
            print(table.render(), terminator: "")
        }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Abort the open transaction of a transactional id.",
            discussion: """
            Does what a new producer instance with the same transactional.id does: InitProducerId \
            makes the coordinator abort the open transaction under a bumped epoch (writing ABORT \
            markers into its partitions, so the last stable offset moves on), which fences the \
            producer that opened it. Refused when the id has no open transaction.
            """)

        @OptionGroup var client: ClientOptions
        @Option(name: .customLong("transactional-id"), help: "The transactional id.")
        var transactionalId: String

        func run() async throws {
            let done = try await client.withClient { c in
                let conn = try await c.anyConnection()
                let s = try await TransactionsCommand.describe(conn, transactionalId)
                guard s.transactionState == "Ongoing" || s.transactionState == "PrepareAbort" else {
                    throw CLIError("transactional id \(transactionalId) has no open transaction (state \(s.transactionState))")
                }
                var req = InitProducerIdRequest()
                req.transactionalId = transactionalId
                req.transactionTimeoutMs = s.transactionTimeoutMs
                for attempt in 1...100 {
                    let r = try await conn.send(req, version: try conn.version(for: .initProducerId))
                    if r.errorCode == 0 { return (r.producerId, r.producerEpoch) }
                    guard r.errorCode == TransactionsCommand.concurrentTransactions else {
                        throw KafkaClientError(kafka: r.errorCode, "cannot abort the transaction of \(transactionalId)")
                    }
                    try await Task.sleep(for: .milliseconds(min(50 * attempt, 500)))
                }
                throw CLIError("the transaction of \(transactionalId) is still completing; try again")
            }
            print("aborted the open transaction of \(transactionalId); producer id \(done.0) is now at epoch \(done.1)")
        }
    }
}
