import KafkaProtocol

extension Broker {
    /// EndpointType of DescribeCluster v1+ (org.apache.kafka.clients.admin.EndpointType).
    static let brokerEndpointType: Int8 = 1
    static let controllerEndpointType: Int8 = 2

    /// KafkaApis.handleDescribeCluster (AuthHelper.computeDescribeClusterResponse): this broker
    /// is the whole cluster and, in KRaft terms, the controller id a broker endpoint reports
    /// is an alive broker: this one. A request for another endpoint type fails as Kafka's does.
    func describeCluster(_ r: DescribeClusterRequest, version: Int16) -> DescribeClusterResponse {
        var resp = DescribeClusterResponse()
        switch r.endpointType {
        case Self.brokerEndpointType:
            break
        case Self.controllerEndpointType:
            resp.errorCode = (version == 0 ? ErrorCode.invalidRequest : .mismatchedEndpointType).rawValue
            resp.errorMessage = "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
            return resp
        default:
            resp.errorCode = (version == 0 ? ErrorCode.invalidRequest : .unsupportedEndpointType).rawValue
            resp.errorMessage = "Unsupported endpoint type \(r.endpointType)"
            return resp
        }
        resp.endpointType = Self.brokerEndpointType
        resp.clusterId = clusterId
        resp.controllerId = config.nodeId
        var me = DescribeClusterResponse.DescribeClusterBroker()
        me.brokerId = config.nodeId
        me.host = config.advertise.host
        me.port = Int32(config.advertise.port)
        me.rack = nil
        resp.brokers = [me]
        if r.includeClusterAuthorizedOperations { resp.clusterAuthorizedOperations = AuthorizedOperations.cluster }
        return resp
    }

    /// KafkaApis.handleDescribeLogDirsRequest / ReplicaManager.describeLogDirs. Tern's one
    /// "log dir" is the object store, named by its URL. A partition's size is the bytes of
    /// its record batches already written to the object store (the engine's object index;
    /// batches still in the WAL buffer are not counted); its offset lag is 0 (no future
    /// replicas). Total and usable bytes are -1, Kafka's "unknown": a bucket has no fixed
    /// capacity. Partitions not asked for or not hosted are left out, and so are topics left
    /// with none, as Kafka does.
    func describeLogDirs(_ r: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
        var wanted: [String: Set<Int32>]?
        if let topics = r.topics {
            var w: [String: Set<Int32>] = [:]
            for t in topics { w[t.topic, default: []].formUnion(t.partitions) }
            wanted = w
        }
        var dir = DescribeLogDirsResponse.DescribeLogDirsResult()
        dir.logDir = config.objectStoreURL
        dir.totalBytes = -1
        dir.usableBytes = -1
        for t in allTopics() {
            if let wanted, wanted[t.name] == nil { continue }
            var tr = DescribeLogDirsResponse.DescribeLogDirsResult.DescribeLogDirsTopic()
            tr.name = t.name
            for (i, sid) in t.streamIds.enumerated() {
                if let wanted, !(wanted[t.name]?.contains(Int32(i)) ?? false) { continue }
                guard let size = engine.storedBytes(streamId: sid) else { continue }
                var pr = DescribeLogDirsResponse.DescribeLogDirsResult.DescribeLogDirsTopic.DescribeLogDirsPartition()
                pr.partitionIndex = Int32(i)
                pr.partitionSize = size
                pr.offsetLag = 0
                pr.isFutureKey = false
                tr.partitions.append(pr)
            }
            if !tr.partitions.isEmpty { dir.topics.append(tr) }
        }
        var resp = DescribeLogDirsResponse()
        resp.results = [dir]
        return resp
    }
}
