import KafkaProtocol
import Metadata

extension Broker {
    /// Answers each partition of an offset commit left unanswered (nil): with the group's
    /// `verdict` when there is one, else OFFSET_METADATA_TOO_LARGE when its metadata is over
    /// `offset.metadata.max.bytes`, else NONE. Returns the (topic, partition) indexes of
    /// those answered NONE, whose offsets are to be stored.
    func answer<P>(_ results: inout [[ErrorCode?]], _ partitions: [[P]], metadata: (P) -> String?,
                   verdict: ErrorCode?) -> [(Int, Int)] {
        var accepted: [(Int, Int)] = []
        for (ti, ps) in partitions.enumerated() {
            for (pi, p) in ps.enumerated() where results[ti][pi] == nil {
                if let verdict {
                    results[ti][pi] = verdict
                } else if let m = metadata(p), m.utf8.count > config.offsetMetadataMaxBytes {
                    results[ti][pi] = .offsetMetadataTooLarge
                } else {
                    results[ti][pi] = ErrorCode.none
                    accepted.append((ti, pi))
                }
            }
        }
        return accepted
    }

    /// OffsetCommit, as KafkaApis.handleOffsetCommitRequest and the classic group coordinator
    /// answer it: unknown topics and partitions first, then the group's verdict for the rest
    /// (ClassicGroup.validateOffsetCommit: generation and member checks, REBALANCE_IN_PROGRESS
    /// while the group awaits its assignment, "simple" generation -1 commits only into a group
    /// without members), then the metadata size. Accepted offsets go to the metadata store.
    func offsetCommit(_ r: OffsetCommitRequest, version: Int16) async -> OffsetCommitResponse {
        var resp = OffsetCommitResponse()
        var accepted: [CommittedOffset] = []
        let now = Self.wallClockMs()
        // nil: for the coordinator to decide.
        var results: [[ErrorCode?]] = r.topics.map { t in
            t.partitions.map { p in
                if r.groupId.isEmpty { return .invalidRequest }  // Kafka: INVALID_GROUP_ID; closest we carry
                return streamId(t.name, p.partitionIndex) == nil ? .unknownTopicOrPartition : nil
            }
        }
        if results.contains(where: { $0.contains(nil) }) {
            let verdict = groups.validateOffsetCommit(groupId: r.groupId, memberId: r.memberId, instanceId: r.groupInstanceId,
                                                      generation: r.generationIdOrMemberEpoch, apiVersion: version)
            let partitions = r.topics.map(\.partitions)
            for (ti, pi) in answer(&results, partitions, metadata: \.committedMetadata, verdict: verdict) {
                let t = r.topics[ti], p = t.partitions[pi]
                accepted.append(CommittedOffset(topic: t.name, partition: p.partitionIndex, offset: p.committedOffset,
                                                leaderEpoch: version >= 6 ? p.committedLeaderEpoch : -1, metadata: p.committedMetadata,
                                                commitTimestampMs: now))
            }
        }
        var failure: ErrorCode?
        if !accepted.isEmpty {
            do {
                try await metadata.commitOffsets(group: r.groupId, accepted)
            } catch {
                logger.warning("offset commit failed", metadata: ["group": "\(r.groupId)", "error": "\(error)"])
                failure = .coordinatorNotAvailable
            }
        }
        for (t, codes) in zip(r.topics, results) {
            var tr = OffsetCommitResponse.OffsetCommitResponseTopic()
            tr.name = t.name
            tr.partitions = zip(t.partitions, codes).map { p, code in
                var pr = OffsetCommitResponse.OffsetCommitResponseTopic.OffsetCommitResponsePartition()
                pr.partitionIndex = p.partitionIndex
                let c = code ?? .unknownServerError
                pr.errorCode = (c == .none ? (failure ?? .none) : c).rawValue
                return pr
            }
            resp.topics.append(tr)
        }
        return resp
    }

    /// OffsetFetch needs no membership for classic groups (ClassicGroup.validateOffsetFetch
    /// checks nothing but a Dead group); from v9 a consumer-protocol member's id and epoch are
    /// checked. Committed offsets come from the metadata store.
    func offsetFetch(_ r: OffsetFetchRequest, version: Int16) async -> OffsetFetchResponse {
        var resp = OffsetFetchResponse()
        // One shape for every version: (group, [(topic, partitions or nil for all)]?).
        let groups: [(String, [(String, [Int32])]?)] = version >= 8
            ? r.groups.map { g in (g.groupId, g.topics.map { $0.map { ($0.name, $0.partitionIndexes) } }) }
            : [(r.groupId, r.topics.map { $0.map { ($0.name, $0.partitionIndexes) } })]
        for (gi, (group, topics)) in groups.enumerated() {
            // v9: a consumer-protocol member names itself and its epoch
            // (ConsumerGroup.validateOffsetFetch: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH).
            if version >= 9, let e = self.groups.validateOffsetFetch(groupId: group, memberId: r.groups[gi].memberId,
                                                                      memberEpoch: r.groups[gi].memberEpoch) {
                var g = OffsetFetchResponse.OffsetFetchResponseGroup()
                g.groupId = group
                g.errorCode = e.rawValue
                resp.groups.append(g)
                continue
            }
            var code = ErrorCode.none
            var stored: [CommittedOffset] = []
            do {
                stored = try await metadata.fetchOffsets(group: group)
            } catch {
                code = .coordinatorNotAvailable
            }
            var byTopic: [String: [Int32: CommittedOffset]] = [:]
            for o in stored { byTopic[o.topic, default: [:]][o.partition] = o }
            let wanted: [(String, [Int32])] = topics ?? byTopic.keys.sorted().map { ($0, byTopic[$0]!.keys.sorted()) }
            // require_stable (v7+): offsets waiting on an open transaction are not answered
            // yet (GroupMetadataManager.getOffsets: UNSTABLE_OFFSET_COMMIT).
            let unstable = version >= 7 && r.requireStable ? transactions.pendingOffsetPartitions(group: group) : []
            var rows: [(String, [(Int32, Int64, Int32, String?, ErrorCode)])] = []
            for (name, partitions) in wanted {
                rows.append((name, partitions.map { p in
                    if unstable.contains(TxnPartition(topic: name, partition: p)) { return (p, -1, -1, "", .unstableOffsetCommit) }
                    if let o = byTopic[name]?[p] { return (p, o.offset, o.leaderEpoch, o.metadata ?? "", .none) }
                    return (p, -1, -1, "", .none)
                }))
            }
            if version >= 8 {
                var g = OffsetFetchResponse.OffsetFetchResponseGroup()
                g.groupId = group
                g.errorCode = code.rawValue
                g.topics = rows.map { name, parts in
                    var t = OffsetFetchResponse.OffsetFetchResponseGroup.OffsetFetchResponseTopics()
                    t.name = name
                    t.partitions = parts.map {
                        var p = OffsetFetchResponse.OffsetFetchResponseGroup.OffsetFetchResponseTopics.OffsetFetchResponsePartitions()
                        p.partitionIndex = $0.0
                        p.committedOffset = $0.1
                        p.committedLeaderEpoch = $0.2
                        p.metadata = $0.3
                        p.errorCode = $0.4.rawValue
                        return p
                    }
                    return t
                }
                resp.groups.append(g)
            } else {
                resp.errorCode = code.rawValue
                resp.topics = rows.map { name, parts in
                    var t = OffsetFetchResponse.OffsetFetchResponseTopic()
                    t.name = name
                    t.partitions = parts.map {
                        var p = OffsetFetchResponse.OffsetFetchResponseTopic.OffsetFetchResponsePartition()
                        p.partitionIndex = $0.0
                        p.committedOffset = $0.1
                        p.committedLeaderEpoch = $0.2
                        p.metadata = $0.3
                        p.errorCode = $0.4.rawValue
                        return p
                    }
                    return t
                }
            }
        }
        return resp
    }
}
