import ArgumentParser
import Broker
import Foundation
import Logging
import Metadata
import NIOPosix
import ObjectStore
import StreamStorage

extension Admin {
    /// `tern admin rebuild-metadata`: a lost metadata store made again from the bucket alone.
    struct RebuildMetadata: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rebuild-metadata",
            abstract: "Rebuild a lost metadata store from the bucket: the newest snapshot plus the objects written since.",
            discussion: """
            Run it with every broker of the cluster stopped, against a new, empty metadata store \
            (a new SQLite file or PostgreSQL database), with the same settings as `tern serve` \
            (--data-dir, --object-store, --metadata, --config, --set, TERN_* variables).

            It loads the newest snapshot under <cluster>/meta/snapshots/ (written by the \
            controller every metadata.snapshot.interval.ms), then reads the index of every \
            object in the bucket the snapshot does not know and adds its ranges to their \
            streams, in offset order; objects that a newer object supersedes (compaction) are \
            dropped. Records acked after the snapshot are kept. What only the metadata store \
            held and changed after the snapshot is as of the snapshot: topic configs, group \
            offsets, transactions, DeleteRecords. A snapshot is also written when a topic is \
            created; a topic whose snapshot could not be written is lost with its records.
            """)

        @OptionGroup var store: StoreOptions
        @Option(name: .customLong("cluster-id"), help: "The cluster to rebuild, when the bucket holds snapshots of several.")
        var clusterId: String?

        func run() async throws {
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = .warning
                return h
            }
            let logger = Logger(label: "tern")
            let config: BrokerConfig
            do {
                config = try BrokerConfig.resolve(try store.layeredSettings())
            } catch let e as ConfigError {
                throw ValidationError(e.description)
            }
            let pool = NIOThreadPool(numberOfThreads: 2)
            pool.start()
            var s3: S3ObjectStore?
            let objects: any ObjectStore
            if config.objectStoreURL.hasPrefix("s3://") {
                s3 = try await openS3(config, logger: logger)
                objects = s3!
            } else {
                objects = try LocalDirectoryObjectStore(root: String(config.objectStoreURL.dropFirst("file://".count)), threadPool: pool)
            }
            let metadata = try await openMetadata(config, logger: logger)
            let report: RebuildReport
            do {
                report = try await MetadataRebuild.run(store: objects, into: metadata, cluster: clusterId, logger: logger)
            } catch let e as RebuildError {
                try? await s3?.shutdown()
                failStartup(e.description)
            } catch let e as MetadataError {
                try? await s3?.shutdown()
                failStartup("metadata \(redactedMetadataURL(config.metadataURL)): \(e.message)")
            }
            try? await s3?.shutdown()
            try? await pool.shutdownGracefully()
            let taken = Date(timeIntervalSince1970: Double(report.snapshotTakenMs) / 1000)
            var lines = [
                "rebuilt metadata \(redactedMetadataURL(config.metadataURL)) from \(config.objectStoreURL)",
                "snapshot            \(report.snapshotKey) (taken \(taken.formatted(.iso8601)))",
                "objects added       \(report.objectsAdded)",
                "offsets added       \(report.offsetsAdded)",
                "objects superseded  \(report.objectsSuperseded)",
                "objects gone        \(report.objectsGone)",
                "not objects         \(report.notObjects)",
            ]
            if !report.unknownStreams.isEmpty {
                lines.append("warning: \(report.unknownStreams.count) streams in the bucket are not in the snapshot (topics created after it, whose snapshot was never written); their records have no topic to go to, and the broker will collect their objects: stream ids \(report.unknownStreams.map(String.init).joined(separator: ", "))")
            }
            for h in report.holes {
                lines.append("warning: stream \(h.streamId): no object holds offset \(h.from); the stream ends there")
            }
            print(lines.joined(separator: "\n"))
        }
    }
}
