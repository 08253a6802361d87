import KafkaProtocol

extension Broker {
    static let groupKeyType: Int8 = 0
    static let transactionKeyType: Int8 = 1

    /// Group keys and transaction keys find the live broker that `ClusterPlanner.coordinator`
    /// picks for the key (every broker picks the same one); other key types are refused.
    func findCoordinator(_ r: FindCoordinatorRequest, version: Int16) -> FindCoordinatorResponse {
        var resp = FindCoordinatorResponse()
        let ok = r.keyType == Self.groupKeyType || r.keyType == Self.transactionKeyType
        /// Error code, node id, host, port.
        func answer(_ key: String) -> (Int16, Int32, String, Int32) {
            guard ok, let b = coordinator(for: key) else { return (ErrorCode.coordinatorNotAvailable.rawValue, -1, "", -1) }
            return (ErrorCode.none.rawValue, b.nodeId, b.host, Int32(b.port))
        }
        if version >= 4 {
            resp.coordinators = r.coordinatorKeys.map { key in
                var c = FindCoordinatorResponse.Coordinator()
                c.key = key
                (c.errorCode, c.nodeId, c.host, c.port) = answer(key)
                return c
            }
        } else {
            (resp.errorCode, resp.nodeId, resp.host, resp.port) = answer(r.key)
        }
        return resp
    }
}
