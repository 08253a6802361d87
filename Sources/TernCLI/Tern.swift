import ArgumentParser

@main
struct Tern: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tern",
        abstract: "A Kafka-compatible broker whose records live in object storage.",
        version: ternVersion,
        subcommands: [Serve.self])
}
