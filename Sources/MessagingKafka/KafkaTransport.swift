import CRdKafka
import Foundation
import Logging
import Messaging

/// The scale-out event transport: Apache Kafka through librdkafka.
///
/// - `publish` returns once every message has a successful delivery report from an idempotent
///   producer with `acks=all` (in order per partition; the key chooses the partition).
/// - `consume` is one consumer group member per call. It stores a message's offset only after
///   the handler returned; if the handler throws it seeks back and delivers the message again.
/// - `replay` reads every partition from its beginning up to its end at the time of the call.
///
/// Call `shutdown()` when done: it waits for messages still in flight.
public final class KafkaTransport: EventTransport {
    public let settings: KafkaSettings
    private let logger: Logger
    private let producer: KafkaProducer

    public init(settings: KafkaSettings, logger: Logger) throws {
        var logger = logger
        logger[metadataKey: "kafka.clientId"] = "\(settings.clientId)"
        self.settings = settings
        self.logger = logger
        producer = try KafkaProducer(settings: settings, logger: logger)
    }

    /// Flushes what is still in flight (at most `flushTimeout`), fails what is left, and
    /// releases the producer. Consumers stop when their tasks are canceled.
    public func shutdown(flushTimeout: Duration = .seconds(5)) async {
        await producer.close(flushTimeout: flushTimeout)
    }

    // MARK: EventPublisher

    public func publish(_ messages: [OutgoingMessage]) async throws {
        try await producer.publish(messages)
    }

    // MARK: EventSubscriber

    public func consume(
        topics: [String], group: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws {
        try await consume(topics: topics, group: group, onRebalance: nil, handler: handler)
    }

    /// `consume`, telling `onRebalance` each time this member's partitions change (on the
    /// consumer's polling queue: keep it short).
    public func consume(
        topics: [String], group: String, onRebalance: (@Sendable (RebalanceEvent) -> Void)?,
        handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws {
        let consumer = try await GroupConsumer.open(
            topics: topics, group: group, settings: settings, logger: logger, onRebalance: onRebalance)
        try await consumer.run(handler)
    }

    // MARK: EventHistory

    public func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        try await HistoryReader(settings: settings, logger: logger).replay(topic: topic, handler: handler)
    }

    // MARK: Administration

    /// Creates the topic unless it already exists (an existing topic is left as it is).
    public func ensureTopic(_ name: String, partitions: Int, replicationFactor: Int) async throws {
        try await KafkaAdmin(settings: settings, logger: logger).ensureTopic(
            name, partitions: partitions, replicationFactor: replicationFactor)
    }

    /// The next offset `group` will read in each partition of `topic` (partitions it never
    /// committed are left out): its position, for lag and for checks.
    public func committedOffsets(topic: String, group: String) async throws -> [Int32: Int64] {
        try await KafkaAdmin(settings: settings, logger: logger).committedOffsets(topic: topic, group: group)
    }
}
