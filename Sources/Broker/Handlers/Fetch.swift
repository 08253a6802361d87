import KafkaProtocol
import NIOCore
import NIOPosix
import StreamStorage

extension Broker {
    /// Fetch with real long-polling: answers when `min_bytes` are readable or `max_wait_ms`
    /// passes, woken by append notifications rather than by sleeping.
    ///
    /// Fetch sessions (KIP-227) are not kept: a full fetch gets session id 0, which tells the
    /// client to keep sending full fetches; an incremental one gets FETCH_SESSION_ID_NOT_FOUND.
    func fetch(_ r: FetchRequest, version: Int16) async -> FetchResponse {
        if version >= 7 && (r.sessionId != 0 || r.sessionEpoch > 0) {
            var resp = FetchResponse()
            resp.errorCode = ErrorCode.fetchSessionIdNotFound.rawValue
            return resp
        }
        let deadline = NIODeadline.now() + .milliseconds(Int64(max(0, r.maxWaitMs)))
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        while true {
            let generation = engine.notifier.generation
            let (resp, bytes, hasError) = await fetchOnce(r, version: version)
            if bytes >= Int(r.minBytes) || hasError || NIODeadline.now() >= deadline || Task.isCancelled {
                metrics.fetched(bytes: bytes)
                return resp
            }
            await engine.notifier.wait(after: generation, until: deadline, on: loop)
        }
    }

    private struct PartitionKey: Hashable {
        var topic: String
        var partition: Int32
    }

    private typealias EarlyRead = Task<Result<ReadResult, ReadError>, Never>

    /// Catch-up reads (their GETs) started all at once, before the response is put together
    /// in order: read one after another, each partition's GET waited for the one before, and
    /// sixteen partitions of stream objects read at a fraction of the object store's speed.
    /// Each read's budget assumes the partitions before it take all of theirs; only
    /// partitions with some budget left that way, and when at least two read from objects.
    private func startCatchUpReads(_ r: FetchRequest, version: Int16, maxBytes: Int, readCommitted: Bool) -> [PartitionKey: EarlyRead] {
        guard r.topics.reduce(0, { $0 + $1.partitions.count }) > 1 else { return [:] }
        var planned = 0
        var candidates: [(key: PartitionKey, streamId: Int64, offset: Int64, budget: Int, epoch: Int32)] = []
        for t in r.topics {
            let zstdRefused = version < 10 && topic(t.topic)?.configs["compression.type"] == "zstd"
            for p in t.partitions {
                let budget = max(0, min(Int(p.partitionMaxBytes), maxBytes - planned))
                planned += budget
                guard budget > 0, !zstdRefused, let sid = streamId(t.topic, p.partition) else { continue }
                candidates.append((PartitionKey(topic: t.topic, partition: p.partition), sid, p.fetchOffset, budget,
                                   version >= 9 ? p.currentLeaderEpoch : -1))
            }
        }
        guard candidates.count > 1 else { return [:] }
        let fromObjects = engine.readsFromObjects(candidates.map { ($0.streamId, $0.offset) })
        guard fromObjects.filter({ $0 }).count > 1 else { return [:] }
        var started: [PartitionKey: EarlyRead] = [:]
        for (c, yes) in zip(candidates, fromObjects) where yes {
            started[c.key] = Task { [engine] () -> Result<ReadResult, ReadError> in
                do throws(ReadError) {
                    return .success(try await engine.read(streamId: c.streamId, offset: c.offset, maxBytes: c.budget,
                                                          currentLeaderEpoch: c.epoch, readCommitted: readCommitted))
                } catch {
                    return .failure(error)
                }
            }
        }
        return started
    }

    private func fetchOnce(_ r: FetchRequest, version: Int16) async -> (FetchResponse, Int, Bool) {
        var resp = FetchResponse()
        var total = 0
        var hasError = false
        let maxBytes = version >= 3 ? Int(r.maxBytes) : Int.max
        let readCommitted = version >= 4 && r.isolationLevel == 1
        let early = startCatchUpReads(r, version: version, maxBytes: maxBytes, readCommitted: readCommitted)
        for t in r.topics {
            var tr = FetchResponse.FetchableTopicResponse()
            tr.topic = t.topic
            for p in t.partitions {
                var pr = FetchResponse.FetchableTopicResponse.PartitionData()
                pr.partitionIndex = p.partition
                pr.highWatermark = -1
                pr.lastStableOffset = -1
                pr.logStartOffset = -1
                pr.records = nil
                pr.abortedTransactions = nil
                guard let sid = streamId(t.topic, p.partition) else {
                    pr.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    hasError = true
                    tr.partitions.append(pr)
                    continue
                }
                // Fetch v10 brought zstd. Kafka refuses older fetches of a zstd topic; we also
                // refuse them zstd batches a producer sent to any topic (they cannot decode them).
                let zstdRefused = version < 10
                if zstdRefused && topic(t.topic)?.configs["compression.type"] == "zstd" {
                    pr.errorCode = ErrorCode.unsupportedCompressionType.rawValue
                    hasError = true
                    tr.partitions.append(pr)
                    continue
                }
                let budget = max(0, min(Int(p.partitionMaxBytes), maxBytes - total))
                do {
                    // Past the response budget only offsets are reported (KIP-74: the first
                    // partition with data always gets at least one batch).
                    // Read early unless that took more than is left (a first batch larger than
                    // its budget leaves the partitions after it less than assumed).
                    let read: ReadResult
                    if let e = early[PartitionKey(topic: t.topic, partition: p.partition)], case let got = try await e.value.get(),
                       total == 0 || got.bytes <= budget {
                        read = got
                    } else {
                        read = try await engine.read(streamId: sid, offset: p.fetchOffset, maxBytes: total > 0 && budget == 0 ? 0 : max(budget, 1),
                                                     currentLeaderEpoch: version >= 9 ? p.currentLeaderEpoch : -1,
                                                     readCommitted: readCommitted)
                    }
                    pr.highWatermark = read.highWatermark
                    pr.lastStableOffset = read.lastStableOffset
                    pr.logStartOffset = read.logStartOffset
                    // read_committed: the aborted transactions the client must skip.
                    pr.abortedTransactions = read.abortedTxns.map { a in
                        var t = FetchResponse.FetchableTopicResponse.PartitionData.AbortedTransaction()
                        t.producerId = a.producerId
                        t.firstOffset = a.firstOffset
                        return t
                    }
                    if zstdRefused && read.headers.contains(where: { $0.compression == CompressionCodec.zstd.rawValue }) {
                        pr.errorCode = ErrorCode.unsupportedCompressionType.rawValue
                        hasError = true
                    } else if total > 0 && budget == 0 {
                        pr.records = ByteBuffer()
                    } else {
                        // The parts as they are: slices of the cache's blocks, not copied together.
                        pr.records = read.parts.first ?? ByteBuffer()
                        pr.recordsContinued = Array(read.parts.dropFirst())
                        total += read.bytes
                    }
                } catch {
                    hasError = true
                    // Kafka answers a failed read with empty records, not null: librdkafka
                    // cannot parse a null record set (it then never sees OFFSET_OUT_OF_RANGE).
                    pr.records = ByteBuffer()
                    switch error {
                    case .offsetOutOfRange: pr.errorCode = ErrorCode.offsetOutOfRange.rawValue
                    case .unknownStream: pr.errorCode = ErrorCode.notLeaderOrFollower.rawValue  // served by another broker
                    case .fencedLeaderEpoch: pr.errorCode = ErrorCode.fencedLeaderEpoch.rawValue
                    case .unknownLeaderEpoch: pr.errorCode = ErrorCode.unknownLeaderEpoch.rawValue
                    case .storage(let why):
                        logger.warning("fetch read failed", metadata: ["topic": "\(t.topic)", "partition": "\(p.partition)", "error": "\(why)"])
                        pr.errorCode = ErrorCode.kafkaStorageError.rawValue
                    }
                    if let o = engine.offsets(streamId: sid) {
                        pr.highWatermark = o.highWatermark
                        pr.lastStableOffset = o.lastStableOffset
                        pr.logStartOffset = o.logStartOffset
                    }
                }
                tr.partitions.append(pr)
            }
            resp.responses.append(tr)
        }
        return (resp, total, hasError)
    }
}
