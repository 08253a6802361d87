#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KafkaProtocol
import NIOConcurrencyHelpers
import NIOCore
import StreamStorage

extension Broker {
    private enum PartitionPlan: Sendable {
        case failed(ErrorCode, String?, [RecordError] = [])
        case pending(StreamEngine.AppendTicket, logAppendTime: Int64)
    }

    func produce(_ r: ProduceRequest, header: RequestHeader) async -> Outcome {
        let acksValid = r.acks == -1 || r.acks == 0 || r.acks == 1
        let timeout: TimeAmount? = r.acks == 0 ? nil : .milliseconds(Int64(r.timeoutMs > 0 ? r.timeoutMs : 30_000))
        var plans: [(topic: String, partitions: [(Int32, PartitionPlan)])] = []
        for t in r.topicData {
            var parts: [(Int32, PartitionPlan)] = []
            let state = topic(t.name)
            for p in t.partitionData {
                guard acksValid else {
                    parts.append((p.index, .failed(.invalidRequiredAcks, nil)))
                    continue
                }
                guard let state, p.index >= 0, Int(p.index) < state.streamIds.count else {
                    parts.append((p.index, .failed(.unknownTopicOrPartition, nil)))
                    continue
                }
                guard let records = p.records, records.readableBytes > 0 else {
                    parts.append((p.index, .failed(.invalidRecord, "no record batch")))
                    continue
                }
                let limit = maxMessageBytes(state)
                if records.readableBytes > Int(limit) {
                    parts.append((p.index, .failed(.messageTooLarge, "batch of \(records.readableBytes) bytes exceeds max.message.bytes \(limit)")))
                    continue
                }
                let batch: ValidatedBatch
                do {
                    batch = try RecordBatch.validate(records, policy: state.batchPolicy(produceVersion: header.apiVersion), now: Self.wallClockMs())
                } catch {
                    parts.append((p.index, Self.plan(for: error)))
                    continue
                }
                if batch.header.isControl {
                    // Markers come only from the transaction coordinator.
                    parts.append((p.index, .failed(.invalidRecord, "control batches are written by the transaction coordinator")))
                    continue
                }
                if batch.header.isTransactional {
                    // The partition must be in the producer's open transaction (AddPartitionsToTxn
                    // first), at the producer's current epoch.
                    let verdict = await verifyTransactionalWrite(transactionalId: r.transactionalId, producerId: batch.header.producerId,
                                                                 epoch: batch.header.producerEpoch, partition: TxnPartition(topic: t.name, partition: p.index))
                    if verdict != .none {
                        parts.append((p.index, .failed(verdict, "transactional batch outside an open transaction of this producer")))
                        continue
                    }
                }
                let ticket = await engine.append(streamId: state.streamIds[Int(p.index)], batch: batch.bytes, header: batch.header, timeout: timeout)
                metrics.produced(bytes: records.readableBytes, records: Int(batch.header.recordCount))
                parts.append((p.index, .pending(ticket, logAppendTime: batch.logAppendTime)))
            }
            plans.append((t.name, parts))
        }
        if r.acks == 0 {
            // With no response to carry an error, Kafka closes the connection so the client
            // refreshes its metadata.
            for (name, parts) in plans {
                for case (let index, .failed(let code, _, _)) in parts {
                    return .close("acks=0 produce to \(name)-\(index) failed with \(code)")
                }
            }
            return .noResponse
        }
        // Answered from the thread that makes the last batch durable (the WAL thread with the
        // file WAL): the response goes from there to the connection's event loop, and a
        // produce waits for no Swift concurrency thread after its append.
        let version = header.apiVersion
        let planned = plans
        let tickets = plans.flatMap { $0.partitions.compactMap { p -> StreamEngine.AppendTicket? in
            if case .pending(let t, _) = p.1 { t } else { nil }
        } }
        // Nothing below refers to the request: the batches are copies now.
        let answer = Answer(readsRequest: false)
        let results = NIOLockedValueBox(AppendResults(left: tickets.count, got: Array(repeating: nil, count: tickets.count)))
        let finish: @Sendable () -> Void = {
            let got = results.withLockedValue { $0.got }
            answer.succeed(self.encode(header, Self.produceResponse(planned, results: got, version: version)))
        }
        if tickets.isEmpty { finish() }
        for (i, t) in tickets.enumerated() {
            t.onResult { r in
                let last = results.withLockedValue { s -> Bool in
                    s.got[i] = r
                    s.left -= 1
                    return s.left == 0
                }
                if last { finish() }
            }
        }
        return .respond(answer)
    }

    /// The response to a produce whose appends ended with `results`, in the order of the
    /// plans' pending partitions.
    private static func produceResponse(_ plans: [(topic: String, partitions: [(Int32, PartitionPlan)])],
                                        results: [Result<AppendResult, AppendError>?], version: Int16) -> ProduceResponse {
        var resp = ProduceResponse()
        var next = 0
        for (name, parts) in plans {
            var tr = ProduceResponse.TopicProduceResponse()
            tr.name = name
            for (index, plan) in parts {
                var pr = ProduceResponse.TopicProduceResponse.PartitionProduceResponse()
                pr.index = index
                pr.baseOffset = -1
                switch plan {
                case .failed(let code, let message, let recordErrors):
                    pr.errorCode = code.rawValue
                    if version >= 8 {
                        pr.errorMessage = message
                        pr.recordErrors = recordErrors.map { e in
                            var b = ProduceResponse.TopicProduceResponse.PartitionProduceResponse.BatchIndexAndErrorMessage()
                            b.batchIndex = e.batchIndex
                            b.batchIndexErrorMessage = e.message
                            return b
                        }
                    }
                case .pending(_, let logAppendTime):
                    switch results[next] {
                    case .success(let a)?:
                        pr.baseOffset = a.baseOffset
                        pr.logAppendTimeMs = logAppendTime
                        pr.logStartOffset = a.logStartOffset
                    case .failure(let e)?:
                        pr.errorCode = errorCode(for: e).rawValue
                    case nil:
                        pr.errorCode = ErrorCode.unknownServerError.rawValue
                    }
                    next += 1
                }
                tr.partitionResponses.append(pr)
            }
            resp.responses.append(tr)
        }
        return resp
    }

    private struct AppendResults {
        var left: Int
        var got: [Result<AppendResult, AppendError>?]
    }

    private static func plan(for e: RecordBatchError) -> PartitionPlan {
        switch e {
        case .corrupt: .failed(.corruptMessage, "record batch CRC mismatch")
        case .invalidRecord(let why, let records): .failed(.invalidRecord, why, records)
        case .invalidTimestamp(let why, let records): .failed(.invalidTimestamp, why, records)
        case .unsupportedCompression(let why): .failed(.unsupportedCompressionType, why)
        }
    }

    /// Milliseconds since the epoch, as Kafka's timestamps count.
    public static func wallClockMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func errorCode(for e: AppendError) -> ErrorCode {
        switch e {
        // The partition exists (checked before) but is not served here: moved or moving.
        case .unknownStream: .notLeaderOrFollower
        case .rejected(let code): code
        case .fenced, .shuttingDown: .notLeaderOrFollower
        case .timedOut: .requestTimedOut
        }
    }
}
