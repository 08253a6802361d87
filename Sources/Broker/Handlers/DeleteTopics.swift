import KafkaProtocol

extension Broker {
    func deleteTopics(_ r: DeleteTopicsRequest, version: Int16) async -> DeleteTopicsResponse {
        var resp = DeleteTopicsResponse()
        let targets: [(name: String?, id: KafkaUUID)] = version >= 6
            ? r.topics.map { ($0.name, $0.topicId) }
            : r.topicNames.map { ($0, .zero) }
        for target in targets {
            var out = DeleteTopicsResponse.DeletableTopicResult()
            out.topicId = target.id
            let name = target.name ?? topic(id: target.id)?.name
            out.name = name
            guard let name, topic(name) != nil else {
                out.errorCode = (target.name == nil ? ErrorCode.unknownTopicId : .unknownTopicOrPartition).rawValue
                resp.responses.append(out)
                continue
            }
            if target.name != nil { out.topicId = topic(name)?.id ?? .zero }
            do {
                if try await !deleteTopic(name: name) { out.errorCode = ErrorCode.unknownTopicOrPartition.rawValue }
            } catch {
                out.errorCode = ErrorCode.unknownServerError.rawValue
                out.errorMessage = "\(error)"
            }
            resp.responses.append(out)
        }
        return resp
    }
}
