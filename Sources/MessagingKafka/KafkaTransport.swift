#if Kafka
import CRdKafka
import Foundation
import Logging
import Messaging
import Synchronization

/// The scale-out event transport: Apache Kafka through librdkafka.
///
/// - `publish` returns once every message has a successful delivery report from an idempotent
///   producer with `acks=all` (in order per partition; the key chooses the partition).
/// - `consume` is one consumer group member per call. It stores a message's offset only after
///   the handler returned; if the handler throws it seeks back and delivers the message again.
/// - `replay` reads every partition from its beginning up to its end at the time of the call.
///
/// Call `shutdown()` when done: it waits for messages still in flight.
public final class KafkaTransport: EventTransport, EventLogEnds {
    public let settings: KafkaSettings
    private let logger: Logger
    /// Replaced when it fails fatally (see `publish`).
    private let producer: Mutex<KafkaProducer>
    /// Made on the first question about offsets (each metrics scrape asks); none after shutdown.
    private let inspector = Mutex<(current: KafkaInspector?, isShutDown: Bool)>((nil, false))

    public init(settings: KafkaSettings, logger: Logger) throws {
        var logger = logger
        logger[metadataKey: "kafka.clientId"] = "\(settings.clientId)"
        self.settings = settings
        self.logger = logger
        producer = Mutex(try KafkaProducer(settings: settings, logger: logger))
    }

    /// Flushes what is still in flight (at most `flushTimeout`), fails what is left, and
    /// releases the producer. Consumers stop when their tasks are canceled.
    public func shutdown(flushTimeout: Duration = .seconds(5)) async {
        await producer.withLock { $0 }.close(flushTimeout: flushTimeout)
        let inspector = inspector.withLock { state in
            defer { state = (nil, true) }
            return state.current
        }
        await inspector?.close()
    }

    private func inspecting() throws -> KafkaInspector {
        try inspector.withLock { state in
            if let current = state.current { return current }
            guard !state.isShutDown else { throw KafkaError.client("the transport is shut down") }
            let made = try KafkaInspector(settings: settings, logger: logger)
            state.current = made
            return made
        }
    }

    // MARK: EventPublisher

    public func publish(_ messages: [OutgoingMessage]) async throws {
        let producer = producer.withLock { $0 }
        do {
            try await producer.publish(messages)
        } catch {
            if producer.hasFatalError { await replace(producer) }
            throw error
        }
    }

    /// A producer with a fatal error can never deliver again: swap in a fresh one, so that the
    /// caller's next attempt (the relay retries) can succeed.
    private func replace(_ broken: KafkaProducer) async {
        let replaced = producer.withLock { current -> Bool in
            guard current === broken else { return false }  // another publish did it already
            do {
                current = try KafkaProducer(settings: settings, logger: logger)
                return true
            } catch {
                logger.error("cannot replace the failed producer", metadata: ["error": "\(error)"])
                return false
            }
        }
        guard replaced else { return }
        logger.error("the Kafka producer failed fatally and was replaced")
        await broken.close(flushTimeout: .zero)
    }

    /// For tests: makes the current producer fail fatally.
    func raiseFatalProducerErrorForTesting() {
        producer.withLock { $0 }.raiseFatalErrorForTesting()
    }

    // MARK: EventSubscriber

    public func consume(
        topics: [String], group: String, batchSize: Int, positions: StartPositions?,
        handler: @escaping @Sendable ([IncomingMessage]) async throws -> Void
    ) async throws {
        var settings = settings
        settings.batchSize = batchSize
        let consumer = try await GroupConsumer.open(
            topics: topics, group: group, settings: settings, logger: logger, positions: positions, onRebalance: nil)
        try await consumer.run(handler)
    }

    /// `consume` one message at a time from the committed offsets, telling `onRebalance` each
    /// time this member's partitions change (on the consumer's polling queue: keep it short).
    public func consume(
        topics: [String], group: String, onRebalance: (@Sendable (RebalanceEvent) -> Void)?,
        handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws {
        var settings = settings
        settings.batchSize = 1
        let consumer = try await GroupConsumer.open(
            topics: topics, group: group, settings: settings, logger: logger, positions: nil, onRebalance: onRebalance)
        try await consumer.run { batch in
            for message in batch { try await handler(message) }
        }
    }

    // MARK: EventHistory

    public func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws
    {
        try await HistoryReader(settings: settings, logger: logger).replay(topic: topic, handler: handler)
    }

    // MARK: Administration

    /// Creates the topic unless it already exists (an existing topic is left as it is).
    public func ensureTopic(_ name: String, partitions: Int, replicationFactor: Int) async throws {
        try await KafkaAdmin(settings: settings, logger: logger).ensureTopic(
            name, partitions: partitions, replicationFactor: replicationFactor)
    }

    /// The group's committed offsets: its position as the broker knows it.
    public func groupPositions(topic: String, group: String) async throws -> [Int32: Int64]? {
        try await committedOffsets(topic: topic, group: group)
    }

    /// The high watermark of each partition of `topic`: the offset its next message will get.
    public func endOffsets(topic: String) async throws -> [Int32: Int64] {
        try await inspecting().endOffsets(topic: topic)
    }

    /// The next offset `group` will read in each partition of `topic` (partitions it never
    /// committed are left out): its position, for lag and for checks.
    public func committedOffsets(topic: String, group: String) async throws -> [Int32: Int64] {
        try await inspecting().committedOffsets(topic: topic, group: group)
    }
}

#endif
