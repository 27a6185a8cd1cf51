#if Kafka
import CRdKafka
import Foundation
import Logging
import Messaging
import Synchronization

/// What the C callbacks of one `rd_kafka_t` need. A `@convention(c)` callback cannot capture
/// anything, so the handle carries a retained pointer to this as its conf opaque and every
/// callback gets it back with `rd_kafka_opaque(rk)`.
final class ClientContext: Sendable {
    let logger: Logger
    /// Told about every assignment change of a group consumer (runs on its polling queue).
    let onRebalance: (@Sendable (RebalanceEvent) -> Void)?
    /// Where a group consumer starts the partitions assigned to it (nil: the committed offsets).
    let positions: StartPositions?
    /// The first fatal error librdkafka raised on this handle: after it the handle is useless.
    let fatalError = Mutex<KafkaError?>(nil)
    /// Set when partitions were assigned without knowing where to start them.
    private let assignmentFailure = Mutex<KafkaError?>(nil)

    init(
        logger: Logger, positions: StartPositions? = nil, onRebalance: (@Sendable (RebalanceEvent) -> Void)? = nil
    ) {
        self.logger = logger
        self.positions = positions
        self.onRebalance = onRebalance
    }

    func recordAssignmentFailure(_ error: KafkaError) {
        assignmentFailure.withLock { if $0 == nil { $0 = error } }
    }

    func takeAssignmentFailure() -> KafkaError? {
        assignmentFailure.withLock { failure in
            defer { failure = nil }
            return failure
        }
    }

    /// The context of the handle `rk`; valid while the handle exists.
    static func of(_ rk: OpaquePointer?) -> ClientContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

/// One `rd_kafka_t` and the context its callbacks use. It does not decide who may call it
/// when: its owners (`KafkaProducer`, `SerialClient`) do, and they call `destroy()` once, after
/// their last use.
final class ClientHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let context: ClientContext
    private let retainedContext: Unmanaged<ClientContext>

    /// - Parameter configure: sets the role's callbacks (delivery report, rebalance) on the conf.
    init(
        kind: rd_kafka_type_t, properties: [(String, String)], context: ClientContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        let conf = rd_kafka_conf_new()!
        var errstr = [CChar](repeating: 0, count: 512)
        for (key, value) in properties {
            guard rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                // Not the value: it may be a secret (sasl.password).
                throw .client("configuration \(key) refused: \(String(errorBuffer: errstr))")
            }
        }
        rd_kafka_conf_set_log_cb(conf, logCallback)
        rd_kafka_conf_set_error_cb(conf, errorCallback)
        configure(conf)
        let retained = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())

        // On success the handle owns the conf; on failure it is still ours.
        guard let rk = rd_kafka_new(kind, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            retained.release()
            throw .client("cannot create the Kafka client: \(String(errorBuffer: errstr))")
        }
        pointer = rk
        self.context = context
        retainedContext = retained
    }

    /// Destroys the handle (blocking until its threads have stopped), then drops the context
    /// that its callbacks could still have used until then.
    func destroy() {
        rd_kafka_destroy(pointer)
        retainedContext.release()
    }

    /// The fatal error raised on this handle, if any.
    var fatalError: KafkaError? { context.fatalError.withLock { $0 } }
}

/// The base properties of every client of the transport.
func baseProperties(_ settings: KafkaSettings) -> [(String, String)] {
    [
        ("bootstrap.servers", settings.brokers),
        ("client.id", settings.clientId),
        // Logs go to the log callback (set on every conf), called from librdkafka's threads,
        // instead of stderr.
        ("log.queue", "false"),
    ]
}

/// librdkafka's logs, with syslog levels, go to swift-log.
private let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void =
    { rk, level, facility, message in
        guard let context = ClientContext.of(rk) else { return }
        let logLevel: Logger.Level =
            switch level {
            case ...2: .critical
            case 3: .error
            case 4: .warning
            case 5: .notice
            case 6: .info
            default: .debug
            }
        context.logger.log(
            level: logLevel, "\(message.map { String(cString: $0) } ?? "")",
            metadata: [
                "librdkafka.facility": "\(facility.map { String(cString: $0) } ?? "")",
                "kafka.client": "\(rk.map { String(cString: rd_kafka_name($0)) } ?? "")",
            ])
    }

/// Errors librdkafka raises outside any request: most are passing (a broker went away, the
/// client reconnects by itself) and only logged; a fatal one is kept so the owner stops.
private let errorCallback:
    @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void =
        { rk, code, reason, _ in
            guard let rk, let context = ClientContext.of(rk) else { return }
            let reasonText = reason.map { String(cString: $0) } ?? ""
            if code == RD_KAFKA_RESP_ERR__FATAL.rawValue {
                var errstr = [CChar](repeating: 0, count: 512)
                let underlying = rd_kafka_fatal_error(rk, &errstr, errstr.count)
                let error = KafkaError(
                    code: underlying.rawValue, name: String(cString: rd_kafka_err2name(underlying)),
                    message: String(errorBuffer: errstr), isRetriable: false, isFatal: true)
                context.fatalError.withLock { if $0 == nil { $0 = error } }
                context.logger.critical("fatal Kafka client error", metadata: ["error": "\(error)"])
            } else {
                let error = KafkaError(rd_kafka_resp_err_t(rawValue: code), detail: reasonText)
                // Brokers coming and going is what the client is built to ride out.
                context.logger.log(
                    level: error.isRetriable ? .notice : .error, "Kafka client error", metadata: ["error": "\(error)"])
            }
        }

extension String {
    /// The NUL-terminated text librdkafka wrote into an `errstr` buffer.
    init(errorBuffer buffer: [CChar]) {
        self = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

#endif
