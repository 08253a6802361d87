import KafkaProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs the group coordinator (classic groups and KIP-848 consumer groups): holds
/// `GroupCoordinatorStateMachine` behind a lock,
/// feeds it requests and the clock, and carries out what it says. A JoinGroup or SyncGroup
/// that must wait (for the join phase, for the leader's assignment) gets a promise, answered
/// when the machine names its token; one timer, armed on an event loop for the machine's
/// earliest deadline, feeds `tick` back with the current time.
///
/// Membership lives only here, in memory: after a restart clients rejoin (their old member
/// ids get UNKNOWN_MEMBER_ID). Committed offsets are in the metadata store.
final class GroupCoordinator: Sendable {
    enum Reply: Sendable {
        case join(JoinGroupResponse)
        case sync(SyncGroupResponse)
    }

    private struct Waiter {
        var promise: EventLoopPromise<Reply>
        var isJoin: Bool
    }

    private struct State {
        var machine: GroupCoordinatorStateMachine
        var waiting: [GroupRequestToken: Waiter] = [:]
        var nextToken: GroupRequestToken = 1
        /// The deadline the scheduled timer task is armed for.
        var armed: Int64?
        var closed = false
    }

    private let state: NIOLockedValueBox<State>
    private let eventLoop: any EventLoop
    private let logger: Logger

    init(config: GroupCoordinatorConfiguration, logger: Logger,
         eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.any()) {
        self.state = NIOLockedValueBox(State(machine: GroupCoordinatorStateMachine(config: config)))
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// The machine's clock: monotonic milliseconds, the same clock NIO schedules timers on.
    static func nowMs() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    // MARK: requests

    func join(_ r: JoinGroupRequest, version: Int16, clientId: String, clientHost: String) -> EventLoopFuture<Reply> {
        let promise = eventLoop.makePromise(of: Reply.self)
        let uniqueId = Self.javaUUIDString(KafkaUUID.random())
        let ran: Void? = modify(parking: promise, isJoin: true) { m, now, token in
            ((), m.joinGroup(r, GroupJoinContext(token: token, apiVersion: version, clientId: clientId,
                                                 clientHost: clientHost, uniqueId: uniqueId), now: now))
        }
        if ran == nil { promise.succeed(.join(ClassicGroup.joinError(.notCoordinator, memberId: r.memberId))) }
        return promise.futureResult
    }

    func sync(_ r: SyncGroupRequest) -> EventLoopFuture<Reply> {
        let promise = eventLoop.makePromise(of: Reply.self)
        let ran: Void? = modify(parking: promise, isJoin: false) { m, now, token in
            ((), m.syncGroup(r, token: token, now: now))
        }
        if ran == nil { promise.succeed(.sync(ClassicGroup.syncError(.notCoordinator))) }
        return promise.futureResult
    }

    func heartbeat(_ r: HeartbeatRequest) -> ErrorCode {
        modify { m, now, _ in m.heartbeat(r, now: now) } ?? .notCoordinator
    }

    func leave(groupId: String, members: [GroupCoordinatorStateMachine.LeavingMember]) -> (error: ErrorCode, members: [ErrorCode]) {
        modify { m, now, _ in
            let (e, codes, outputs) = m.leaveGroup(groupId: groupId, members: members, now: now)
            return ((e, codes), outputs)
        } ?? (.notCoordinator, [])
    }

    func validateOffsetCommit(groupId: String, memberId: String, instanceId: String?, generation: Int32, apiVersion: Int16) -> ErrorCode? {
        modify { m, now, _ in
            (m.validateOffsetCommit(groupId: groupId, memberId: memberId, instanceId: instanceId, generation: generation,
                                    apiVersion: apiVersion, now: now), [])
        } ?? .notCoordinator
    }

    func validateTxnOffsetCommit(groupId: String, memberId: String, instanceId: String?, generation: Int32) -> ErrorCode? {
        state.withLockedValue { $0.machine.validateTxnOffsetCommit(groupId: groupId, memberId: memberId, instanceId: instanceId,
                                                                    generation: generation) }
    }

    /// ConsumerGroupHeartbeat (KIP-848): answered at once; timers as for classic groups.
    func consumerHeartbeat(_ r: ConsumerGroupHeartbeatRequest, version: Int16, clientId: String, clientHost: String,
                           topics: [ConsumerGroupTopic]) -> ConsumerGroupHeartbeatResponse {
        let ctx = GroupCoordinatorStateMachine.HeartbeatContext(apiVersion: version, clientId: clientId, clientHost: clientHost,
                                                                uniqueId: Self.javaUUIDString(KafkaUUID.random()), topics: topics)
        return modify { m, now, _ in m.consumerGroupHeartbeat(r, ctx, now: now) }
            ?? GroupCoordinatorStateMachine.heartbeatError(.notCoordinator, "The coordinator is shutting down.")
    }

    func consumerDescribe(_ groupId: String, topicNames: [KafkaUUID: String]) -> ConsumerGroupDescribeResponse.DescribedGroup {
        state.withLockedValue { $0.machine.consumerGroupDescribe(groupId, topicNames: topicNames) }
    }

    func validateOffsetFetch(groupId: String, memberId: String?, memberEpoch: Int32) -> ErrorCode? {
        state.withLockedValue { $0.machine.validateOffsetFetch(groupId: groupId, memberId: memberId, memberEpoch: memberEpoch) }
    }

    // MARK: administration

    /// The groups held here (not those that exist only through committed offsets).
    func listed() -> [(groupId: String, protocolType: String, state: String)] {
        state.withLockedValue { s in
            (s.machine.groups.values.map { ($0.groupId, $0.protocolType ?? "", $0.state.rawValue) }
                + s.machine.consumerGroups.values.map { ($0.groupId, "consumer", $0.state.rawValue) })
                .sorted { $0.0 < $1.0 }
        }
    }

    func describe(_ groupId: String, topicNames: [KafkaUUID: String]) -> DescribeGroupsResponse.DescribedGroup? {
        state.withLockedValue {
            $0.machine.groups[groupId]?.describe() ?? $0.machine.consumerGroups[groupId]?.describeClassic(topicNames: topicNames)
        }
    }

    func delete(_ groupId: String) -> GroupCoordinatorStateMachine.DeleteCheck {
        state.withLockedValue { $0.machine.deleteGroup(groupId) }
    }

    func offsetExpiry(_ groupId: String) -> GroupCoordinatorStateMachine.OffsetExpiry? {
        state.withLockedValue { $0.machine.offsetExpiry(groupId) }
    }

    func dropIfEmpty(_ groupId: String) -> Bool {
        state.withLockedValue { $0.machine.dropIfEmpty(groupId) }
    }

    func offsetDeleteCheck(_ groupId: String) -> GroupCoordinatorStateMachine.OffsetDeleteCheck {
        state.withLockedValue { $0.machine.offsetDeleteCheck(groupId) }
    }

    /// On shutdown: every group is unloaded and every parked request answered NOT_COORDINATOR
    /// (Kafka's onUnloaded), so no connection waits on a rebalance that will not finish.
    func shutdown() {
        let completions = state.withLockedValue { s -> [(EventLoopPromise<Reply>, Reply)] in
            s.closed = true
            var done = Self.resolve(s.machine.unloadAll(), &s.waiting).done
            for (_, w) in s.waiting {
                done.append((w.promise, w.isJoin ? .join(ClassicGroup.joinError(.notCoordinator, memberId: ""))
                                                 : .sync(ClassicGroup.syncError(.notCoordinator))))
            }
            s.waiting.removeAll()
            return done
        }
        for (p, r) in completions { p.succeed(r) }
    }

    // MARK: running the machine

    /// Runs one event under the lock; afterwards (lock released) logs, answers parked requests
    /// and arms the timer. Nil once shut down.
    private func modify<T>(parking promise: EventLoopPromise<Reply>? = nil, isJoin: Bool = false,
                           _ body: (inout GroupCoordinatorStateMachine, Int64, GroupRequestToken) -> (T, [GroupOutput])) -> T? {
        let now = Self.nowMs()
        let result = state.withLockedValue { s -> (T, [(EventLoopPromise<Reply>, Reply)], [String], Int64?)? in
            if s.closed { return nil }
            let token = s.nextToken
            s.nextToken &+= 1
            if let promise { s.waiting[token] = Waiter(promise: promise, isJoin: isJoin) }
            let (value, outputs) = body(&s.machine, now, token)
            let (done, logs) = Self.resolve(outputs, &s.waiting)
            return (value, done, logs, Self.armIfNeeded(&s))
        }
        guard let (value, done, logs, arm) = result else { return nil }
        for line in logs { logger.info("\(line)") }
        for (p, r) in done { p.succeed(r) }
        if let arm { schedule(arm) }
        return value
    }

    /// Takes the promises the outputs answer out of `waiting`; returns them with their answers,
    /// and the lines to log.
    private static func resolve(_ outputs: [GroupOutput], _ waiting: inout [GroupRequestToken: Waiter])
        -> (done: [(EventLoopPromise<Reply>, Reply)], logs: [String]) {
        var done: [(EventLoopPromise<Reply>, Reply)] = []
        var logs: [String] = []
        for o in outputs {
            switch o {
            case .join(let t, let r): if let w = waiting.removeValue(forKey: t) { done.append((w.promise, .join(r))) }
            case .sync(let t, let r): if let w = waiting.removeValue(forKey: t) { done.append((w.promise, .sync(r))) }
            case .log(let line): logs.append(line)
            }
        }
        return (done, logs)
    }

    private static func armIfNeeded(_ s: inout State) -> Int64? {
        guard let next = s.machine.nextDeadline else { return nil }
        if let armed = s.armed, armed <= next { return nil }
        s.armed = next
        return next
    }

    private func schedule(_ deadlineMs: Int64) {
        eventLoop.scheduleTask(deadline: .uptimeNanoseconds(UInt64(max(deadlineMs, 0)) * 1_000_000)) { self.fire() }
    }

    /// A timer task ran: let the machine fire what is due, then arm for the next deadline.
    private func fire() {
        let now = Self.nowMs()
        let (done, logs, arm) = state.withLockedValue { s -> ([(EventLoopPromise<Reply>, Reply)], [String], Int64?) in
            if let armed = s.armed, armed <= now { s.armed = nil }
            if s.closed { return ([], [], nil) }
            let (done, logs) = Self.resolve(s.machine.tick(now: now), &s.waiting)
            return (done, logs, Self.armIfNeeded(&s))
        }
        for line in logs { logger.info("\(line)") }
        for (p, r) in done { p.succeed(r) }
        if let arm { schedule(arm) }
    }

    /// Java's `UUID.toString()` form, as Kafka's generated member ids use.
    static func javaUUIDString(_ u: KafkaUUID) -> String {
        let hex = u.bytes.map { b in String(b, radix: 16).count == 1 ? "0" + String(b, radix: 16) : String(b, radix: 16) }.joined()
        var out = ""
        for (i, c) in hex.enumerated() {
            if i == 8 || i == 12 || i == 16 || i == 20 { out.append("-") }
            out.append(c)
        }
        return out
    }
}
