import KafkaProtocol

/// Group administration: ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.
///
/// A group is either held by the group coordinator (it has, or had, members since the broker
/// started) or exists only through its committed offsets in the metadata store (an `assign()`
/// consumer's group, or any group after a restart). Kafka's coordinator keeps the latter as a
/// classic group in state Empty with no protocol type (`OffsetMetadataManager.commitOffset` →
/// `getOrMaybeCreateClassicGroup`), so that is how these handlers report it. One difference:
/// Kafka keeps an Empty group whose offsets were all deleted by OffsetDelete until its
/// periodic cleanup; here such a group is gone at once unless the coordinator holds it.
extension Broker {
    static let emptyGroupState = "Empty"
    static let deadGroupState = "Dead"

    /// GroupMetadataManager.listGroups: every group with its state and protocol type,
    /// filtered by state from v4, case-insensitively as Kafka compares them.
    func listGroups(_ r: ListGroupsRequest) async -> ListGroupsResponse {
        var resp = ListGroupsResponse()
        let stored: [String]
        do {
            stored = try await metadata.groupsWithOffsets()
        } catch {
            logger.warning("listing groups failed", metadata: ["error": "\(error)"])
            resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
            return resp
        }
        var all: [String: (protocolType: String, state: String)] = [:]
        for id in stored { all[id] = ("", Self.emptyGroupState) }
        for g in groups.listed() { all[g.groupId] = (g.protocolType, g.state) }
        let states = Set(r.statesFilter.map { $0.trimmingWhitespace().lowercased() })
        resp.groups = all.keys.sorted().compactMap { id in
            let (type, state) = all[id]!
            if !states.isEmpty && !states.contains(state.lowercased()) { return nil }
            var g = ListGroupsResponse.ListedGroup()
            g.groupId = id
            g.protocolType = type
            g.groupState = state
            return g
        }
        return resp
    }

    /// GroupMetadataManager.describeGroups: a group held by the coordinator with its members
    /// (client id and host, assignment; metadata and protocol once Stable); a group known only
    /// by its offsets is Empty with no members; an unknown one is Dead with no error.
    /// Authorized operations (v3+, on request) are those of a broker without an authorizer.
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
        var names: [KafkaUUID: String] = [:]
        for t in allTopics() { names[t.id] = t.name }
        resp.groups = r.groups.map { id in
            var g: DescribeGroupsResponse.DescribedGroup
            if let held = groups.describe(id, topicNames: names) {
                g = held
            } else {
                g = DescribeGroupsResponse.DescribedGroup()
                g.groupId = id
                g.groupState = known.contains(id) ? Self.emptyGroupState : Self.deadGroupState
                g.protocolType = ""
                g.protocolData = ""
            }
            if version >= 3 && r.includeAuthorizedOperations { g.authorizedOperations = AuthorizedOperations.group }
            return g
        }
        return resp
    }

    /// GroupCoordinatorShard.deleteGroups: only an Empty group may be deleted (else
    /// NON_EMPTY_GROUP), and its offsets go with it; an unknown one is GROUP_ID_NOT_FOUND.
    /// Names are de-duplicated as KafkaApis does.
    func deleteGroups(_ r: DeleteGroupsRequest) async -> DeleteGroupsResponse {
        var resp = DeleteGroupsResponse()
        var seen = Set<String>()
        for id in r.groupsNames where seen.insert(id).inserted {
            var result = DeleteGroupsResponse.DeletableGroupResult()
            result.groupId = id
            let check = groups.delete(id)
            if case .refused(let code) = check {
                result.errorCode = code.rawValue
                resp.results.append(result)
                continue
            }
            do {
                let hadOffsets = try await metadata.deleteGroupOffsets(group: id)
                if hadOffsets || check == .deleted {
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
    /// OffsetMetadataManager.deleteOffsets) refuses an empty group id (INVALID_GROUP_ID), an
    /// unknown group (GROUP_ID_NOT_FOUND) and a group with members that does not use the
    /// consumer protocol (NON_EMPTY_GROUP), all at the top level; a consumer group's offsets
    /// of the topics it is subscribed to stay (GROUP_SUBSCRIBED_TO_TOPIC), the rest go.
    func offsetDelete(_ r: OffsetDeleteRequest) async -> OffsetDeleteResponse {
        var resp = OffsetDeleteResponse()
        if r.groupId.isEmpty {
            resp.errorCode = ErrorCode.invalidGroupId.rawValue
            return resp
        }
        let check = groups.offsetDeleteCheck(r.groupId)
        if case .refused(let code) = check {
            resp.errorCode = code.rawValue
            return resp
        }
        var deletable: [(topic: String, partition: Int32)] = []
        var topics: [OffsetDeleteResponse.OffsetDeleteResponseTopic] = []
        for t in r.topics {
            var tr = OffsetDeleteResponse.OffsetDeleteResponseTopic()
            tr.name = t.name
            let subscribed = check.isSubscribed(to: t.name)
            for p in t.partitions {
                var pr = OffsetDeleteResponse.OffsetDeleteResponseTopic.OffsetDeleteResponsePartition()
                pr.partitionIndex = p.partitionIndex
                if streamId(t.name, p.partitionIndex) == nil {
                    pr.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                } else if subscribed {
                    pr.errorCode = ErrorCode.groupSubscribedToTopic.rawValue
                } else {
                    deletable.append((t.name, p.partitionIndex))
                }
                tr.partitions.append(pr)
            }
            topics.append(tr)
        }
        do {
            let found = try await metadata.deleteOffsets(group: r.groupId, deletable)
            if !found && check == .unknown {
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
