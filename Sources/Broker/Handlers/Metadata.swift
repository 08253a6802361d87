import KafkaProtocol

extension Broker {
    func metadata(_ r: MetadataRequest, version: Int16) async -> MetadataResponse {
        var resp = MetadataResponse()
        resp.brokers = liveBrokers().map { b in
            var e = MetadataResponse.MetadataResponseBroker()
            e.nodeId = b.nodeId
            e.host = b.host
            e.port = Int32(b.port)
            e.rack = b.rack
            return e
        }
        resp.clusterId = clusterId
        resp.controllerId = controllerId

        // v0: an empty list means all topics; v1+: null means all.
        let requested: [MetadataRequest.MetadataRequestTopic]? = (version == 0 && r.topics?.isEmpty == true) ? nil : r.topics
        guard let requested else {
            resp.topics = allTopics().map { describe($0) }
            return resp
        }
        let allowCreate = config.autoCreateTopics && (version < 4 || r.allowAutoTopicCreation)
        for t in requested {
            var name = t.name
            if name == nil || name?.isEmpty == true, t.topicId != .zero {
                name = topic(id: t.topicId)?.name
                if name == nil {
                    var e = MetadataResponse.MetadataResponseTopic()
                    e.errorCode = ErrorCode.unknownTopicId.rawValue
                    e.topicId = t.topicId
                    e.name = nil
                    resp.topics.append(e)
                    continue
                }
            }
            guard let name else { continue }
            if let state = topic(name) {
                resp.topics.append(describe(state))
                continue
            }
            var e = MetadataResponse.MetadataResponseTopic()
            e.name = name
            if !TopicName.isValid(name) {
                e.errorCode = ErrorCode.invalidTopicException.rawValue
            } else if allowCreate {
                do {
                    let created = try await createTopic(name: name, partitions: Int(config.numPartitions), configs: [:])
                    resp.topics.append(describe(created))
                    continue
                } catch .exists {
                    if let state = topic(name) {
                        resp.topics.append(describe(state))
                        continue
                    }
                    e.errorCode = ErrorCode.leaderNotAvailable.rawValue
                } catch {
                    logger.warning("auto-create failed", metadata: ["topic": "\(name)", "error": "\(error)"])
                    e.errorCode = ErrorCode.leaderNotAvailable.rawValue
                }
            } else {
                e.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
            }
            resp.topics.append(e)
        }
        return resp
    }

    func describe(_ t: TopicState) -> MetadataResponse.MetadataResponseTopic {
        var e = MetadataResponse.MetadataResponseTopic()
        e.name = t.name
        e.topicId = t.id
        e.partitions = t.streamIds.enumerated().map { i, sid in
            var p = MetadataResponse.MetadataResponseTopic.MetadataResponsePartition()
            p.partitionIndex = Int32(i)
            // The leader is the broker serving the stream; the leader epoch is the stream
            // epoch, which rises on every open. None while the partition moves or fails over.
            if let l = leader(ofStream: sid) {
                p.leaderId = l.node
                p.leaderEpoch = Int32(truncatingIfNeeded: l.epoch)
                p.replicaNodes = [l.node]
                p.isrNodes = [l.node]
            } else {
                p.errorCode = ErrorCode.leaderNotAvailable.rawValue
                p.leaderId = -1
                p.leaderEpoch = -1
            }
            return p
        }
        return e
    }
}
