/// The "authorized operations" bitfields of DescribeCluster, DescribeGroups,
/// ConsumerGroupDescribe and DescribeTopicPartitions: bit `n` set for AclOperation code `n`.
///
/// With no authorizer configured Kafka reports every operation the resource type supports
/// (`AuthHelper.authorizedOperations` with `authorizer == None` returns
/// `AclEntry.supportedOperations(resourceType)`), and Tern has no authorizer yet (issue 9).
enum AuthorizedOperations {
    // org.apache.kafka.common.acl.AclOperation codes.
    static let read: Int32 = 3
    static let write: Int32 = 4
    static let create: Int32 = 5
    static let delete: Int32 = 6
    static let alter: Int32 = 7
    static let describe: Int32 = 8
    static let clusterAction: Int32 = 9
    static let describeConfigs: Int32 = 10
    static let alterConfigs: Int32 = 11
    static let idempotentWrite: Int32 = 12

    static func bits(_ operations: [Int32]) -> Int32 {
        operations.reduce(0) { $0 | (1 << $1) }
    }

    /// AclEntry.supportedOperations(CLUSTER).
    static let cluster = bits([create, clusterAction, describeConfigs, alterConfigs, idempotentWrite, alter, describe])
    /// AclEntry.supportedOperations(TOPIC).
    static let topic = bits([read, write, create, describe, delete, alter, describeConfigs, alterConfigs])
    /// AclEntry.supportedOperations(GROUP).
    static let group = bits([read, describe, delete, describeConfigs, alterConfigs])
}
