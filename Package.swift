// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "tern",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tern", targets: ["TernCLI"]),
        // Test-only: the Swift half of tests/test_codec_crosscheck.py (codecs vs kafka-python).
        .executable(name: "codec-check", targets: ["CodecCheck"]),
        // Test-only: SigV4 vs botocore (tests/test_sigv4_crosscheck.py) and the S3 client driven
        // against real S3 servers (tests/integration/test_s3.py).
        .executable(name: "s3-check", targets: ["S3Check"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        // Allocation counts on the hot paths (Benchmarks/HotPath, tools/bench-allocs.sh).
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .target(name: "CCRC32C"),
        // mallopt for `tern serve` (TernCLI/Serve.swift pinMallocMmapThreshold).
        .target(name: "CMalloc"),
        // Kafka's record batch codecs, from Debian's zlib1g-dev, libzstd-dev, liblz4-dev and
        // libsnappy-dev (installed by tools/install-deps.sh).
        .target(
            name: "CCompression",
            linkerSettings: [.linkedLibrary("z"), .linkedLibrary("zstd"), .linkedLibrary("lz4"), .linkedLibrary("snappy")]
        ),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(
            name: "KafkaProtocol",
            dependencies: ["CCRC32C", "CCompression", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // The S3 client lives here too (AsyncHTTPClient, swift-crypto for SigV4, FoundationXML
        // for S3's XML): the only module that may use FoundationXML.
        .target(
            name: "ObjectStore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Metadata",
            dependencies: [
                "CSQLite",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "StreamStorage",
            dependencies: [
                "KafkaProtocol", "ObjectStore", "Metadata",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Cluster",
            dependencies: ["Metadata"],
            swiftSettings: strict
        ),
        .target(
            name: "Broker",
            dependencies: [
                "KafkaProtocol", "KafkaClient", "StreamStorage", "Metadata", "ObjectStore", "Cluster",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "KafkaClient",
            dependencies: [
                "KafkaProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "AdminHTTP",
            dependencies: [
                "Broker", "StreamStorage",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                "ObjectStore",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "TernCLI",
            dependencies: [
                "Broker", "AdminHTTP", "StreamStorage", "ObjectStore", "Metadata", "KafkaClient", "CMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Unoptimized: the generated JSON conversions compile in seconds instead of a minute,
        // and the check runs in a few seconds either way. Nothing depends on this target.
        .executableTarget(
            name: "CodecCheck",
            dependencies: ["KafkaProtocol", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict + [.unsafeFlags(["-Onone"])]
        ),
        .executableTarget(
            name: "S3Check",
            dependencies: ["ObjectStore", .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KafkaProtocolTests",
            dependencies: [
                "KafkaProtocol", "Broker", "ObjectStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KafkaClientTests",
            dependencies: ["KafkaClient", "KafkaProtocol", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: ["Cluster", "Metadata"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerTests",
            dependencies: ["Broker", "Cluster", "KafkaProtocol", "Metadata", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ObjectStoreTests",
            dependencies: ["ObjectStore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StreamStorageTests",
            dependencies: [
                "StreamStorage", "ObjectStore", "Metadata", "KafkaProtocol",
                // Creates a database per test on the server TERN_TEST_POSTGRES_URL names.
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "HotPath",
            dependencies: [
                "Broker", "KafkaProtocol",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/HotPath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)

// The libFuzzer target exists only when asked for (TERN_FUZZ=1): it has no main of its own
// and links only with `-sanitize=fuzzer`. See README "Fuzzing".
if Context.environment["TERN_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "KafkaFuzz",
        dependencies: [
            "KafkaProtocol", "Broker", "StreamStorage", "ObjectStore", "Metadata",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ],
        swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])]
    ))
    package.products.append(.executable(name: "kafka-fuzz", targets: ["KafkaFuzz"]))
}
