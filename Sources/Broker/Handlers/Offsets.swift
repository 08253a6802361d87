import KafkaProtocol
import Metadata

extension Broker {
    /// Standalone (simple-consumer) offset storage: commits with generation -1 are kept in
    /// the metadata store. Commits that claim a group generation need the group coordinator,
    /// which does not exist yet; Kafka answers those for an unknown group with ILLEGAL_GENERATION.
    func offsetCommit(_ r: OffsetCommitRequest, version: Int16) async -> OffsetCommitResponse {
        var resp = OffsetCommitResponse()
        var accepted: [CommittedOffset] = []
        var results: [[ErrorCode]] = []
        let groupManaged = r.generationIdOrMemberEpoch >= 0
        for t in r.topics {
            var codes: [ErrorCode] = []
            for p in t.partitions {
                if r.groupId.isEmpty {
                    codes.append(.invalidRequest)  // Kafka: INVALID_GROUP_ID; closest we carry
                } else if groupManaged {
                    codes.append(.illegalGeneration)
                } else if streamId(t.name, p.partitionIndex) == nil {
                    codes.append(.unknownTopicOrPartition)
                } else if let m = p.committedMetadata, m.utf8.count > config.offsetMetadataMaxBytes {
                    codes.append(.offsetMetadataTooLarge)
                } else {
                    codes.append(.none)
                    accepted.append(CommittedOffset(topic: t.name, partition: p.partitionIndex, offset: p.committedOffset,
                                                    leaderEpoch: version >= 6 ? p.committedLeaderEpoch : -1, metadata: p.committedMetadata))
                }
            }
            results.append(codes)
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
                pr.errorCode = (code == .none ? (failure ?? .none) : code).rawValue
                return pr
            }
            resp.topics.append(tr)
        }
        return resp
    }

    func offsetFetch(_ r: OffsetFetchRequest, version: Int16) async -> OffsetFetchResponse {
        var resp = OffsetFetchResponse()
        // One shape for every version: (group, [(topic, partitions or nil for all)]?).
        let groups: [(String, [(String, [Int32])]?)] = version >= 8
            ? r.groups.map { g in (g.groupId, g.topics.map { $0.map { ($0.name, $0.partitionIndexes) } }) }
            : [(r.groupId, r.topics.map { $0.map { ($0.name, $0.partitionIndexes) } })]
        for (group, topics) in groups {
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
            var rows: [(String, [(Int32, Int64, Int32, String?)])] = []
            for (name, partitions) in wanted {
                rows.append((name, partitions.map { p in
                    if let o = byTopic[name]?[p] { return (p, o.offset, o.leaderEpoch, o.metadata ?? "") }
                    return (p, -1, -1, "")
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
                        return p
                    }
                    return t
                }
            }
        }
        return resp
    }
}
