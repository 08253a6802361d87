import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// `tern cluster up`: a local cluster to try — N brokers on one machine sharing a bucket (a
/// local directory, or any object store given) and a PostgreSQL database (given by URL, or
/// started from the system's PostgreSQL binaries in the data directory).
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Run a local cluster of brokers.",
        subcommands: [Up.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start N brokers sharing one bucket and one PostgreSQL database; Ctrl-C stops them all.",
            discussion: """
            Broker i listens on --port + i - 1 and serves metrics on --metrics-port + i - 1. Without \
            --postgres, PostgreSQL is started from the system's binaries (TERN_PG_BIN, else the newest \
            /usr/lib/postgresql/*/bin, else the PATH) in <data-dir>/postgres, as the user 'nobody' when \
            run as root (initdb refuses root). Without --object-store the bucket is <data-dir>/objects. \
            The data directory is kept: running the command again restarts the same cluster. Each \
            broker logs to <data-dir>/broker-<i>/broker.log.
            """)

        @Option(help: "How many brokers.") var brokers: Int = 3
        @Option(name: .customLong("data-dir"), help: "Directory for the brokers, the bucket and PostgreSQL.") var dataDir = "./tern-cluster"
        @Option(help: "Kafka port of broker 1 (the others follow).") var port: Int = 9092
        @Option(name: .customLong("metrics-port"), help: "Metrics port of broker 1 (the others follow).") var metricsPort: Int = 9644
        @Option(help: "A PostgreSQL URL to use instead of starting one.") var postgres: String?
        @Option(name: .customLong("object-store"), help: "Bucket URL (default: file://<data-dir>/objects).") var objectStore: String?
        @Option(name: .customLong("set"), help: "A broker setting NAME=VALUE for every broker (repeatable).") var settings: [String] = []

        func validate() throws {
            guard (1...64).contains(brokers) else { throw ValidationError("--brokers: expected 1...64") }
            guard (1...65535 - 64).contains(port), (1...65535 - 64).contains(metricsPort) else { throw ValidationError("--port/--metrics-port: out of range") }
        }

        func run() async throws {
            let root = URL(fileURLWithPath: dataDir).standardizedFileURL.path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            var pg: LocalPostgres?
            let url: String
            if let postgres {
                url = postgres
            } else {
                let server = try LocalPostgres(directory: root + "/postgres")
                try server.start()
                pg = server
                url = server.url
            }
            let bucket = objectStore ?? "file://\(root)/objects"
            let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            var children: [(Int, Process)] = []
            let stopAll = {
                for (_, p) in children where p.isRunning { kill(p.processIdentifier, SIGTERM) }
                for (_, p) in children { p.waitUntilExit() }
                pg?.stop()
            }
            do {
                for i in 1...brokers {
                    let dir = "\(root)/broker-\(i)"
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    let p = Process()
                    p.executableURL = URL(fileURLWithPath: exe)
                    p.arguments = ["serve", "--node-id", "\(i)", "--data-dir", dir,
                                   "--listen", "127.0.0.1:\(port + i - 1)", "--advertise", "127.0.0.1:\(port + i - 1)",
                                   "--metrics-listen", "127.0.0.1:\(metricsPort + i - 1)",
                                   "--metadata", url, "--object-store", bucket] + settings.flatMap { ["--set", $0] }
                    let log = "\(dir)/broker.log"
                    FileManager.default.createFile(atPath: log, contents: nil)
                    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
                    handle.seekToEndOfFile()
                    p.standardOutput = handle
                    p.standardError = handle
                    try p.run()
                    children.append((i, p))
                }
                try await waitReady(children: children, root: root)
            } catch {
                stopAll()
                throw error
            }
            let bootstrap = (1...brokers).map { "127.0.0.1:\(port + $0 - 1)" }.joined(separator: ",")
            // Straight to the file descriptor: a script reading a pipe sees it at once.
            FileHandle.standardOutput.write(Data("""
                Cluster of \(brokers) broker\(brokers == 1 ? "" : "s") ready.
                  bootstrap: \(bootstrap)
                  metadata:  \(redactedMetadataURL(url))
                  bucket:    \(bucket)
                  logs:      \(root)/broker-<i>/broker.log
                Ctrl-C stops the cluster.

                """.utf8))
            await waitForSignalOrExits(children)
            FileHandle.standardOutput.write(Data("Stopping the cluster.\n".utf8))
            stopAll()
        }

        /// Waits until every broker answers /readyz; fails naming a broker that exited.
        private func waitReady(children: [(Int, Process)], root: String) async throws {
            let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
            defer { _ = client.shutdown() }
            let deadline = ContinuousClock.now + .seconds(60)
            for (i, p) in children {
                while true {
                    if !p.isRunning {
                        throw CLIError("broker \(i) exited with \(p.terminationStatus); see \(root)/broker-\(i)/broker.log")
                    }
                    let request = HTTPClientRequest(url: "http://127.0.0.1:\(metricsPort + i - 1)/readyz")
                    if let r = try? await client.execute(request, timeout: .seconds(1)), r.status.code == 200 { break }
                    if ContinuousClock.now > deadline { throw CLIError("broker \(i) not ready after 60 s; see \(root)/broker-\(i)/broker.log") }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }

        /// Returns on SIGINT or SIGTERM. A broker that exits meanwhile is reported, and the
        /// rest keep running (the cluster fails its partitions over).
        private func waitForSignalOrExits(_ children: [(Int, Process)]) async {
            signal(SIGINT, SIG_IGN)
            signal(SIGTERM, SIG_IGN)
            let stop = AsyncStream<Void>.makeStream()
            var sources: [any DispatchSourceSignal] = []
            for s in [SIGINT, SIGTERM] {
                let src = DispatchSource.makeSignalSource(signal: s)
                src.setEventHandler { stop.continuation.yield() }
                src.resume()
                sources.append(src)
            }
            for (i, p) in children {
                p.terminationHandler = { proc in
                    FileHandle.standardError.write(Data("broker \(i) exited with \(proc.terminationStatus)\n".utf8))
                }
            }
            for await _ in stop.stream { break }
            for s in sources { s.cancel() }
        }
    }
}

/// PostgreSQL from the system's binaries in a directory of its own: initdb on first use,
/// then pg_ctl start/stop. As root, every PostgreSQL program runs as 'nobody'.
struct LocalPostgres {
    let directory: String
    let bin: String
    let asRoot = geteuid() == 0
    static let user = "tern"
    static let password = "tern-local"

    init(directory: String) throws {
        self.directory = directory
        guard let bin = Self.findBin() else {
            throw CLIError("no PostgreSQL binaries found (Debian: apt-get install postgresql; or set TERN_PG_BIN, or pass --postgres URL)")
        }
        self.bin = bin
    }

    var data: String { directory + "/data" }
    var portFile: String { directory + "/port" }
    var port: Int { (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0 }
    var url: String { "postgres://\(Self.user):\(Self.password)@127.0.0.1:\(port)/tern" }

    static func findBin() -> String? {
        if let b = ProcessInfo.processInfo.environment["TERN_PG_BIN"], !b.isEmpty { return b }
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap(Int.init).sorted()
        if let v = versions.last, FileManager.default.isExecutableFile(atPath: "\(base)/\(v)/bin/initdb") { return "\(base)/\(v)/bin" }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        where FileManager.default.isExecutableFile(atPath: "\(dir)/initdb") {
            return String(dir)
        }
        return nil
    }

    func start() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if asRoot {
            // initdb refuses root: PostgreSQL runs as 'nobody', which must reach its directory.
            chmod((directory as NSString).deletingLastPathComponent, 0o755)
            chmod(directory, 0o755)
            try run("/bin/chown", ["nobody", directory], asRoot: false)
        }
        if !fm.fileExists(atPath: data + "/PG_VERSION") {
            let pwfile = directory + "/pwfile"
            try Self.password.write(toFile: pwfile, atomically: true, encoding: .utf8)
            if asRoot { try run("/bin/chown", ["nobody", pwfile], asRoot: false) }
            try run(bin + "/initdb", ["-D", data, "-U", Self.user, "--pwfile=\(pwfile)", "--auth-host=scram-sha-256",
                                      "--auth-local=trust", "-E", "UTF8", "--locale=C"])
            try? fm.removeItem(atPath: pwfile)
            try String(Self.freePort()).write(toFile: portFile, atomically: true, encoding: .utf8)
            try pgctl(["start"])
            try run(bin + "/psql", ["-h", directory, "-p", "\(port)", "-U", Self.user, "-d", "postgres", "-c", "CREATE DATABASE tern"])
        } else {
            try pgctl(["start"])
        }
    }

    func stop() {
        try? pgctl(["-m", "fast", "stop"])
    }

    private func pgctl(_ args: [String]) throws {
        let opts = "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1"
        try run(bin + "/pg_ctl", ["-D", data, "-l", directory + "/server.log", "-o", opts, "-w", "-t", "60"] + args)
    }

    /// Runs a program to completion; as 'nobody' when we are root (unless `asRoot` is false).
    /// posix_spawn and waitpid, not Foundation's Process: Process waits for every holder of
    /// its child's descriptors, and the server pg_ctl starts keeps running.
    private func run(_ path: String, _ args: [String], asRoot: Bool = true) throws {
        let argv = (self.asRoot && asRoot) ? ["/usr/sbin/runuser", "-u", "nobody", "--", path] + args : [path] + args
        let outPath = directory + "/command.out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw CLIError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        // WIFEXITED && WEXITSTATUS == 0
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw CLIError("\((path as NSString).lastPathComponent) failed (status \(status)): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// A port free right now on 127.0.0.1, below 50000.
    static func freePort() -> Int {
        for _ in 0..<100 {
            let candidate = Int.random(in: 20000..<50000)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(candidate).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if ok == 0 { return candidate }
        }
        return 54321
    }
}
