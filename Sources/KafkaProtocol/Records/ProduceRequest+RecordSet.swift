import NIOCore

extension ProduceRequest {
    /// A produce of one record set to one partition of `topic` (benchmarks, tests).
    public init(topic: String, partition: Int32, records: ByteBuffer, acks: Int16, timeoutMs: Int32 = 30_000) {
        self.init()
        var p = TopicProduceData.PartitionProduceData()
        p.index = partition
        p.records = records
        var td = TopicProduceData()
        td.name = topic
        td.partitionData = [p]
        self.acks = acks
        self.timeoutMs = timeoutMs
        topicData = [td]
    }
}
