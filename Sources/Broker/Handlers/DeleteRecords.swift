import KafkaProtocol
import StreamStorage

/// DeleteRecords: raises partitions' log start offsets, as Kafka's
/// `Partition.deleteRecordsOnLeader` does. Only the offset moves here; objects left wholly
/// below it are for retention's garbage collection.
extension Broker {
    func deleteRecords(_ r: DeleteRecordsRequest) async -> DeleteRecordsResponse {
        var resp = DeleteRecordsResponse()
        for t in r.topics {
            var tr = DeleteRecordsResponse.DeleteRecordsTopicResult()
            tr.name = t.name
            let state = topic(t.name)
            for p in t.partitions {
                var pr = DeleteRecordsResponse.DeleteRecordsTopicResult.DeleteRecordsPartitionResult()
                pr.partitionIndex = p.partitionIndex
                pr.lowWatermark = -1
                guard let state, let sid = streamId(t.name, p.partitionIndex) else {
                    pr.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    tr.partitions.append(pr)
                    continue
                }
                // Kafka refuses on topics whose cleanup.policy lacks "delete" (compact only).
                let policy = state.configs["cleanup.policy"] ?? "delete"
                guard policy.split(separator: ",").contains(where: { $0.trimmingWhitespace() == "delete" }) else {
                    pr.errorCode = ErrorCode.policyViolation.rawValue
                    tr.partitions.append(pr)
                    continue
                }
                do {
                    pr.lowWatermark = try await engine.advanceLogStart(streamId: sid, to: p.offset)
                    logger.info("deleted records", metadata: ["topic": "\(t.name)", "partition": "\(p.partitionIndex)",
                                                            "logStartOffset": "\(pr.lowWatermark)"])
                } catch {
                    switch error {
                    case .offsetOutOfRange: pr.errorCode = ErrorCode.offsetOutOfRange.rawValue
                    case .unknownStream: pr.errorCode = ErrorCode.notLeaderOrFollower.rawValue  // served by another broker
                    case .fenced: pr.errorCode = ErrorCode.notLeaderOrFollower.rawValue
                    case .storage(let why):
                        logger.warning("delete records failed", metadata: ["topic": "\(t.name)", "partition": "\(p.partitionIndex)", "error": "\(why)"])
                        pr.errorCode = ErrorCode.kafkaStorageError.rawValue
                    }
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return resp
    }
}
