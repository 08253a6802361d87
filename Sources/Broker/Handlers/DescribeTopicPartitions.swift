import KafkaProtocol

extension Broker {
    /// Kafka's `max.request.partition.size.limit` default: the most partitions one
    /// DescribeTopicPartitions response carries, whatever the request asks.
    static let maxRequestPartitionSizeLimit: Int32 = 2000

    /// DescribeTopicPartitionsRequestHandler + KRaftMetadataCache.getTopicMetadataForDescribeTopicResponse.
    ///
    /// Topics (all, or those named) are taken in name order from the cursor's topic on; at
    /// most `response_partition_limit` partitions (capped at 2000, at least 1) are returned,
    /// and when a topic is cut short or the budget runs out before the next topic, the
    /// response carries the cursor to continue from. Named topics that do not exist are
    /// reported with an error (when listing all, nothing is missing). A cursor whose topic is
    /// not among the named ones, or whose partition is negative, fails the request with
    /// INVALID_REQUEST for every named topic. Authorized operations are those of a broker
    /// without an authorizer.
    func describeTopicPartitions(_ r: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
        let fetchAll = r.topics.isEmpty
        let cursorTopic = r.cursor?.topicName ?? ""
        let names: [String]
        if fetchAll {
            names = allTopics().map(\.name).filter { $0 >= cursorTopic }
        } else {
            names = Set(r.topics.map(\.name)).filter { $0 >= cursorTopic }.sorted()
        }
        if let cursor = r.cursor, (!fetchAll && !names.contains(cursor.topicName)) || cursor.partitionIndex < 0 {
            // The handler throws InvalidRequestException: DescribeTopicPartitionsRequest.getErrorResponse.
            var resp = DescribeTopicPartitionsResponse()
            resp.topics = r.topics.map { t in
                var e = DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic()
                e.name = t.name
                e.errorCode = ErrorCode.invalidRequest.rawValue
                return e
            }
            return resp
        }
        var resp = DescribeTopicPartitionsResponse()
        var remaining = Int(max(min(Self.maxRequestPartitionSizeLimit, r.responsePartitionLimit), 1))
        for name in names {
            if remaining == 0 {
                // The budget ran out exactly at a topic boundary: continue at this topic.
                var next = DescribeTopicPartitionsResponse.Cursor()
                next.topicName = name
                next.partitionIndex = 0
                resp.nextCursor = next
                break
            }
            var e = DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic()
            e.name = name
            e.topicAuthorizedOperations = AuthorizedOperations.topic
            guard let t = topic(name) else {
                if !fetchAll {
                    e.errorCode = (TopicName.isValid(name) ? ErrorCode.unknownTopicOrPartition : .invalidTopicException).rawValue
                    resp.topics.append(e)
                }
                continue
            }
            e.topicId = t.id
            e.isInternal = false
            let count = t.streamIds.count
            let start = name == cursorTopic ? Int(r.cursor?.partitionIndex ?? 0) : 0
            let upper = min(count, start + remaining)
            if start < upper {
                for i in start..<upper {
                    var p = DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic.DescribeTopicPartitionsResponsePartition()
                    p.partitionIndex = Int32(i)
                    p.leaderId = config.nodeId
                    p.leaderEpoch = engine.offsets(streamId: t.streamIds[i]).map { Int32(truncatingIfNeeded: $0.epoch) } ?? -1
                    p.replicaNodes = [config.nodeId]
                    p.isrNodes = [config.nodeId]
                    p.eligibleLeaderReplicas = []
                    p.lastKnownElr = []
                    p.offlineReplicas = []
                    e.partitions.append(p)
                }
            }
            resp.topics.append(e)
            if upper < count {
                var next = DescribeTopicPartitionsResponse.Cursor()
                next.topicName = name
                next.partitionIndex = Int32(upper)
                resp.nextCursor = next
                break
            }
            remaining -= e.partitions.count
        }
        return resp
    }
}
