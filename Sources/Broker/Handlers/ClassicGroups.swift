import KafkaProtocol

/// Classic group membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.
///
/// Membership needs the group coordinator's state machine (issue 7). Until it exists these
/// answer as Kafka's `GroupCoordinatorService` does while it is not active: every call
/// returns COORDINATOR_NOT_AVAILABLE, in the shape of the request's `getErrorResponse`
/// (JoinGroupRequest, SyncGroupRequest, HeartbeatRequest, LeaveGroupRequest). Clients treat
/// the error as retriable: they look the coordinator up again (FindCoordinator finds this
/// broker, which keeps standalone offsets) and retry after a backoff, so `subscribe()` waits
/// instead of failing. Offsets of `assign()` consumers (Offsets.swift) do not need membership.
extension Broker {
    func joinGroup(_ r: JoinGroupRequest, version: Int16) -> JoinGroupResponse {
        var resp = JoinGroupResponse()
        resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
        resp.generationId = -1  // UNKNOWN_GENERATION_ID
        resp.leader = ""  // UNKNOWN_MEMBER_ID
        resp.memberId = ""
        // JoinGroupRequest.getErrorResponse: a null protocol name from v7 (nullable there), "" before.
        resp.protocolName = version >= 7 ? nil : ""
        return resp
    }

    func syncGroup(_ r: SyncGroupRequest, version: Int16) -> SyncGroupResponse {
        var resp = SyncGroupResponse()
        // KafkaApis.handleSyncGroupRequest checks this before asking the coordinator: from v5
        // the protocol type and name are mandatory.
        if version >= 5 && (r.protocolType == nil || r.protocolName == nil) {
            resp.errorCode = ErrorCode.inconsistentGroupProtocol.rawValue
        } else {
            resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
        }
        return resp
    }

    func heartbeat(_ r: HeartbeatRequest) -> HeartbeatResponse {
        var resp = HeartbeatResponse()
        resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
        return resp
    }

    func leaveGroup(_ r: LeaveGroupRequest) -> LeaveGroupResponse {
        // LeaveGroupRequest.getErrorResponse: the top-level error and no member results.
        var resp = LeaveGroupResponse()
        resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
        return resp
    }
}
