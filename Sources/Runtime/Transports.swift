import Audit
import Foundation
import Logging
import Messaging
import MessagingLocal
import ServiceKit

#if Kafka
import MessagingKafka
#endif

/// The event transport of a process, its loops and how to close it.
struct Transport: Sendable {
    let events: any EventTransport
    let close: @Sendable () async -> Void
    /// Its long-running work, for the process's service group.
    var loops: [Loop] = []

    /// Kafka when brokers are configured (and this binary was built with the Kafka trait), else
    /// the local event log under the data directory.
    static func open(_ configuration: HospitalConfiguration, clientId: String, logger: Logger) async throws -> Transport
    {
        guard let brokers = configuration.kafkaBrokers else {
            // The log holds patient names: only the owner may read it (0700 directory, 0600 file).
            try DataDirectory.prepare(configuration.dataDirectory)
            try DataDirectory.createPrivateFile(
                configuration.dataDirectory.appendingPathComponent(LocalEventLog.fileName))
            let log = try await LocalEventLog.open(
                directory: configuration.dataDirectory, pollInterval: configuration.logPollInterval, logger: logger)
            guard let keep = configuration.eventLogRetention else {
                return Transport(events: log, close: { await log.close() })
            }
            return Transport(
                events: log, close: { await log.close() },
                loops: [Loop("event log retention") { await log.runRetention(keep: keep) }])
        }
        #if Kafka
        let kafka = try KafkaTransport(
            settings: KafkaSettings(
                brokers: brokers, clientId: clientId, properties: configuration.kafkaProperties,
                deliveryTimeout: configuration.kafkaDeliveryTimeout, sessionTimeout: configuration.kafkaSessionTimeout,
                instanceId: configuration.kafkaInstanceId),
            logger: logger)
        try await kafka.ensureTopic(
            configuration.kafkaTopic, partitions: configuration.kafkaPartitions,
            replicationFactor: configuration.kafkaReplicationFactor)
        // The audit trails' checkpoints: few and small, one partition keeps them in order. Without
        // the topic (no KafkaTopic, no right to create one) the services still serve; checkpoints
        // then go to the logs only, and each failed publish says so.
        do {
            try await kafka.ensureTopic(
                AuditTrail.checkpointTopic, partitions: 1, replicationFactor: configuration.kafkaReplicationFactor)
        } catch {
            logger.error(
                "the audit checkpoints' topic \(AuditTrail.checkpointTopic) is missing and could not be created: checkpoints go to the logs only",
                metadata: ["error": "\(loggable(error))"])
        }
        let named = NamedTransport(
            inner: kafka, topic: configuration.kafkaTopic, groupPrefix: configuration.kafkaGroupPrefix)
        return Transport(events: named, close: { await kafka.shutdown() })
        #else
        throw ConfigurationError(
            "HOSPITAL_KAFKA_BROKERS is set, but this hospital binary was built without Kafka: "
                + "build it with `swift build --traits Kafka` (needs librdkafka-dev)")
        #endif
    }

    /// For work that publishes and consumes nothing (migrations).
    static var none: Transport { Transport(events: Disconnected(), close: {}) }
}

/// A transport that is not there: for commands that must not need one.
private struct Disconnected: EventTransport {
    struct NotConnected: Error {}
    func publish(_ messages: [OutgoingMessage]) async throws { throw NotConnected() }
    func consume(
        topics: [String], group: String, batchSize: Int, positions: StartPositions?,
        handler: @escaping @Sendable ([IncomingMessage]) async throws -> Void
    ) async throws { throw NotConnected() }
    func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        throw NotConnected()
    }
}
