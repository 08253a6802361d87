import KafkaProtocol

extension Broker {
    static let topicResource: Int8 = 2
    static let brokerResource: Int8 = 4

    func describeConfigs(_ r: DescribeConfigsRequest, version: Int16) -> DescribeConfigsResponse {
        var resp = DescribeConfigsResponse()
        for res in r.resources {
            var out = DescribeConfigsResponse.DescribeConfigsResult()
            out.resourceType = res.resourceType
            out.resourceName = res.resourceName
            var entries: [(name: String, value: String, source: Int8, readOnly: Bool)] = []
            switch res.resourceType {
            case Self.topicResource:
                guard let t = topic(res.resourceName) else {
                    out.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    out.errorMessage = "Topic \(res.resourceName) does not exist"
                    resp.results.append(out)
                    continue
                }
                entries = describeTopicConfigs(t.configs).map { ($0.name, $0.value, $0.source, false) }
            case Self.brokerResource:
                guard res.resourceName.isEmpty || res.resourceName == String(config.nodeId) else {
                    out.errorCode = ErrorCode.invalidRequest.rawValue
                    out.errorMessage = "Unexpected broker id, expected \(config.nodeId) but received \(res.resourceName)"
                    resp.results.append(out)
                    continue
                }
                entries = [
                    ("auto.create.topics.enable", String(config.autoCreateTopics), 4, true),
                    ("num.partitions", String(config.numPartitions), 4, true),
                    ("default.replication.factor", String(config.defaultReplicationFactor), 4, true),
                    ("message.max.bytes", String(config.messageMaxBytes), 4, true),
                    ("socket.request.max.bytes", String(config.socketRequestMaxBytes), 4, true),
                    ("offset.metadata.max.bytes", String(config.offsetMetadataMaxBytes), 4, true),
                    ("node.id", String(config.nodeId), 4, true),
                ]
                if !res.resourceName.isEmpty {
                    // Dynamic, per broker (DYNAMIC_BROKER_CONFIG = 1 when set, else DEFAULT_CONFIG = 5).
                    let draining = isDraining
                    entries.append((Self.drainingConfig, String(draining), draining ? 1 : 5, false))
                }
            default:
                out.errorCode = ErrorCode.invalidRequest.rawValue
                out.errorMessage = "Unsupported resource type \(res.resourceType)"
                resp.results.append(out)
                continue
            }
            let wanted = res.configurationKeys.map(Set.init)
            out.configs = entries.filter { wanted?.contains($0.name) ?? true }.map { e in
                var c = DescribeConfigsResponse.DescribeConfigsResult.DescribeConfigsResourceResult()
                c.name = e.name
                c.value = e.value
                c.readOnly = e.readOnly
                c.configSource = e.source
                c.isSensitive = false
                if r.includeSynonyms {
                    var s = DescribeConfigsResponse.DescribeConfigsResult.DescribeConfigsResourceResult.DescribeConfigsSynonym()
                    s.name = e.name
                    s.value = e.value
                    s.source = e.source
                    c.synonyms = [s]
                }
                return c
            }
            resp.results.append(out)
        }
        return resp
    }
}
