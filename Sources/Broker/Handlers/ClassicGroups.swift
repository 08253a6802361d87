import KafkaProtocol

/// Classic group membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, answered by the
/// group coordinator (`Groups/`). JoinGroup and SyncGroup may wait for the rest of the group
/// (the join phase, the leader's assignment): their response task completes when the
/// coordinator answers, and the connection keeps reading meanwhile (responses still go out
/// in request order).
extension Broker {
    func joinGroup(_ r: JoinGroupRequest, header: RequestHeader, clientHost: String) -> Outcome {
        let v = header.apiVersion
        let answer = groups.join(r, version: v, clientId: header.clientId ?? "", clientHost: clientHost)
        return .respond(.task {
            var resp: JoinGroupResponse
            if case .join(let j)? = try? await answer.get() {
                resp = j
            } else {
                resp = ClassicGroup.joinError(.coordinatorNotAvailable, memberId: r.memberId)
            }
            // JoinGroupResponse(data, version): the protocol name is "" before v7 and null (not "") from v7.
            if v < 7 && resp.protocolName == nil { resp.protocolName = "" }
            if v >= 7 && resp.protocolName == "" { resp.protocolName = nil }
            return self.encode(header, resp)
        })
    }

    func syncGroup(_ r: SyncGroupRequest, header: RequestHeader) -> Outcome {
        // KafkaApis.handleSyncGroupRequest checks this before asking the coordinator: from v5
        // the protocol type and name are mandatory.
        if header.apiVersion >= 5 && (r.protocolType == nil || r.protocolName == nil) {
            return respond(header, ClassicGroup.syncError(.inconsistentGroupProtocol))
        }
        let answer = groups.sync(r)
        return .respond(.task {
            if case .sync(let s)? = try? await answer.get() { return self.encode(header, s) }
            return self.encode(header, ClassicGroup.syncError(.coordinatorNotAvailable))
        })
    }

    func heartbeat(_ r: HeartbeatRequest) -> HeartbeatResponse {
        var resp = HeartbeatResponse()
        resp.errorCode = groups.heartbeat(r).rawValue
        return resp
    }

    /// LeaveGroupRequest.normalizedData turns v0-2's single member id into a one-member batch;
    /// LeaveGroupResponse(data, version) folds the member's error into the top level for them.
    func leaveGroup(_ r: LeaveGroupRequest, version: Int16) -> LeaveGroupResponse {
        let leaving = version >= 3
            ? r.members.map { GroupCoordinatorStateMachine.LeavingMember(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId) }
            : [GroupCoordinatorStateMachine.LeavingMember(memberId: r.memberId, groupInstanceId: nil)]
        let (error, codes) = groups.leave(groupId: r.groupId, members: leaving)
        var resp = LeaveGroupResponse()
        if version >= 3 {
            resp.errorCode = error.rawValue
            if error == .none {
                resp.members = zip(r.members, codes).map { m, code in
                    var mr = LeaveGroupResponse.MemberResponse()
                    mr.memberId = m.memberId
                    mr.groupInstanceId = m.groupInstanceId
                    mr.errorCode = code.rawValue
                    return mr
                }
            }
        } else {
            resp.errorCode = (error != .none ? error : codes.first ?? ErrorCode.none).rawValue
        }
        return resp
    }
}
