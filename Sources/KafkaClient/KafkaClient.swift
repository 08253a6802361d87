import KafkaProtocol
import NIOCore
import NIOPosix

/// A client of a Kafka cluster: bootstrap addresses, one connection per broker, and the
/// broker addresses learnt from Metadata so requests can go to a partition's leader.
///
/// An actor because it only hands out connections (the control plane); requests themselves
/// go straight to a `KafkaConnection`, which pipelines them.
public actor KafkaClient {
    public let bootstrap: [BrokerAddress]
    public let configuration: KafkaClientConfiguration
    private let group: any EventLoopGroup
    private var connections: [BrokerAddress: Task<KafkaConnection, any Error>] = [:]
    private var nodes: [Int32: BrokerAddress] = [:]
    private var controllerId: Int32?
    /// Group coordinators found by FindCoordinator (KafkaClient+Groups.swift).
    var groupCoordinators: [String: GroupCoordinator] = [:]

    public init(bootstrap: [BrokerAddress], configuration: KafkaClientConfiguration = .init(),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        precondition(!bootstrap.isEmpty, "at least one bootstrap address")
        self.bootstrap = bootstrap
        self.configuration = configuration
        self.group = group
    }

    /// A connection to any broker: an open one if there is one, else the bootstrap addresses
    /// in order. The error names every address tried.
    public func anyConnection() async throws -> KafkaConnection {
        for (_, task) in connections {
            if let c = try? await task.value, c.isActive { return c }
        }
        var failures: [String] = []
        for address in bootstrap {
            do {
                return try await connection(to: address)
            } catch let e as KafkaClientError where e.code == .connectionFailed {
                failures.append(e.message)
            }
        }
        throw KafkaClientError(.connectionFailed, failures.joined(separator: "; "))
    }

    /// The connection to a broker by node id, as learnt from the last Metadata response.
    public func connection(node: Int32) async throws -> KafkaConnection {
        guard let address = nodes[node] else {
            throw KafkaClientError(.connectionFailed, "broker \(node) is not in the cluster metadata")
        }
        return try await connection(to: address)
    }

    /// The connection to an address, opened once and shared; reopened if it has closed.
    public func connection(to address: BrokerAddress) async throws -> KafkaConnection {
        if let task = connections[address] {
            if let c = try? await task.value, c.isActive { return c }
            // Another caller may have replaced it while we waited.
            if let again = connections[address], again != task { return try await connection(to: address) }
        }
        let configuration = self.configuration
        let group = self.group
        let task = Task { try await KafkaConnection.connect(to: address, configuration: configuration, group: group) }
        connections[address] = task
        do {
            return try await task.value
        } catch {
            if connections[address] == task { connections[address] = nil }
            throw error
        }
    }

    /// Metadata for `topics` (nil: every topic), from any broker. Remembers the brokers and
    /// the controller for `connection(node:)` and `controller()`.
    public func metadata(topics: [String]?, allowAutoTopicCreation: Bool = false) async throws -> MetadataResponse {
        let conn = try await anyConnection()
        var request = MetadataRequest()
        request.topics = topics?.map {
            var t = MetadataRequest.MetadataRequestTopic()
            t.name = $0
            return t
        }
        request.allowAutoTopicCreation = allowAutoTopicCreation
        let response = try await conn.send(request)
        for b in response.brokers { nodes[b.nodeId] = BrokerAddress(host: b.host, port: Int(b.port)) }
        controllerId = response.controllerId >= 0 ? response.controllerId : nil
        return response
    }

    /// The controller's connection, for topic creation and deletion (KRaft brokers forward
    /// these, but the controller is the one that acts). Falls back to any broker.
    public func controller() async throws -> KafkaConnection {
        if controllerId == nil { _ = try await metadata(topics: []) }
        if let id = controllerId, nodes[id] != nil, let c = try? await connection(node: id) { return c }
        return try await anyConnection()
    }

    public func close() async {
        let all = connections.values
        connections = [:]
        for task in all {
            if let c = try? await task.value { await c.close() }
        }
    }
}
