import KafkaProtocol

extension Broker {
    /// KafkaApis.handleDescribeProducersRequest: an invalid topic name fails with
    /// INVALID_TOPIC_EXCEPTION and an unknown topic with UNKNOWN_TOPIC_OR_PARTITION (both with
    /// a message, for every partition asked); a partition the topic does not have is
    /// UNKNOWN_TOPIC_OR_PARTITION without one (ReplicaManager.getPartitionOrError). Otherwise
    /// the partition's active producers come from the engine's producer-state table
    /// (UnifiedLog.activeProducers), with the coordinator epoch of the last marker and the
    /// first offset of the open transaction (-1 when none).
    func describeProducers(_ r: DescribeProducersRequest) -> DescribeProducersResponse {
        typealias PartitionResponse = DescribeProducersResponse.TopicResponse.PartitionResponse
        var resp = DescribeProducersResponse()
        for t in r.topics {
            var tr = DescribeProducersResponse.TopicResponse()
            tr.name = t.name
            let topicError: (ErrorCode, String)? =
                if let why = TopicName.invalidReason(t.name) {
                    (.invalidTopicException, "Topic name is invalid: \(why)")
                } else if topic(t.name) == nil {
                    (.unknownTopicOrPartition, "This server does not host this topic-partition.")
                } else {
                    nil
                }
            for index in t.partitionIndexes {
                var pr = PartitionResponse()
                pr.partitionIndex = index
                if let (code, message) = topicError {
                    pr.errorCode = code.rawValue
                    pr.errorMessage = message
                } else if let sid = streamId(t.name, index), let states = engine.producerStates(streamId: sid) {
                    pr.activeProducers = states.map { s in
                        var p = PartitionResponse.ProducerState()
                        p.producerId = s.producerId
                        p.producerEpoch = Int32(s.producerEpoch)
                        p.lastSequence = s.batches.last?.lastSequence ?? -1
                        p.lastTimestamp = s.batches.last?.maxTimestamp ?? -1
                        p.coordinatorEpoch = s.coordinatorEpoch
                        p.currentTxnStartOffset = s.txnFirstOffset
                        return p
                    }
                } else {
                    pr.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return resp
    }
}

extension TopicName {
    /// Why Kafka's `Topic.validate` refuses a name (its wording), or nil if the name is valid.
    static func invalidReason(_ name: String) -> String? {
        if name.isEmpty { return "the empty string is not allowed" }
        if name == "." { return "'.' is not allowed" }
        if name == ".." { return "'..' is not allowed" }
        if name.utf16.count > 249 { return "the length of '\(name)' is longer than the max allowed length 249" }
        if !isValid(name) { return "'\(name)' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'" }
        return nil
    }
}
