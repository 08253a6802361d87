/// Why a client operation failed: the connection (refused, closed, timed out), a broker that
/// does not speak an API we need, a response we cannot parse, or a Kafka error code.
///
/// `description` is written for people: it names the broker and, for Kafka errors, the error
/// code by its Kafka name (`UNKNOWN_TOPIC_OR_PARTITION`), so a CLI can print it as is.
public struct KafkaClientError: Error, CustomStringConvertible, Sendable {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: Sendable, Hashable {
            case connectionFailed, connectionClosed, timedOut, unsupportedVersion, protocolViolation, kafka
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Could not connect (refused, unreachable, unknown host).
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection closed before a response arrived.
        public static let connectionClosed = Code(.connectionClosed)
        /// No response within the request timeout (the connection is then closed).
        public static let timedOut = Code(.timedOut)
        /// The broker does not offer an API, or no version both sides support.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// The broker sent bytes we cannot parse, or a response to no request.
        public static let protocolViolation = Code(.protocolViolation)
        /// The broker answered with a Kafka error code (see `kafkaErrorCode`).
        public static let kafka = Code(.kafka)

        public var description: String { "\(base)" }
    }

    public var code: Code
    /// The Kafka error code when `code == .kafka`.
    public var kafkaErrorCode: Int16?
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A Kafka error code from a response; `context` says what failed ("topic 'x'"), and
    /// `brokerMessage` is the response's error message, if it carried one.
    public init(kafka errorCode: Int16, _ context: String, brokerMessage: String? = nil) {
        self.code = .kafka
        self.kafkaErrorCode = errorCode
        var m = "\(context): \(KafkaErrorCodes.name(errorCode))"
        if let brokerMessage, !brokerMessage.isEmpty { m += " (\(brokerMessage))" }
        self.message = m
    }

    /// Kafka errors that a retry after a metadata refresh may clear (`RetriableException` in
    /// the Java client), restricted to those where the request was certainly not applied.
    public var isRetriableWithoutDuplicates: Bool {
        guard code == .kafka, let c = kafkaErrorCode else { return false }
        return KafkaErrorCodes.notAppliedRetriable.contains(c)
    }

    public var description: String { message }
}

/// Kafka's error codes by name (org.apache.kafka.common.protocol.Errors).
public enum KafkaErrorCodes {
    /// The Kafka name of an error code, or `ERROR_<code>` for one this table does not know.
    public static func name(_ code: Int16) -> String {
        let i = Int(code) + 1
        if i >= 0, i < names.count { return names[i] }
        return "ERROR_\(code)"
    }

    /// Retriable errors after which a produce or fetch was certainly not applied.
    static let notAppliedRetriable: Set<Int16> = [
        3,   // UNKNOWN_TOPIC_OR_PARTITION (a topic being created)
        5,   // LEADER_NOT_AVAILABLE
        6,   // NOT_LEADER_OR_FOLLOWER
        74,  // FENCED_LEADER_EPOCH
        75,  // UNKNOWN_LEADER_EPOCH
    ]

    /// Index = code + 1 (the table starts at -1).
    private static let names: [String] = [
        "UNKNOWN_SERVER_ERROR", "NONE", "OFFSET_OUT_OF_RANGE", "CORRUPT_MESSAGE", "UNKNOWN_TOPIC_OR_PARTITION",
        "INVALID_FETCH_SIZE", "LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "REQUEST_TIMED_OUT",
        "BROKER_NOT_AVAILABLE", "REPLICA_NOT_AVAILABLE", "MESSAGE_TOO_LARGE", "STALE_CONTROLLER_EPOCH",
        "OFFSET_METADATA_TOO_LARGE", "NETWORK_EXCEPTION", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR", "INVALID_TOPIC_EXCEPTION", "RECORD_LIST_TOO_LARGE", "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "INVALID_REQUIRED_ACKS", "ILLEGAL_GENERATION", "INCONSISTENT_GROUP_PROTOCOL",
        "INVALID_GROUP_ID", "UNKNOWN_MEMBER_ID", "INVALID_SESSION_TIMEOUT", "REBALANCE_IN_PROGRESS",
        "INVALID_COMMIT_OFFSET_SIZE", "TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED", "INVALID_TIMESTAMP", "UNSUPPORTED_SASL_MECHANISM", "ILLEGAL_SASL_STATE",
        "UNSUPPORTED_VERSION", "TOPIC_ALREADY_EXISTS", "INVALID_PARTITIONS", "INVALID_REPLICATION_FACTOR",
        "INVALID_REPLICA_ASSIGNMENT", "INVALID_CONFIG", "NOT_CONTROLLER", "INVALID_REQUEST",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT", "POLICY_VIOLATION", "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "DUPLICATE_SEQUENCE_NUMBER", "INVALID_PRODUCER_EPOCH", "INVALID_TXN_STATE", "INVALID_PRODUCER_ID_MAPPING",
        "INVALID_TRANSACTION_TIMEOUT", "CONCURRENT_TRANSACTIONS", "TRANSACTION_COORDINATOR_FENCED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "SECURITY_DISABLED", "OPERATION_NOT_ATTEMPTED", "KAFKA_STORAGE_ERROR",
        "LOG_DIR_NOT_FOUND", "SASL_AUTHENTICATION_FAILED", "UNKNOWN_PRODUCER_ID", "REASSIGNMENT_IN_PROGRESS",
        "DELEGATION_TOKEN_AUTH_DISABLED", "DELEGATION_TOKEN_NOT_FOUND", "DELEGATION_TOKEN_OWNER_MISMATCH",
        "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", "DELEGATION_TOKEN_AUTHORIZATION_FAILED", "DELEGATION_TOKEN_EXPIRED",
        "INVALID_PRINCIPAL_TYPE", "NON_EMPTY_GROUP", "GROUP_ID_NOT_FOUND", "FETCH_SESSION_ID_NOT_FOUND",
        "INVALID_FETCH_SESSION_EPOCH", "LISTENER_NOT_FOUND", "TOPIC_DELETION_DISABLED", "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH", "UNSUPPORTED_COMPRESSION_TYPE", "STALE_BROKER_EPOCH", "OFFSET_NOT_AVAILABLE",
        "MEMBER_ID_REQUIRED", "PREFERRED_LEADER_NOT_AVAILABLE", "GROUP_MAX_SIZE_REACHED", "FENCED_INSTANCE_ID",
        "ELIGIBLE_LEADERS_NOT_AVAILABLE", "ELECTION_NOT_NEEDED", "NO_REASSIGNMENT_IN_PROGRESS",
        "GROUP_SUBSCRIBED_TO_TOPIC", "INVALID_RECORD", "UNSTABLE_OFFSET_COMMIT", "THROTTLING_QUOTA_EXCEEDED",
        "PRODUCER_FENCED", "RESOURCE_NOT_FOUND", "DUPLICATE_RESOURCE", "UNACCEPTABLE_CREDENTIAL",
        "INCONSISTENT_VOTER_SET", "INVALID_UPDATE_VERSION", "FEATURE_UPDATE_FAILED", "PRINCIPAL_DESERIALIZATION_FAILURE",
        "SNAPSHOT_NOT_FOUND", "POSITION_OUT_OF_RANGE", "UNKNOWN_TOPIC_ID", "DUPLICATE_BROKER_REGISTRATION",
        "BROKER_ID_NOT_REGISTERED", "INCONSISTENT_TOPIC_ID", "INCONSISTENT_CLUSTER_ID", "TRANSACTIONAL_ID_NOT_FOUND",
        "FETCH_SESSION_TOPIC_ID_ERROR", "INELIGIBLE_REPLICA", "NEW_LEADER_ELECTED", "OFFSET_MOVED_TO_TIERED_STORAGE",
        "FENCED_MEMBER_EPOCH", "UNRELEASED_INSTANCE_ID", "UNSUPPORTED_ASSIGNOR", "STALE_MEMBER_EPOCH",
        "MISMATCHED_ENDPOINT_TYPE", "UNSUPPORTED_ENDPOINT_TYPE", "UNKNOWN_CONTROLLER_ID", "UNKNOWN_SUBSCRIPTION_ID",
        "TELEMETRY_TOO_LARGE", "INVALID_REGISTRATION", "TRANSACTION_ABORTABLE", "INVALID_RECORD_STATE",
        "SHARE_SESSION_NOT_FOUND", "INVALID_SHARE_SESSION_EPOCH", "FENCED_STATE_EPOCH", "INVALID_VOTER_KEY",
        "DUPLICATE_VOTER", "VOTER_NOT_FOUND",
    ]
}
