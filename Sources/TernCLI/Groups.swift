import ArgumentParser
import KafkaClient
import KafkaProtocol

/// `tern groups …`: consumer group administration over the Kafka protocol, like
/// kafka-consumer-groups.sh (whose output layouts these commands print).
struct Groups: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups",
        abstract: "List, describe, reset the offsets of, and delete consumer groups on a running broker.",
        subcommands: [List.self, Describe.self, ResetOffsets.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List groups: id, state and protocol type.",
            discussion: """
            Asks every broker (ListGroups) and prints GROUP STATE PROTOCOL-TYPE, one group a \
            line, sorted. --state keeps the groups in the given states (repeatable or \
            comma-separated, any case): \(GroupDescription.consumerGroupStates.joined(separator: ", ")). \
            A group that only holds committed offsets (its consumers use assign(), not subscribe()) \
            has no protocol type, shown as '-'.
            """)

        @OptionGroup var client: ClientOptions
        @Option(name: .customLong("state"), help: ArgumentHelp("Only groups in this state (repeatable, or comma-separated).", valueName: "state"))
        var stateOptions: [String] = []

        /// Kafka's spellings of the requested states.
        func states() throws -> [String] {
            var out: [String] = []
            for item in stateOptions.flatMap({ $0.split(separator: ",", omittingEmptySubsequences: false) }) {
                let wanted = item.filter { !$0.isWhitespace }.lowercased()
                guard let state = GroupDescription.consumerGroupStates.first(where: { $0.lowercased() == wanted }) else {
                    throw ValidationError("--state: '\(item)' is not a group state; expected one of \(GroupDescription.consumerGroupStates.joined(separator: ", "))")
                }
                if !out.contains(state) { out.append(state) }
            }
            return out
        }

        func validate() throws { _ = try states() }

        func run() async throws {
            let states = try states()
            let (groups, errors) = try await client.withClient { try await $0.listGroups(states: states) }
            var table = TextTable(["GROUP", "STATE", "PROTOCOL-TYPE"])
            for g in groups { table.append([g.groupId, g.state ?? "-", g.protocolType]) }
            print(table.render(), terminator: "")
            if !errors.isEmpty { throw CLIError(errors.map(\.description).joined(separator: "\n")) }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Describe groups: state, committed offsets, lag and members.",
            discussion: """
            For each group, up to three tables, a blank line apart. The group: GROUP STATE \
            PROTOCOL-TYPE ASSIGNMENT-STRATEGY #MEMBERS COORDINATOR. Its partitions, as \
            kafka-consumer-groups.sh --describe prints them: GROUP TOPIC PARTITION CURRENT-OFFSET \
            LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID, a line for each partition a member \
            holds and each partition with a committed offset; LAG is the log end offset minus \
            the committed offset; '-' marks what is unknown or absent. When the group has \
            members, one line per member: GROUP CONSUMER-ID GROUP-INSTANCE-ID HOST CLIENT-ID \
            #PARTITIONS ASSIGNMENT (topic:partitions, decoded from the consumer protocol). \
            --verbose adds the committed offsets' LEADER-EPOCH and METADATA. A group that does \
            not exist is an error (exit status 1).
            """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "Groups to describe.") var groups: [String] = []
        @Flag(name: .customLong("all-groups"), help: "Describe every group.") var allGroups = false
        @Flag(help: "Also show each committed offset's leader epoch and metadata.") var verbose = false

        func validate() throws {
            if groups.isEmpty && !allGroups { throw ValidationError("name at least one group, or give --all-groups") }
            if !groups.isEmpty && allGroups { throw ValidationError("--all-groups and group names exclude each other") }
        }

        func run() async throws {
            var errors: [String] = []
            try await client.withClient { client in
                var names = groups
                if allGroups {
                    let (listed, listErrors) = try await client.listGroups()
                    names = listed.map(\.groupId)
                    errors += listErrors.map(\.description)
                }
                var seen = Set<String>()
                var first = true
                for group in names where seen.insert(group).inserted {
                    do {
                        let text = try await describe(group, client)
                        if !first { print() }
                        first = false
                        print(text, terminator: "")
                    } catch let e as KafkaClientError where e.code == .kafka {
                        errors.append(e.description)
                    } catch let e as CLIError {
                        errors.append(e.description)
                    }
                }
            }
            if !errors.isEmpty { throw CLIError(errors.joined(separator: "\n")) }
        }

        /// The tables of one group; notes go to standard error as they come.
        private func describe(_ group: String, _ client: KafkaClient) async throws -> String {
            let d: GroupDescription
            do {
                d = try await client.describeGroup(group)
            } catch let e as KafkaClientError where e.kafkaErrorCode == ErrorCode.groupIdNotFound.rawValue {
                throw KafkaClientError(kafka: ErrorCode.groupIdNotFound.rawValue, "cannot describe group '\(group)'", brokerMessage: "the group does not exist")
            }
            // Kafka's coordinator reports a group it does not know as Dead (DescribeGroups < v6).
            if d.state == "Dead" { throw CLIError("group '\(group)' does not exist (its coordinator reports it Dead)") }
            let committed = try await client.committedOffsets(group: group)
            let partitions = Set(committed.keys).union(d.members.flatMap(\.assignedPartitions)).sorted()
            var logEnd: [TopicPartition: Int64] = [:]
            if !partitions.isEmpty {
                for (tp, o) in try await client.listOffsets(partitions, timestamp: KafkaClient.latestTimestamp).sorted(by: { $0.key < $1.key }) {
                    if o.errorCode == 0 && o.offset >= 0 {
                        logEnd[tp] = o.offset
                    } else {
                        writeStderr("Warning: cannot find the log end offset of \(tp): \(KafkaErrorCodes.name(o.errorCode))")
                    }
                }
            }
            switch d.state {
            case "Empty": writeStderr("Consumer group '\(group)' has no active members.")
            case "PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling": writeStderr("Warning: Consumer group '\(group)' is rebalancing.")
            default: break
            }

            var state = TextTable(["GROUP", "STATE", "PROTOCOL-TYPE", "ASSIGNMENT-STRATEGY", "#MEMBERS", "COORDINATOR"])
            state.append([group, d.state, d.protocolType, d.protocolName, String(d.members.count), d.coordinator.map { "\($0)" } ?? ""])
            var out = state.render()

            let rows = GroupOffsetRow.rows(group: d, committed: committed, logEndOffsets: logEnd)
            if !rows.isEmpty {
                var header = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
                if verbose {
                    header.insert("LEADER-EPOCH", at: 3)
                    header.append("METADATA")
                }
                var table = TextTable(header)
                table.minWidths[2] = 10
                for r in rows {
                    var cells = [group, r.partition.topic, String(r.partition.partition), r.committed.map { String($0.offset) },
                                 r.logEndOffset.map(String.init), r.lag.map(String.init),
                                 r.member?.memberId, r.member?.host, r.member?.clientId]
                    if verbose {
                        cells.insert(r.committed?.leaderEpoch.map(String.init), at: 3)
                        cells.append(r.committed?.metadata)
                    }
                    table.append(cells)
                }
                out += "\n" + table.render()
            }

            if !d.members.isEmpty {
                var table = TextTable(["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"])
                for m in d.membersByAssignmentSize {
                    var count: String?
                    switch m.assignment {
                    case .consumer, .none: count = String(m.assignedPartitions.count)
                    case .undecodable(_, let reason):
                        writeStderr("Warning: the assignment of member \(m.memberId) of group '\(group)' is not a consumer-protocol assignment: \(reason)")
                    case .otherProtocol: break
                    }
                    table.append([group, m.memberId, m.groupInstanceId, m.host, m.clientId, count, m.assignment.summary])
                }
                out += "\n" + table.render()
            }
            return out
        }
    }

    struct ResetOffsets: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-offsets",
            abstract: "Reset a group's committed offsets (a dry run unless --execute).",
            discussion: """
            Prints the plan, GROUP TOPIC PARTITION NEW-OFFSET, as kafka-consumer-groups.sh \
            --reset-offsets does; with --execute it also commits it (OffsetCommit with generation \
            -1 and no member id, as Kafka's admin client commits). Like Kafka's tool it refuses a \
            group that is not inactive: the group must be Empty, without members (or not exist \
            yet); a coordinator that refuses the commit because members joined meanwhile \
            (UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, ...) is reported as such. \
            --topic T resets every partition of T, --topic T:0,2 only those (repeatable); \
            --all-topics every partition the group has a committed offset for. Exactly one of \
            --to-earliest, --to-latest, --to-offset N, --shift-by N (from the committed offset; \
            negative moves back), or --to-datetime YYYY-MM-DDTHH:mm:SS[.sss][Z|+hh:mm|-hh:mm] \
            (the first offset whose record is at least that recent; no zone means UTC, as in \
            Kafka; a partition with no such record goes to its end). An offset beyond either end \
            of a partition is moved to that end, with a warning.
            """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "The group whose offsets to reset.") var group: String
        @Option(name: .customLong("topic"), help: ArgumentHelp("A topic, or topic:partition[,partition...] (repeatable).", valueName: "topic[:partitions]"))
        var topics: [String] = []
        @Flag(name: .customLong("all-topics"), help: "Every partition the group has a committed offset for.") var allTopics = false
        @Flag(name: .customLong("to-earliest"), help: "Reset to each partition's log start offset.") var toEarliest = false
        @Flag(name: .customLong("to-latest"), help: "Reset to each partition's log end offset.") var toLatest = false
        @Option(name: .customLong("to-datetime"), help: ArgumentHelp("Reset to the first offset at or after this time (ISO 8601).", valueName: "datetime"))
        var toDatetime: String?
        @Option(name: .customLong("to-offset"), parsing: .unconditional, help: ArgumentHelp("Reset to this offset.", valueName: "offset"))
        var toOffset: String?
        @Option(name: .customLong("shift-by"), parsing: .unconditional, help: ArgumentHelp("Move each committed offset by N (may be negative).", valueName: "n"))
        var shiftBy: String?
        @Flag(name: .customLong("dry-run"), help: "Only print the plan (the default).") var dryRun = false
        @Flag(help: "Commit the new offsets.") var execute = false

        enum Scenario {
            case earliest, latest, offset(Int64), shift(Int64), datetime(Int64)
        }

        func scenario() throws -> Scenario {
            var chosen: [Scenario] = []
            if toEarliest { chosen.append(.earliest) }
            if toLatest { chosen.append(.latest) }
            if let toOffset {
                guard let n = Int64(toOffset), n >= 0 else { throw ValidationError("--to-offset: expected an offset (0 or more), got '\(toOffset)'") }
                chosen.append(.offset(n))
            }
            if let shiftBy {
                guard let n = Int64(shiftBy) else { throw ValidationError("--shift-by: expected a whole number, got '\(shiftBy)'") }
                chosen.append(.shift(n))
            }
            if let toDatetime {
                guard let ms = parseDateTime(toDatetime) else {
                    throw ValidationError("--to-datetime: expected YYYY-MM-DDTHH:mm:SS[.sss][Z|+hh:mm|-hh:mm], got '\(toDatetime)'")
                }
                chosen.append(.datetime(ms))
            }
            guard chosen.count == 1 else {
                throw ValidationError("give exactly one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime")
            }
            return chosen[0]
        }

        /// `topic` (every partition, nil) or `topic:0,2`.
        static func parseTopic(_ arg: String) throws -> (topic: String, partitions: [Int32]?) {
            let parts = arg.split(separator: ":", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), !parts[0].isEmpty else {
                throw ValidationError("--topic: expected TOPIC or TOPIC:PARTITION[,PARTITION...], got '\(arg)'")
            }
            guard parts.count == 2 else { return (String(parts[0]), nil) }
            var partitions: [Int32] = []
            for p in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
                guard let n = Int32(p), n >= 0 else {
                    throw ValidationError("--topic: '\(p)' in '\(arg)' is not a partition number")
                }
                partitions.append(n)
            }
            return (String(parts[0]), partitions)
        }

        func validate() throws {
            _ = try scenario()
            if topics.isEmpty && !allTopics { throw ValidationError("give --topic TOPIC[:PARTITIONS] (repeatable) or --all-topics") }
            if !topics.isEmpty && allTopics { throw ValidationError("--topic and --all-topics exclude each other") }
            for t in topics { _ = try Self.parseTopic(t) }
            if dryRun && execute { throw ValidationError("--dry-run and --execute exclude each other") }
        }

        func run() async throws {
            let scenario = try scenario()
            if !dryRun && !execute {
                writeStderr("WARN: No action will be performed as the --execute option is missing. Add --dry-run to keep this behaviour without the warning.")
            }
            let plan = try await client.withClient { client in
                do {
                    let d = try await client.describeGroup(group)
                    guard d.isInactive else {
                        throw CLIError("Assignments can only be reset if the group '\(group)' is inactive, but the current state is \(d.state) (\(d.members.count) member\(d.members.count == 1 ? "" : "s")). Stop its consumers first.")
                    }
                } catch let e as KafkaClientError where e.kafkaErrorCode == ErrorCode.groupIdNotFound.rawValue {
                    // No such group yet: committing creates it, as Kafka's tool allows.
                }
                let committed = try await client.committedOffsets(group: group)
                let partitions = try await partitionsToReset(client, committed)
                let plan = try await newOffsets(client, scenario, partitions, committed)
                if execute { try await commit(client, plan) }
                return plan
            }
            var table = TextTable(["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])
            table.minWidths[2] = 10
            for (tp, offset) in plan { table.append([group, tp.topic, String(tp.partition), String(offset)]) }
            print(table.render(), terminator: "")
        }

        private func partitionsToReset(_ client: KafkaClient, _ committed: [TopicPartition: CommittedOffset]) async throws -> [TopicPartition] {
            if allTopics {
                guard !committed.isEmpty else { throw CLIError("group '\(group)' has no committed offsets: --all-topics finds nothing to reset") }
                return committed.keys.sorted()
            }
            let specs = try topics.map(Self.parseTopic)
            let metadata = try await client.metadata(topics: Set(specs.map(\.topic)).sorted())
            var out = Set<TopicPartition>()
            var missing: [String] = []
            for (topic, partitions) in specs {
                let t = try topicMetadata(metadata, topic, action: "reset offsets on")
                let existing = Set(t.partitions.map(\.partitionIndex))
                for p in partitions ?? existing.sorted() {
                    if existing.contains(p) { out.insert(TopicPartition(topic, p)) } else { missing.append("\(topic)-\(p)") }
                }
            }
            if !missing.isEmpty {
                throw KafkaClientError(kafka: ErrorCode.unknownTopicOrPartition.rawValue, "cannot reset offsets of group '\(group)'",
                                       brokerMessage: "partition\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")) \(missing.count == 1 ? "does" : "do") not exist")
            }
            return out.sorted()
        }

        /// ListOffsets at `timestamp` for every partition, or an error naming the first that failed.
        private func offsets(_ client: KafkaClient, _ partitions: [TopicPartition], _ timestamp: Int64, _ what: String) async throws -> [TopicPartition: Int64] {
            let listed = try await client.listOffsets(partitions, timestamp: timestamp)
            var out: [TopicPartition: Int64] = [:]
            for tp in partitions {
                guard let o = listed[tp], o.errorCode == 0 else {
                    throw KafkaClientError(kafka: listed[tp]?.errorCode ?? ErrorCode.unknownServerError.rawValue, "cannot find the \(what) of \(tp)")
                }
                out[tp] = o.offset
            }
            return out
        }

        private func newOffsets(_ client: KafkaClient, _ scenario: Scenario, _ partitions: [TopicPartition],
                                _ committed: [TopicPartition: CommittedOffset]) async throws -> [(TopicPartition, Int64)] {
            switch scenario {
            case .earliest:
                let start = try await offsets(client, partitions, KafkaClient.earliestTimestamp, "log start offset")
                return partitions.map { ($0, start[$0]!) }
            case .latest:
                let end = try await offsets(client, partitions, KafkaClient.latestTimestamp, "log end offset")
                return partitions.map { ($0, end[$0]!) }
            case .datetime(let ms):
                let found = try await offsets(client, partitions, ms, "offset at \(toDatetime ?? "")")
                let noRecord = partitions.filter { found[$0]! < 0 }
                let end = noRecord.isEmpty ? [:] : try await offsets(client, noRecord, KafkaClient.latestTimestamp, "log end offset")
                return partitions.map { tp in
                    if let e = end[tp] {
                        writeStderr("Warning: \(tp) has no record at or after \(toDatetime ?? ""); using its log end offset \(e).")
                        return (tp, e)
                    }
                    return (tp, found[tp]!)
                }
            case .offset(let n):
                return try await clamped(client, partitions.map { ($0, n) })
            case .shift(let n):
                return try await clamped(client, try partitions.map { tp in
                    guard let c = committed[tp] else {
                        throw CLIError("cannot shift the offset of \(tp): group '\(group)' has no committed offset for it")
                    }
                    let (sum, overflow) = c.offset.addingReportingOverflow(n)
                    return (tp, overflow ? (n > 0 ? Int64.max : 0) : sum)
                })
            }
        }

        /// Moves offsets beyond either end of their partition to that end, as Kafka's tool
        /// does (GroupOffsetsResetter.checkOffsetsRange), with its warning.
        private func clamped(_ client: KafkaClient, _ wanted: [(TopicPartition, Int64)]) async throws -> [(TopicPartition, Int64)] {
            let partitions = wanted.map(\.0)
            let start = try await offsets(client, partitions, KafkaClient.earliestTimestamp, "log start offset")
            let end = try await offsets(client, partitions, KafkaClient.latestTimestamp, "log end offset")
            return wanted.map { tp, n in
                if n > end[tp]! {
                    writeStderr("Warning: new offset (\(n)) is higher than the latest offset of \(tp); it will be set to \(end[tp]!).")
                    return (tp, end[tp]!)
                }
                if n < start[tp]! {
                    writeStderr("Warning: new offset (\(n)) is lower than the earliest offset of \(tp); it will be set to \(start[tp]!).")
                    return (tp, start[tp]!)
                }
                return (tp, n)
            }
        }

        /// Errors with which a coordinator refuses an admin commit because the group has members.
        static let activeGroupErrors: Set<Int16> = [
            ErrorCode.unknownMemberId.rawValue, ErrorCode.illegalGeneration.rawValue, 27,  // REBALANCE_IN_PROGRESS
            110, 113,  // FENCED_MEMBER_EPOCH, STALE_MEMBER_EPOCH (KIP-848 groups)
        ]

        private func commit(_ client: KafkaClient, _ plan: [(TopicPartition, Int64)]) async throws {
            let codes = try await client.commitOffsets(group: group, Dictionary(uniqueKeysWithValues: plan))
            let failed = Dictionary(grouping: codes.filter { $0.value != 0 }.keys, by: { codes[$0]! })
            guard !failed.isEmpty else { return }
            throw CLIError(failed.keys.sorted().map { code in
                let hint = Self.activeGroupErrors.contains(code)
                    ? "the group has active members; offsets can only be reset while it is inactive: stop its consumers first" : nil
                return "\(KafkaClientError(kafka: code, "cannot commit the new offsets of group '\(group)' for \(failed[code]!.sorted().map(\.description).joined(separator: ", "))", brokerMessage: hint))"
            }.joined(separator: "\n"))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete groups and their committed offsets.",
            discussion: """
            Prints 'Deleted group NAME.' for each. A group with members cannot be deleted \
            (NON_EMPTY_GROUP); one that does not exist fails with GROUP_ID_NOT_FOUND. Exits 1 if \
            any group could not be deleted.
            """)

        @OptionGroup var client: ClientOptions
        @Argument(help: "Groups to delete.") var groups: [String]

        func run() async throws {
            let codes = try await client.withClient { try await $0.deleteGroups(groups) }
            var errors: [String] = []
            var seen = Set<String>()
            for group in groups where seen.insert(group).inserted {
                let code = codes[group] ?? ErrorCode.unknownServerError.rawValue
                if code == 0 {
                    print("Deleted group \(group).")
                    continue
                }
                let hint: String? = switch code {
                case ErrorCode.nonEmptyGroup.rawValue: "the group has active members"
                case ErrorCode.groupIdNotFound.rawValue: "the group does not exist"
                default: nil
                }
                errors.append("\(KafkaClientError(kafka: code, "cannot delete group '\(group)'", brokerMessage: hint))")
            }
            if !errors.isEmpty { throw CLIError(errors.joined(separator: "\n")) }
        }
    }
}

/// Rows under a header, each column padded to its widest cell (at least its minimum width,
/// 15 unless set), one space apart, the last column unpadded: kafka-consumer-groups.sh's
/// layout. Absent and empty cells print as '-', so every line splits into the same columns.
struct TextTable {
    let header: [String]
    var rows: [[String]] = []
    var minWidths: [Int]

    init(_ header: [String]) {
        self.header = header
        self.minWidths = Array(repeating: 15, count: header.count)
    }

    mutating func append(_ cells: [String?]) {
        precondition(cells.count == header.count)
        rows.append(cells.map { $0.flatMap { $0.isEmpty ? nil : $0 } ?? "-" })
    }

    func render() -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.reduce(minWidths[i]) { max($0, $1[i].count) } }
        var out = ""
        for row in all {
            for (i, cell) in row.enumerated() {
                out += cell
                if i < row.count - 1 { out += String(repeating: " ", count: widths[i] - cell.count + 1) }
            }
            out += "\n"
        }
        return out
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:mm:SS[.fraction][Z|±HH:mm|±HHmm|±HH]`: the
/// forms Kafka's `Utils.getDateTime` reads (which also wants the fraction; here it may be
/// left out). No zone means UTC, as in Kafka. nil if malformed or not a real date.
func parseDateTime(_ text: String) -> Int64? {
    let s = Array(text.utf8)
    func number(_ at: Int, _ count: Int) -> Int? {
        guard at + count <= s.count else { return nil }
        var v = 0
        for c in s[at..<at + count] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else { return nil }
            v = v * 10 + Int(c - UInt8(ascii: "0"))
        }
        return v
    }
    func char(_ at: Int, _ c: Unicode.Scalar) -> Bool { at < s.count && s[at] == UInt8(ascii: c) }
    guard let year = number(0, 4), char(4, "-"), let month = number(5, 2), char(7, "-"), let day = number(8, 2), char(10, "T"),
          let hour = number(11, 2), char(13, ":"), let minute = number(14, 2), char(16, ":"), let second = number(17, 2) else { return nil }
    var i = 19
    var millis = 0
    if char(i, ".") {
        i += 1
        let start = i
        while i < s.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(s[i]) { i += 1 }
        guard (1...9).contains(i - start) else { return nil }
        for k in 0..<3 { millis = millis * 10 + (start + k < i ? Int(s[start + k] - UInt8(ascii: "0")) : 0) }
    }
    var zoneMinutes = 0
    if char(i, "Z") {
        i += 1
    } else if char(i, "+") || char(i, "-") {
        let sign = char(i, "-") ? -1 : 1
        i += 1
        guard let hh = number(i, 2) else { return nil }
        i += 2
        var mm = 0
        if char(i, ":") {
            guard let m = number(i + 1, 2) else { return nil }
            mm = m
            i += 3
        } else if let m = number(i, 2) {
            mm = m
            i += 2
        }
        guard hh <= 18, mm < 60 else { return nil }
        zoneMinutes = sign * (hh * 60 + mm)
    }
    guard i == s.count else { return nil }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    guard (1...12).contains(month), (1...monthDays[month - 1]).contains(day), hour < 24, minute < 60, second < 60 else { return nil }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's days_from_civil).
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    let days = era * 146_097 + dayOfEra - 719_468
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - zoneMinutes * 60
    return Int64(seconds) * 1_000 + Int64(millis)
}
