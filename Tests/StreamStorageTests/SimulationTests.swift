import Foundation
import KafkaProtocol
import Logging
import Metadata
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ObjectStore
import StreamStorage
import Testing

/// A seeded random workload over the storage engine (appends to several streams, reads,
/// DeleteRecords trims) on an in-memory bucket and a real SQLite file (a third of the seeds
/// with the file WAL, whose segments lose what was not fdatasync'd), with the broker
/// process killed at a random request to either store (the request landing or not), then
/// restarted and recovered, several times per seed. After each recovery every acked record
/// must be readable exactly once at its acked offset, offsets must be contiguous, and no
/// object that the metadata references may be missing. Some lives also start a successor
/// of the broker (the next broker epoch: it fences the old one, recovers its WAL and opens the
/// streams at epoch+1) while the old one keeps running as a zombie and keeps producing: its
/// acks must not be lost or clash with the successor's offsets.
///
/// `TERN_SIM_SEEDS=N` runs N seeds (default 150), `TERN_SIM_SEED=S` replays one; a failure
/// names its seed. The run prints how often each crash point was hit.
@Suite struct SimulationTests {
    @Test func seededCrashesLoseNoAckedRecord() async throws {
        let env = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = env["TERN_SIM_SEED"].flatMap({ UInt64($0) }) {
            seeds = [one]
        } else {
            seeds = Array(1...UInt64(env["TERN_SIM_SEEDS"].flatMap { Int($0) } ?? 150))
        }
        let hits = NIOLockedValueBox<[String: Int]>([:])
        for seed in seeds {
            let sim = Simulation(seed: seed, fileWAL: seed % 3 == 0)
            let failures = await sim.run()
            hits.withLockedValue { h in for (k, v) in sim.crashHits() { h[k, default: 0] += v } }
            #expect(failures.isEmpty, "seed \(seed) (replay: TERN_SIM_SEED=\(seed)): \(failures.prefix(5).joined(separator: "; "))")
            if !failures.isEmpty { break }
        }
        let table = hits.withLockedValue { $0 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        print("simulation: \(seeds.count) seeds; crash points hit (and take-overs): \(table)")
        // Every kind of crash point must be reached, or the simulation is not testing it.
        #expect(hits.withLockedValue { $0["putGathered", default: 0] + $0["putGathered+landed", default: 0] } > 0, "no crash at a gather's output")
        for point in ["put", "put+landed", "head", "commit", "commit+landed", "openStream", "list",
                      "commitCompaction", "commitCompaction+landed", "delete", "delete+landed", "markGarbage",
                      "takeover"] + (seeds.contains { $0 % 3 == 0 } ? ["walWrite", "walSync", "walSync+landed", "walTorn"] : []) {
            #expect(hits.withLockedValue { $0[point, default: 0] } > 0, "crash point \(point) never hit")
        }
    }
}

/// Planted mutants (TestMutations): each must make the simulation report a violation within
/// `maxSeeds` seeds, or the simulation is too weak to catch that bug. The run prints the
/// seed that caught it.
@Suite struct SimulationMutantTests {
    static let maxSeeds: UInt64 = 200

    /// The first seed whose run reports a violation with `mutation` planted; nil if none did.
    static func firstCatchingSeed(_ mutation: TestMutations, _ name: String, fileWAL: Bool = false) async -> UInt64? {
        for seed in 1...maxSeeds {
            let failures = await Simulation(seed: seed, mutations: mutation, fileWAL: fileWAL).run()
            if !failures.isEmpty {
                print("mutant \(name) caught at seed \(seed) (after \(seed) seeds): \(failures[0])")
                return seed
            }
        }
        print("mutant \(name) survived \(maxSeeds) seeds")
        return nil
    }

    @Test func ackBeforeWriteIsCaught() async {
        #expect(await Self.firstCatchingSeed(.ackBeforeWrite, "ackBeforeWrite") != nil)
    }

    @Test func deleteBeforeSupersedingCommitIsCaught() async {
        #expect(await Self.firstCatchingSeed(.deleteBeforeSupersedingCommit, "deleteBeforeSupersedingCommit") != nil)
    }

    @Test func skipFenceCheckIsCaught() async {
        #expect(await Self.firstCatchingSeed(.skipFenceCheck, "skipFenceCheck") != nil)
    }

    @Test func fileWALAckWithoutSyncIsCaught() async {
        #expect(await Self.firstCatchingSeed(.skipWALSync, "skipWALSync", fileWAL: true) != nil)
    }
}

/// SplitMix64: small, fast and the same on every platform.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One broker process's access to the outside: after the crash every request fails and the
/// process's stores are let go. The request the crash happens at lands or not, by the seed.
final class Power: Sendable {
    struct State {
        var requests = 0
        var crashAt: Int
        /// When set, the crash is at the `crashAt`-th request of this kind instead (so rare
        /// crash points such as a compaction's commit are reached too).
        var target: String?
        var targetSeen = 0
        var dead = false
        var landed: Bool
        var hit: String?
        /// While set, requests run without counting towards the crash (the checks' reads).
        var counting = true
    }

    private let state: NIOLockedValueBox<State>
    private enum Step { case run, crashAfter, fail }

    init(crashAt: Int, landed: Bool, target: String? = nil) {
        state = NIOLockedValueBox(State(crashAt: crashAt, target: target, landed: landed))
    }

    var isDead: Bool { state.withLockedValue { $0.dead } }
    var hit: String? { state.withLockedValue { $0.hit } }

    /// Kills the process now (between requests).
    func kill() { state.withLockedValue { $0.dead = true } }

    /// Runs the checks' own requests without moving towards the crash.
    func uncounted<T>(_ body: () async -> T) async -> T {
        state.withLockedValue { $0.counting = false }
        defer { state.withLockedValue { $0.counting = true } }
        return await body()
    }

    /// Runs one request, or fails it: before the crash it runs; at the crash point it runs
    /// (or not) and then fails as if the process died waiting for the answer; after, it fails.
    func request<T>(_ name: String, _ body: () async throws -> T) async throws -> T {
        switch step(name) {
        case .run: return try await body()
        case .crashAfter:
            _ = try? await body()
            throw Power.died
        case .fail: throw Power.died
        }
    }

    /// A file operation of the file WAL, about to run: it throws when the process is dead or
    /// dies here without it; at a crash that lands the operation runs and the process is dead
    /// after it (the file WAL's next operation fails).
    func check(_ name: String) throws {
        if case .fail = step(name) { throw Power.died }
    }

    private func step(_ name: String) -> Step {
        state.withLockedValue { s in
            if s.dead { return .fail }
            guard s.counting else { return .run }
            s.requests += 1
            if let t = s.target {
                guard name == t else { return .run }
                s.targetSeen += 1
                guard s.targetSeen >= s.crashAt else { return .run }
            } else {
                guard s.requests >= s.crashAt else { return .run }
            }
            s.dead = true
            s.hit = s.landed ? "\(name)+landed" : name
            return s.landed ? .crashAfter : .fail
        }
    }

    /// What a dead process's requests fail with. For the metadata store a fencing error, so a
    /// dead engine's committer drops its commit instead of retrying it forever.
    static let died = MetadataError(.fenced, "the broker process died")
}

struct CrashingObjectStore: ObjectStore {
    let base: any ObjectStore
    let power: Power

    func put(_ key: String, _ body: ObjectBody, ifNoneMatch: Bool) async throws {
        // A gather's outputs count apart, so the run shows that gathers happened and crashed.
        try await power.request(key.contains("/gathered/") ? "putGathered" : "put") { try await base.put(key, body, ifNoneMatch: ifNoneMatch) }
    }
    func get(_ key: String, range: Range<Int>?) async throws -> ByteBuffer {
        try await power.request("get") { try await base.get(key, range: range) }
    }
    func head(_ key: String) async throws -> ObjectInfo? {
        try await power.request("head") { try await base.head(key) }
    }
    func list(prefix: String) async throws -> [ObjectInfo] {
        try await power.request("list") { try await base.list(prefix: prefix) }
    }
    func delete(_ keys: [String]) async throws {
        try await power.request("delete") { try await base.delete(keys) }
    }
}

struct CrashingMetadataStore: MetadataStore {
    let base: any MetadataStore
    let power: Power

    private func r<T>(_ name: String, _ body: () async throws -> T) async throws -> T {
        try await power.request(name, body)
    }

    func bootstrap(nodeId: Int32, leaseMs: Int64) async throws -> (clusterId: String, brokerEpoch: Int64) {
        try await r("bootstrap") { try await base.bootstrap(nodeId: nodeId, leaseMs: leaseMs) }
    }
    func topics() async throws -> [TopicRecord] { try await r("topics") { try await base.topics() } }
    func createTopic(name: String, topicId: String, partitions: Int, configs: [String: String]) async throws -> TopicRecord {
        try await r("createTopic") { try await base.createTopic(name: name, topicId: topicId, partitions: partitions, configs: configs) }
    }
    func deleteTopic(name: String) async throws -> TopicRecord? { try await r("deleteTopic") { try await base.deleteTopic(name: name) } }
    func setTopicConfigs(name: String, configs: [String: String]) async throws { try await r("setTopicConfigs") { try await base.setTopicConfigs(name: name, configs: configs) } }
    func addPartitions(name: String, count: Int) async throws -> TopicRecord { try await r("addPartitions") { try await base.addPartitions(name: name, count: count) } }
    func advanceStartOffset(streamId: Int64, epoch: Int64, to offset: Int64) async throws -> Int64 {
        try await r("advanceStartOffset") { try await base.advanceStartOffset(streamId: streamId, epoch: epoch, to: offset) }
    }
    func openStream(streamId: Int64, owner: Int32) async throws -> StreamRecord { try await r("openStream") { try await base.openStream(streamId: streamId, owner: owner) } }
    func ranges(streamId: Int64) async throws -> [StreamRange] { try await r("ranges") { try await base.ranges(streamId: streamId) } }
    func producerStates(streamId: Int64) async throws -> [ProducerStateRecord] { try await r("producerStates") { try await base.producerStates(streamId: streamId) } }
    func commit(_ commit: ObjectCommit) async throws { try await r("commit") { try await base.commit(commit) } }
    func snapshot() async throws -> MetadataSnapshot { try await r("snapshot") { try await base.snapshot() } }
    func restore(_ snapshot: MetadataSnapshot) async throws { try await r("restore") { try await base.restore(snapshot) } }
    func committedObjectKeys(prefix: String) async throws -> Set<String> { try await r("committedObjectKeys") { try await base.committedObjectKeys(prefix: prefix) } }
    func allocateProducerId() async throws -> Int64 { try await r("allocateProducerId") { try await base.allocateProducerId() } }
    func abortedTxns(streamId: Int64) async throws -> [AbortedTxnRecord] { try await r("abortedTxns") { try await base.abortedTxns(streamId: streamId) } }
    func transactions() async throws -> [TransactionRecord] { try await r("transactions") { try await base.transactions() } }
    func putTransaction(_ t: TransactionRecord) async throws { try await r("putTransaction") { try await base.putTransaction(t) } }
    func deleteTransaction(transactionalId: String) async throws { try await r("deleteTransaction") { try await base.deleteTransaction(transactionalId: transactionalId) } }
    func commitOffsets(group: String, _ offsets: [CommittedOffset]) async throws { try await r("commitOffsets") { try await base.commitOffsets(group: group, offsets) } }
    func fetchOffsets(group: String) async throws -> [CommittedOffset] { try await r("fetchOffsets") { try await base.fetchOffsets(group: group) } }
    func groupsWithOffsets() async throws -> [String] { try await r("groupsWithOffsets") { try await base.groupsWithOffsets() } }
    func deleteGroupOffsets(group: String) async throws -> Bool { try await r("deleteGroupOffsets") { try await base.deleteGroupOffsets(group: group) } }
    func deleteOffsets(group: String, _ partitions: [(topic: String, partition: Int32)]) async throws -> Bool {
        try await r("deleteOffsets") { try await base.deleteOffsets(group: group, partitions) }
    }
    func markGarbage(now: Int64) async throws -> Int { try await r("markGarbage") { try await base.markGarbage(now: now) } }
    func garbageObjects(markedBefore: Int64, limit: Int) async throws -> [String] {
        try await r("garbageObjects") { try await base.garbageObjects(markedBefore: markedBefore, limit: limit) }
    }
    func dropGarbage(keys: [String]) async throws { try await r("dropGarbage") { try await base.dropGarbage(keys: keys) } }
    func liveObjects(prefix: String, limit: Int) async throws -> [StoredObject] { try await r("liveObjects") { try await base.liveObjects(prefix: prefix, limit: limit) } }
    func renewLease(nodeId: Int32, epoch: Int64, host: String, port: Int, internalPort: Int, rack: String?, leaseMs: Int64) async throws -> Bool {
        try await r("renewLease") { try await base.renewLease(nodeId: nodeId, epoch: epoch, host: host, port: port, internalPort: internalPort, rack: rack, leaseMs: leaseMs) }
    }
    func setDraining(nodeId: Int32, _ draining: Bool) async throws -> Bool {
        try await r("setDraining") { try await base.setDraining(nodeId: nodeId, draining) }
    }
    func clusterStatus() async throws -> ClusterStatus { try await r("clusterStatus") { try await base.clusterStatus() } }
    func streamPlacements() async throws -> [StreamPlacement] { try await r("streamPlacements") { try await base.streamPlacements() } }
    func acquireController(nodeId: Int32, epoch: Int64, leaseMs: Int64) async throws -> Bool {
        try await r("acquireController") { try await base.acquireController(nodeId: nodeId, epoch: epoch, leaseMs: leaseMs) }
    }
    func assignStreams(_ assignments: [(streamId: Int64, node: Int32)]) async throws { try await r("assignStreams") { try await base.assignStreams(assignments) } }
    func releaseStream(streamId: Int64, epoch: Int64) async throws -> Bool { try await r("releaseStream") { try await base.releaseStream(streamId: streamId, epoch: epoch) } }
    func reportLoads(nodeId: Int32, _ loads: [StreamLoad]) async throws { try await r("reportLoads") { try await base.reportLoads(nodeId: nodeId, loads) } }
    func watchChanges(_ onChange: @escaping @Sendable () -> Void) async { await base.watchChanges(onChange) }
    func streamLoads() async throws -> [StreamLoad] { try await r("streamLoads") { try await base.streamLoads() } }
    func failOver(nodeId: Int32, epoch: Int64, reassign: [(streamId: Int64, node: Int32)]) async throws -> Bool {
        try await r("failOver") { try await base.failOver(nodeId: nodeId, epoch: epoch, reassign: reassign) }
    }
    func commitCompaction(_ compaction: CompactionCommit, now: Int64) async throws {
        try await r("commitCompaction") { try await base.commitCompaction(compaction, now: now) }
    }
    func touchOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], at time: Int64) async throws {
        try await r("touchOffsets") { try await base.touchOffsets(group: group, partitions, at: time) }
    }
    func expireOffsets(group: String, _ partitions: [(topic: String, partition: Int32)], committedBefore time: Int64) async throws -> Int {
        try await r("expireOffsets") { try await base.expireOffsets(group: group, partitions, committedBefore: time) }
    }
}

/// One seed: lives of a broker, each killed at a random request, then a last clean check.
final class Simulation: @unchecked Sendable {
    let seed: UInt64
    /// Planted bugs every engine of this run is built with (empty: the real engine).
    let mutations: TestMutations
    /// The file WAL (`wal = file://DIR`) in `walRoot`, rather than the S3 WAL. A crash loses
    /// what a segment held past its last fdatasync: all of it, none, or part (a torn frame).
    let walRoot: String?
    /// Each segment's length at its last fdatasync.
    let durable = NIOLockedValueBox<[String: Int]>([:])
    /// The file WALs of the brokers of this life, closed when they die.
    var wals: [FileWAL] = []
    var rng: SeededRandom
    let bucket = InMemoryObjectStore()
    let metadata: SQLiteMetadataStore
    let path: String
    var streams: [Int64] = []
    /// Acked records: stream → offset → value.
    var acked: [Int64: [Int64: String]] = [:]
    /// Log start offsets acked by a trim.
    var trimmed: [Int64: Int64] = [:]
    var nextValue = 0
    var failures: [String] = []
    var hits: [String: Int] = [:]
    /// Small thresholds, so a few KiB of records make compaction merge and split.
    let compaction: CompactionConfig = {
        var c = CompactionConfig()
        c.ssoMaxBytes = 4 << 10  // merged SSOs fill up, so gathers happen
        c.splitBytes = 2 << 10
        c.gatherQuietMs = 5_000  // five ticks of `clock()`
        return c
    }()
    let collectNow: GarbageCollectionConfig = {
        var c = GarbageCollectionConfig()
        c.graceMs = 0
        return c
    }()
    var ticks: Int64 = 1_000_000

    func clock() -> Int64 {
        ticks += 1000
        return ticks
    }
    static let logger: Logger = {
        var l = Logger(label: "sim")
        l.logLevel = .critical
        return l
    }()

    init(seed: UInt64, mutations: TestMutations = [], fileWAL: Bool = false) {
        self.seed = seed
        self.mutations = mutations
        rng = SeededRandom(seed: seed)
        path = NSTemporaryDirectory() + "tern-sim-\(seed)-\(UUID().uuidString).sqlite"
        metadata = try! SQLiteMetadataStore(path: path)
        walRoot = fileWAL ? NSTemporaryDirectory() + "tern-sim-wal-\(seed)-\(UUID().uuidString)" : nil
    }

    /// What the crash leaves of each segment: its length at the last fdatasync, and of what
    /// was written after it all, nothing, or a part.
    func loseUnsyncedWrites() {
        guard let walRoot, let names = try? FileManager.default.contentsOfDirectory(atPath: walRoot + "/1") else { return }
        for name in names where name.hasSuffix(".wal") {
            let file = walRoot + "/1/" + name
            guard let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int else { continue }
            let synced = durable.withLockedValue { $0[file] } ?? 0
            guard size > synced else { continue }
            let keep: Int
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: keep = synced
            case 1: keep = size
            default: keep = Int.random(in: synced...size, using: &rng)
            }
            hits["walTorn", default: 0] += keep < size ? 1 : 0
            truncate(file, off_t(keep))
        }
    }

    func crashHits() -> [String: Int] { hits }

    func run() async -> [String] {
        defer {
            try? FileManager.default.removeItem(atPath: path)
            if let walRoot { try? FileManager.default.removeItem(atPath: walRoot) }
        }
        do {
            _ = try await metadata.bootstrap(nodeId: 1)
            let topic = try await metadata.createTopic(name: "t", topicId: KafkaUUID.random().hex, partitions: 3, configs: [:])
            streams = topic.streamIds
        } catch {
            return ["setup: \(error)"]
        }
        let lives = Int.random(in: 2...4, using: &rng)
        for _ in 0..<lives {
            let powers = await life()
            for power in powers {
                if let hit = power.hit { hits[hit, default: 0] += 1 }
                power.kill()
            }
            for w in wals { w.stop() }
            wals.removeAll()
            try? await Task.sleep(for: .milliseconds(5))  // a WAL thread's write under way ends
            loseUnsyncedWrites()
            if !failures.isEmpty { return failures }
        }
        // A last life without a crash: recovery must bring back everything acked.
        let power = Power(crashAt: .max, landed: false)
        guard let engine = await start(power) else {
            failures.append("the final restart failed")
            return failures
        }
        await verify(engine)
        await noGarbageKept(engine)
        power.kill()
        for w in wals { w.stop() }
        return failures
    }

    /// After the last recovery and a collection with no grace, every object left in the
    /// bucket (outside `meta/`) holds a range the metadata still references.
    func noGarbageKept(_ engine: StreamEngine) async {
        do {
            // Let the committer finish what recovery queued, then collect.
            try await Task.sleep(for: .milliseconds(20))
            _ = try await engine.collectGarbage(now: clock(), config: collectNow)
            var referenced = Set<String>()
            for s in streams { for r in try await metadata.ranges(streamId: s) { referenced.insert(r.objectKey) } }
            for o in try await bucket.list(prefix: "") where !o.key.contains("/meta/") && !o.key.hasSuffix("/file-wal") && !referenced.contains(o.key) {
                failures.append("garbage kept: \(o.key) is in the bucket but nothing references it")
            }
        } catch {
            failures.append("final collection failed: \(error)")
        }
    }

    func start(_ power: Power) async -> StreamEngine? {
        let store = CrashingObjectStore(base: bucket, power: power)
        let meta = CrashingMetadataStore(base: metadata, power: power)
        var config = StorageConfig()
        config.uploadIntervalMs = Int.random(in: 1...5, using: &rng)
        config.uploadBytes = Int.random(in: 200...4000, using: &rng)
        config.logCacheBytes = Int.random(in: 0...1, using: &rng) == 0 ? 0 : 1 << 20
        do {
            let (cluster, epoch) = try await meta.bootstrap(nodeId: 1)
            let durable = self.durable
            let wal = try walRoot.map { root in
                try FileWAL(root: root, node: 1, epoch: epoch, hook: { operation, path, length in
                    try power.check(operation)
                    if operation == "walSync" { durable.withLockedValue { $0[path] = length } }
                }, testMutations: mutations)
            }
            if let wal { wals.append(wal) }
            let engine = StreamEngine(config: config, objectStore: store, metadata: meta, nodeId: 1, clusterId: cluster,
                                      brokerEpoch: epoch, loop: MultiThreadedEventLoopGroup.singleton.next(), logger: Self.logger,
                                      fileWAL: wal, testMutations: mutations)
            _ = try await engine.recover()
            Task { await engine.runCommitter() }
            _ = try await engine.sweepOrphans()
            for s in streams { try await engine.open(streamId: s) }
            return engine
        } catch {
            if !power.isDead { failures.append("restart failed without a crash: \(error)") }
            return nil
        }
    }

    /// A process that dies at a random request, or (one in three) at the first or second
    /// request of a kind that a random pick rarely reaches.
    func newPower() -> Power {
        if Int.random(in: 0..<3, using: &rng) == 0 {
            let kinds = ["put", "putGathered", "commit", "delete", "commitCompaction", "markGarbage", "dropGarbage"] + (walRoot == nil ? [] : ["walWrite", "walSync", "walDelete"])
            return Power(crashAt: Int.random(in: 1...2, using: &rng), landed: Bool.random(using: &rng),
                         target: kinds[Int.random(in: 0..<kinds.count, using: &rng)])
        }
        return Power(crashAt: Int.random(in: 1...80, using: &rng), landed: Bool.random(using: &rng))
    }

    /// Starts, checks what recovery brought back, then runs a workload until the crash.
    /// Sometimes a successor takes over while this broker keeps running as a zombie that
    /// keeps producing. Returns every process of the life (to record their crash and kill).
    func life() async -> [Power] {
        var power = newPower()
        var powers = [power]
        guard var engine = await start(power) else { return powers }
        await power.uncounted { await verify(engine) }
        guard failures.isEmpty else { return powers }
        var zombie: (engine: StreamEngine, power: Power)?
        for _ in 0..<Int.random(in: 5...30, using: &rng) where !power.isDead {
            switch Int.random(in: 0..<14, using: &rng) {
            case 12 where zombie == nil:
                // A successor (the next broker epoch of this node) takes over; the old broker
                // does not know and keeps going.
                let next = newPower()
                powers.append(next)
                hits["takeover", default: 0] += 1
                guard let successor = await start(next) else { continue }
                await next.uncounted { await verify(successor) }
                guard failures.isEmpty else { return powers }
                zombie = (engine, power)
                (engine, power) = (successor, next)
            case 0:
                await trim(engine)
            case 1, 13:
                _ = try? await engine.compactOnce(config: compaction, now: clock())
            case 2:
                // No grace: a read holding an object's old ranges meets it deleted and must reload.
                _ = try? await engine.collectGarbage(now: clock(), config: collectNow)
            default:
                await appendSome(engine, power)
                if let z = zombie, !z.power.isDead, Bool.random(using: &rng) { await appendSome(z.engine, z.power) }
            }
        }
        return powers
    }

    func appendSome(_ engine: StreamEngine, _ power: Power) async {
        // Several appends at once, to one or more streams: they share WAL objects.
        var tickets: [(Int64, [String], StreamEngine.AppendTicket)] = []
        for _ in 0..<Int.random(in: 1...6, using: &rng) {
            let s = streams[Int.random(in: 0..<streams.count, using: &rng)]
            let values = (0..<Int.random(in: 1...4, using: &rng)).map { _ -> String in
                nextValue += 1
                return "s\(seed)-v\(nextValue)"
            }
            var b = RecordBatchBuilder(baseTimestamp: 1_000_000 + Int64(nextValue))
            for (i, v) in values.enumerated() { b.append(key: nil, value: ByteBuffer(string: v), timestampDelta: Int64(i)) }
            let bytes = b.build()
            let header = try! RecordBatch.validateSingle(bytes)
            tickets.append((s, values, await engine.append(streamId: s, batch: bytes, header: header, timeout: .milliseconds(150))))
        }
        for (s, values, t) in tickets {
            guard case .success(let r)? = await outcome(t, power) else { continue }
            for (i, v) in values.enumerated() {
                let offset = r.baseOffset + Int64(i)
                if let earlier = acked[s]?[offset], earlier != v {
                    failures.append("stream \(s): offset \(offset) acked twice, for \(earlier) and for \(v)")
                }
                acked[s, default: [:]][offset] = v
            }
        }
    }

    /// An append's result; nil once the process has been dead a little while (an ack whose
    /// requests all completed before the crash arrives at once; no other can arrive).
    func outcome(_ t: StreamEngine.AppendTicket, _ power: Power) async -> Result<AppendResult, AppendError>? {
        await withTaskGroup(of: Result<AppendResult, AppendError>?.self) { group in
            group.addTask { await t.result() }
            group.addTask {
                while !power.isDead {
                    do { try await Task.sleep(for: .milliseconds(2)) } catch { return nil }
                }
                try? await Task.sleep(for: .milliseconds(20))
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
    }

    func trim(_ engine: StreamEngine) async {
        let s = streams[Int.random(in: 0..<streams.count, using: &rng)]
        guard let o = engine.offsets(streamId: s), o.highWatermark > o.logStartOffset else { return }
        let to = Int64.random(in: o.logStartOffset...o.highWatermark, using: &rng)
        if let start = try? await engine.advanceLogStart(streamId: s, to: to) {
            trimmed[s] = max(trimmed[s] ?? 0, start)
        }
    }

    /// Every acked record above the acked log start is readable exactly once at its offset;
    /// offsets are contiguous; every object the metadata references exists.
    func verify(_ engine: StreamEngine) async {
        for s in streams {
            guard let o = engine.offsets(streamId: s) else {
                failures.append("stream \(s) not open")
                continue
            }
            if o.logStartOffset < (trimmed[s] ?? 0) { failures.append("stream \(s): log start \(o.logStartOffset) went back below acked trim \(trimmed[s]!)") }
            var seen: [Int64: String] = [:]
            var next = o.logStartOffset
            var first = true
            while next < o.highWatermark {
                let r: ReadResult
                do {
                    r = try await engine.read(streamId: s, offset: next, maxBytes: 1 << 20)
                } catch {
                    failures.append("stream \(s): read at \(next) failed: \(error)")
                    break
                }
                guard !r.batches.isEmpty else {
                    failures.append("stream \(s): nothing read at \(next) below the high watermark \(o.highWatermark)")
                    break
                }
                for batch in r.batches {
                    guard let h = RecordBatchHeader(peeking: batch) else {
                        failures.append("stream \(s): unreadable batch at \(next)")
                        return
                    }
                    if first ? h.baseOffset > next : h.baseOffset != next {
                        failures.append("stream \(s): batch at \(h.baseOffset), expected \(next): offsets not contiguous")
                        return
                    }
                    first = false
                    guard let records = try? Record.decodeAll(batch: batch) else {
                        failures.append("stream \(s): batch at \(h.baseOffset) does not decode")
                        return
                    }
                    for (i, rec) in records.enumerated() {
                        let offset = h.baseOffset + Int64(i)
                        if offset >= o.logStartOffset { seen[offset] = rec.value.map { String(buffer: $0) } ?? "" }
                    }
                    next = h.lastOffset + 1
                }
            }
            for (offset, value) in acked[s] ?? [:] where offset >= o.logStartOffset {
                if seen[offset] != value {
                    failures.append("stream \(s): acked \(value) at \(offset), read \(seen[offset] ?? "nothing")")
                }
            }
            var counts: [String: Int] = [:]
            for v in seen.values { counts[v, default: 0] += 1 }
            for (v, n) in counts where n > 1 { failures.append("stream \(s): \(v) read \(n) times") }
            do {
                for range in try await metadata.ranges(streamId: s) where try await bucket.head(range.objectKey) == nil {
                    failures.append("stream \(s): object \(range.objectKey) is referenced but missing")
                }
            } catch {
                failures.append("listing ranges failed: \(error)")
            }
        }
    }
}
