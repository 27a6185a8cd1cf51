#if Kafka
import CRdKafka

/// A failure reported by librdkafka, with its error code.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// The `rd_kafka_resp_err_t` value: negative codes are the client's own (`__TRANSPORT`,
    /// `__MSG_TIMED_OUT`, …), positive ones come from a broker.
    public let code: Int32
    /// librdkafka's symbolic name of the code, e.g. `_MSG_TIMED_OUT`.
    public let name: String
    /// What went wrong, in librdkafka's words plus any detail it gave.
    public let message: String
    /// Trying the same thing again later may succeed (the broker was away, a leader moved, …).
    public let isRetriable: Bool
    /// The client instance can no longer be used (e.g. the idempotent producer lost its state).
    public let isFatal: Bool

    public var description: String { "KafkaError \(name) (\(code)): \(message)" }

    init(code: Int32, name: String, message: String, isRetriable: Bool, isFatal: Bool = false) {
        self.code = code
        self.name = name
        self.message = message
        self.isRetriable = isRetriable
        self.isFatal = isFatal
    }

    /// From a plain error code, with an optional detail (e.g. `rd_kafka_message_errstr`).
    init(_ err: rd_kafka_resp_err_t, detail: String? = nil) {
        let text = String(cString: rd_kafka_err2str(err))
        let message = detail.map { $0.isEmpty || $0 == text ? text : "\(text): \($0)" } ?? text
        self.init(
            code: err.rawValue, name: String(cString: rd_kafka_err2name(err)), message: message,
            isRetriable: Self.retriableCodes.contains(err.rawValue), isFatal: err == RD_KAFKA_RESP_ERR__FATAL)
    }

    /// From an `rd_kafka_error_t`, which knows itself whether it is retriable; destroys it.
    init(consuming error: OpaquePointer) {
        let err = rd_kafka_error_code(error)
        self.init(
            code: err.rawValue, name: String(cString: rd_kafka_error_name(error)),
            message: String(cString: rd_kafka_error_string(error)),
            isRetriable: rd_kafka_error_is_retriable(error) != 0 || Self.retriableCodes.contains(err.rawValue),
            isFatal: rd_kafka_error_is_fatal(error) != 0)
        rd_kafka_error_destroy(error)
    }

    /// A failure of this transport's own making, e.g. a configuration it refused.
    static func client(_ message: String, isRetriable: Bool = false) -> KafkaError {
        KafkaError(
            code: RD_KAFKA_RESP_ERR__FAIL.rawValue, name: "_FAIL", message: message, isRetriable: isRetriable)
    }

    /// Codes that describe a passing condition of the cluster or the network rather than a
    /// mistake: the broker may not say so itself through a plain code, so the list is ours.
    private static let retriableCodes: Set<Int32> = Set(
        [
            RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
            RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__PURGE_QUEUE,
            RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, RD_KAFKA_RESP_ERR__WAIT_COORD, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
            RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR__RESOLVE, RD_KAFKA_RESP_ERR__NODE_UPDATE,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
            RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND, RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_PREFERRED_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED,
        ].map(\.rawValue))
}

extension rd_kafka_resp_err_t {
    /// Throws unless this is `NO_ERROR`.
    func check(_ detail: @autoclosure () -> String? = nil) throws(KafkaError) {
        if self != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(self, detail: detail()) }
    }
}

#endif
