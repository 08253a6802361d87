import KafkaProtocol

/// Group administration: ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.
///
/// Until the group coordinator arrives (issue 7) the only groups are those `assign()`
/// consumers created by committing offsets (Offsets.swift). Kafka's coordinator keeps such a
/// group as a classic group in state Empty with no protocol type
/// (`OffsetMetadataManager.commitOffset` → `getOrMaybeCreateClassicGroup`), so that is how
/// these handlers report them: a group exists while it has a committed offset. One
/// difference: Kafka keeps an Empty group whose offsets were all deleted by OffsetDelete
/// until its periodic cleanup; here it is gone at once.
extension Broker {
    static let emptyGroupState = "Empty"
    static let deadGroupState = "Dead"

    /// GroupMetadataManager.listGroups: every group (all are classic, Empty, protocol type
    /// ""), filtered by state from v4, case-insensitively as Kafka compares them.
    func listGroups(_ r: ListGroupsRequest) async -> ListGroupsResponse {
        var resp = ListGroupsResponse()
        let groups: [String]
        do {
            groups = try await metadata.groupsWithOffsets()
        } catch {
            logger.warning("listing groups failed", metadata: ["error": "\(error)"])
            resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
            return resp
        }
        let states = Set(r.statesFilter.map { $0.trimmingWhitespace().lowercased() })
        if !states.isEmpty && !states.contains(Self.emptyGroupState.lowercased()) { return resp }
        resp.groups = groups.map { id in
            var g = ListGroupsResponse.ListedGroup()
            g.groupId = id
            g.protocolType = ""
            g.groupState = Self.emptyGroupState
            return g
        }
        return resp
    }

    /// GroupMetadataManager.describeGroups: a known group is Empty with no protocol and no
    /// members; an unknown one is reported as Dead with no error. Authorized operations
    /// (v3+, on request) are those of a broker without an authorizer.
    func describeGroups(_ r: DescribeGroupsRequest, version: Int16) async -> DescribeGroupsResponse {
        var resp = DescribeGroupsResponse()
        let known: Set<String>
        do {
            known = Set(try await metadata.groupsWithOffsets())
        } catch {
            logger.warning("describing groups failed", metadata: ["error": "\(error)"])
            resp.groups = r.groups.map { id in
                var g = DescribeGroupsResponse.DescribedGroup()
                g.groupId = id
                g.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
                return g
            }
            return resp
        }
        resp.groups = r.groups.map { id in
            var g = DescribeGroupsResponse.DescribedGroup()
            g.groupId = id
            g.groupState = known.contains(id) ? Self.emptyGroupState : Self.deadGroupState
            g.protocolType = ""
            g.protocolData = ""
            if version >= 3 && r.includeAuthorizedOperations { g.authorizedOperations = AuthorizedOperations.group }
            return g
        }
        return resp
    }

    /// GroupCoordinatorShard.deleteGroups: an Empty group may be deleted (its offsets go with
    /// it); an unknown one is GROUP_ID_NOT_FOUND. Names are de-duplicated as KafkaApis does.
    func deleteGroups(_ r: DeleteGroupsRequest) async -> DeleteGroupsResponse {
        var resp = DeleteGroupsResponse()
        var seen = Set<String>()
        for id in r.groupsNames where seen.insert(id).inserted {
            var result = DeleteGroupsResponse.DeletableGroupResult()
            result.groupId = id
            do {
                if try await metadata.deleteGroupOffsets(group: id) {
                    logger.info("deleted group", metadata: ["group": "\(id)"])
                } else {
                    result.errorCode = ErrorCode.groupIdNotFound.rawValue
                }
            } catch {
                logger.warning("deleting group failed", metadata: ["group": "\(id)", "error": "\(error)"])
                result.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
            }
            resp.results.append(result)
        }
        return resp
    }

    /// KafkaApis.handleOffsetDeleteRequest answers unknown topics and partitions with
    /// UNKNOWN_TOPIC_OR_PARTITION itself; the coordinator (GroupCoordinatorService.deleteOffsets,
    /// OffsetMetadataManager.deleteOffsets) refuses an empty group id (INVALID_GROUP_ID) and an
    /// unknown group (GROUP_ID_NOT_FOUND, top level, no topics), and deletes the rest: an Empty
    /// group is subscribed to no topic, so no GROUP_SUBSCRIBED_TO_TOPIC.
    func offsetDelete(_ r: OffsetDeleteRequest) async -> OffsetDeleteResponse {
        var resp = OffsetDeleteResponse()
        if r.groupId.isEmpty {
            resp.errorCode = ErrorCode.invalidGroupId.rawValue
            return resp
        }
        var deletable: [(topic: String, partition: Int32)] = []
        var topics: [OffsetDeleteResponse.OffsetDeleteResponseTopic] = []
        for t in r.topics {
            var tr = OffsetDeleteResponse.OffsetDeleteResponseTopic()
            tr.name = t.name
            for p in t.partitions {
                var pr = OffsetDeleteResponse.OffsetDeleteResponseTopic.OffsetDeleteResponsePartition()
                pr.partitionIndex = p.partitionIndex
                if streamId(t.name, p.partitionIndex) == nil {
                    pr.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                } else {
                    deletable.append((t.name, p.partitionIndex))
                }
                tr.partitions.append(pr)
            }
            topics.append(tr)
        }
        do {
            guard try await metadata.deleteOffsets(group: r.groupId, deletable) else {
                resp.errorCode = ErrorCode.groupIdNotFound.rawValue
                return resp
            }
        } catch {
            logger.warning("deleting offsets failed", metadata: ["group": "\(r.groupId)", "error": "\(error)"])
            resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
            return resp
        }
        resp.topics = topics
        return resp
    }
}
