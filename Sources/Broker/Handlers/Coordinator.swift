import KafkaProtocol

extension Broker {
    static let groupKeyType: Int8 = 0
    static let transactionKeyType: Int8 = 1

    /// Group keys and transaction keys both find this broker (its group and transaction
    /// coordinators); other key types are refused.
    func findCoordinator(_ r: FindCoordinatorRequest, version: Int16) -> FindCoordinatorResponse {
        var resp = FindCoordinatorResponse()
        let ok = r.keyType == Self.groupKeyType || r.keyType == Self.transactionKeyType
        let code: ErrorCode = ok ? .none : .coordinatorNotAvailable
        if version >= 4 {
            resp.coordinators = r.coordinatorKeys.map { key in
                var c = FindCoordinatorResponse.Coordinator()
                c.key = key
                c.nodeId = ok ? config.nodeId : -1
                c.host = ok ? config.advertise.host : ""
                c.port = ok ? Int32(config.advertise.port) : -1
                c.errorCode = code.rawValue
                return c
            }
        } else {
            resp.errorCode = code.rawValue
            resp.nodeId = ok ? config.nodeId : -1
            resp.host = ok ? config.advertise.host : ""
            resp.port = ok ? Int32(config.advertise.port) : -1
        }
        return resp
    }
}
