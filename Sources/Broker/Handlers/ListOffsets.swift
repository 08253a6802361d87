import KafkaProtocol

extension Broker {
    static let latestTimestamp: Int64 = -1
    static let earliestTimestamp: Int64 = -2
    static let maxTimestamp: Int64 = -3

    func listOffsets(_ r: ListOffsetsRequest) async -> ListOffsetsResponse {
        var resp = ListOffsetsResponse()
        for t in r.topics {
            var tr = ListOffsetsResponse.ListOffsetsTopicResponse()
            tr.name = t.name
            for p in t.partitions {
                var pr = ListOffsetsResponse.ListOffsetsTopicResponse.ListOffsetsPartitionResponse()
                pr.partitionIndex = p.partitionIndex
                pr.timestamp = -1
                pr.offset = -1
                pr.leaderEpoch = -1
                guard let sid = streamId(t.name, p.partitionIndex), let o = engine.offsets(streamId: sid) else {
                    pr.errorCode = partitionError(t.name, p.partitionIndex).rawValue
                    tr.partitions.append(pr)
                    continue
                }
                if let e = Self.leaderEpochError(client: p.currentLeaderEpoch, current: o.epoch) {
                    pr.errorCode = e.rawValue
                    tr.partitions.append(pr)
                    continue
                }
                pr.leaderEpoch = Int32(truncatingIfNeeded: o.epoch)
                switch p.timestamp {
                case Self.latestTimestamp:
                    // read_committed consumers start from the last stable offset.
                    pr.offset = r.isolationLevel == 1 ? o.lastStableOffset : o.highWatermark
                case Self.earliestTimestamp:
                    pr.offset = o.logStartOffset
                case Self.maxTimestamp:
                    do {
                        if let hit = try await engine.offsetOfMaxTimestamp(streamId: sid) {
                            pr.offset = hit.offset
                            pr.timestamp = hit.timestamp
                        }
                    } catch {
                        pr.errorCode = ErrorCode.kafkaStorageError.rawValue
                    }
                default:
                    if p.timestamp < 0 {
                        // Later specials (-4 earliest-local, -5 tiered) need ListOffsets v9+.
                        pr.errorCode = ErrorCode.unsupportedVersion.rawValue
                        break
                    }
                    do {
                        if let hit = try await engine.offset(forTimestamp: p.timestamp, streamId: sid) {
                            pr.offset = hit.offset
                            pr.timestamp = hit.timestamp
                        }
                    } catch {
                        pr.errorCode = ErrorCode.kafkaStorageError.rawValue
                    }
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return resp
    }

    /// Kafka's check of a client's current leader epoch (-1: no check): older is fenced,
    /// newer means this broker has not caught up.
    static func leaderEpochError(client: Int32, current: Int64) -> ErrorCode? {
        guard client >= 0, Int64(client) != current else { return nil }
        return Int64(client) < current ? .fencedLeaderEpoch : .unknownLeaderEpoch
    }

    func offsetForLeaderEpoch(_ r: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
        var resp = OffsetForLeaderEpochResponse()
        for t in r.topics {
            var tr = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult()
            tr.topic = t.topic
            for p in t.partitions {
                var pr = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult.EpochEndOffset()
                pr.partition = p.partition
                pr.leaderEpoch = -1
                pr.endOffset = -1
                guard let sid = streamId(t.topic, p.partition), let o = engine.offsets(streamId: sid),
                      let hit = engine.endOffset(forEpoch: p.leaderEpoch, streamId: sid) else {
                    pr.errorCode = partitionError(t.topic, p.partition).rawValue
                    tr.partitions.append(pr)
                    continue
                }
                if let e = Self.leaderEpochError(client: p.currentLeaderEpoch, current: o.epoch) {
                    pr.errorCode = e.rawValue
                    tr.partitions.append(pr)
                    continue
                }
                pr.leaderEpoch = hit.epoch
                pr.endOffset = hit.endOffset
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return resp
    }
}
