import KafkaProtocol

extension Broker {
    /// Idempotent producers get a fresh producer id (epoch 0), or with v3+ the same id at the
    /// next epoch (KIP-360). A transactional id goes to the transaction coordinator; its
    /// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH below v4 (KIP-588).
    func initProducerId(_ r: InitProducerIdRequest, version: Int16) async -> InitProducerIdResponse {
        var resp = InitProducerIdResponse()
        resp.producerId = -1
        resp.producerEpoch = -1
        // KafkaApis.handleInitProducerIdRequest: a producer id without an epoch (or the
        // reverse) is INVALID_REQUEST, for transactional and idempotent producers alike.
        if (r.producerId == -1) != (r.producerEpoch == -1) {
            resp.errorCode = ErrorCode.invalidRequest.rawValue
            return resp
        }
        if let id = r.transactionalId {
            guard isCoordinator(for: id) else {
                resp.errorCode = ErrorCode.notCoordinator.rawValue
                return resp
            }
            let out = await transactions.initProducerId(r, transactionalId: id, io: self)
            resp.errorCode = Self.fencedError(out.error, version: version, since: 4).rawValue
            if out.error == .none {
                resp.producerId = out.producerId
                resp.producerEpoch = out.producerEpoch
            }
            return resp
        }
        if r.producerId >= 0 && r.producerEpoch >= 0 && r.producerEpoch < Int16.max - 1 {
            resp.producerId = r.producerId
            resp.producerEpoch = r.producerEpoch + 1
            return resp
        }
        do {
            resp.producerId = try await metadata.allocateProducerId()
            resp.producerEpoch = 0
        } catch {
            logger.warning("producer id allocation failed", metadata: ["error": "\(error)"])
            resp.errorCode = ErrorCode.coordinatorNotAvailable.rawValue
        }
        return resp
    }
}
