import ArgumentParser

@main
struct Tern: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tern",
        abstract: "A Kafka-compatible broker whose records live in object storage.",
        discussion: """
        `tern serve` runs a broker; `tern cluster up --brokers N` runs N of them as one local \
        cluster. `tern topics`, `tern produce`, `tern consume`, \
        `tern groups` and `tern perf` (load generators) talk to a running broker (any Kafka \
        broker) over the Kafka protocol; they take --bootstrap-server HOST:PORT, else \
        $TERN_BOOTSTRAP, else localhost:9092. `tern admin storage` asks a running broker's \
        metrics endpoint what its bucket holds and costs; `tern admin reassign` and `tern admin \
        drain` move partitions between brokers; `tern admin rebuild-metadata` makes a lost \
        metadata store again from the bucket.
        """,
        version: ternVersion,
        subcommands: [Serve.self, ClusterCommand.self, Topics.self, ProduceCommand.self, ConsumeCommand.self, Groups.self, TransactionsCommand.self, Perf.self, Admin.self])
}
