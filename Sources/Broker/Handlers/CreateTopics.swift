import KafkaProtocol

extension Broker {
    func createTopics(_ r: CreateTopicsRequest, version: Int16) async -> CreateTopicsResponse {
        var resp = CreateTopicsResponse()
        var seen: [String: Int] = [:]
        for t in r.topics { seen[t.name, default: 0] += 1 }
        for t in r.topics {
            var out = CreateTopicsResponse.CreatableTopicResult()
            out.name = t.name
            func fail(_ code: ErrorCode, _ message: String) {
                out.errorCode = code.rawValue
                out.errorMessage = message
                out.numPartitions = -1
                out.replicationFactor = -1
                out.configs = nil
            }
            let partitions = t.assignments.isEmpty ? (t.numPartitions == -1 ? config.numPartitions : t.numPartitions) : Int32(t.assignments.count)
            var configs: [String: String] = [:]
            var configError: String?
            for c in t.configs {
                if let e = TopicConfigs.validate(c.name, c.value) { configError = e; break }
                if let v = c.value { configs[c.name] = v }
            }
            if seen[t.name, default: 0] > 1 {
                fail(.invalidRequest, "Create topics request from client contains duplicate topic \(t.name)")
            } else if !TopicName.isValid(t.name) {
                fail(.invalidTopicException, "Topic name \(t.name) is illegal")
            } else if !t.assignments.isEmpty && (t.numPartitions != -1 || t.replicationFactor != -1) {
                fail(.invalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set")
            } else if partitions <= 0 {
                fail(.invalidPartitions, "Number of partitions must be larger than 0")
            } else if t.replicationFactor == 0 || t.replicationFactor < -1 {
                fail(.invalidReplicationFactor, "Replication factor must be larger than 0, or -1 to use the default")
            } else if let configError {
                fail(.invalidConfig, configError)
            } else if topic(t.name) != nil {
                fail(.topicAlreadyExists, "Topic '\(t.name)' already exists.")
            } else if r.validateOnly {
                out.numPartitions = partitions
            } else {
                do {
                    let created = try await createTopic(name: t.name, partitions: Int(partitions), configs: configs)
                    out.topicId = created.id
                    out.numPartitions = partitions
                } catch .exists {
                    fail(.topicAlreadyExists, "Topic '\(t.name)' already exists.")
                } catch {
                    fail(.unknownServerError, "\(error)")
                }
            }
            if out.errorCode == 0 {
                out.replicationFactor = t.replicationFactor == -1 ? config.defaultReplicationFactor : t.replicationFactor
                out.configs = describeTopicConfigs(configs).map {
                    var c = CreateTopicsResponse.CreatableTopicResult.CreatableTopicConfigs()
                    c.name = $0.name
                    c.value = $0.value
                    c.configSource = $0.source
                    return c
                }
            }
            resp.topics.append(out)
        }
        return resp
    }

    /// Every topic config with its value and source (1 = topic override, 5 = default).
    func describeTopicConfigs(_ overrides: [String: String]) -> [(name: String, value: String, source: Int8)] {
        TopicConfigs.defaults(messageMaxBytes: config.messageMaxBytes, retentionBytes: config.retentionBytes).map { name, value in
            if let o = overrides[name] { return (name, o, 1) }
            return (name, value, 5)
        }
    }
}
