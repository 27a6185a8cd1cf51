// Only with the package trait `Kafka` (librdkafka present); without it this target is empty.
#if Kafka
import Foundation
import Logging
import Messaging
import MessagingKafka
import Synchronization
import TestSupport
import Testing

/// librdkafka's log level in tests: quiet unless KAFKA_TEST_LOG_LEVEL says otherwise (brokers
/// set down on purpose make it log connection errors).
let testLogger: Logger = {
    var logger = Logger(label: "kafka-tests")
    logger.logLevel =
        ProcessInfo.processInfo.environment["KAFKA_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
    return logger
}()

/// A fresh mock cluster per test, and transports tuned for it.
struct MockKafka {
    let cluster: KafkaMockCluster

    init(brokers: Int = 1) throws {
        cluster = try KafkaMockCluster(brokers: brokers, logger: testLogger)
    }

    func settings(client: String = "test", deliveryTimeout: Duration = .seconds(30)) -> KafkaSettings {
        var settings = KafkaSettings.mockCluster(brokers: cluster.bootstrapServers, clientId: client)
        settings.pollInterval = .milliseconds(50)
        settings.deliveryTimeout = deliveryTimeout
        settings.requestTimeout = .seconds(3)
        settings.commitInterval = .milliseconds(200)
        settings.retryBackoff = .milliseconds(20)
        settings.maxRetryBackoff = .milliseconds(200)
        // E.g. KAFKA_TEST_DEBUG=cgrp,topic with KAFKA_TEST_LOG_LEVEL=debug to see librdkafka's reasoning.
        if let debug = ProcessInfo.processInfo.environment["KAFKA_TEST_DEBUG"] { settings.properties["debug"] = debug }
        return settings
    }

    func transport(client: String = "test", deliveryTimeout: Duration = .seconds(30)) throws -> KafkaTransport {
        try KafkaTransport(settings: settings(client: client, deliveryTimeout: deliveryTimeout), logger: testLogger)
    }
}

/// Messages `key-0:0, key-1:0, …, key-0:1, …`: `count` in all over `keys` keys, each key's
/// values numbered in publishing order.
func numberedMessages(topic: String, count: Int, keys: Int, prefix: String = "visit") -> [OutgoingMessage] {
    (0..<count).map { index in
        let key = "\(prefix)-\(index % keys)"
        return OutgoingMessage(topic: topic, key: key, value: Data("\(key):\(index / keys)".utf8))
    }
}

extension IncomingMessage {
    var text: String { String(decoding: value, as: UTF8.self) }
    /// The per-key sequence number of a `numberedMessages` value.
    var sequence: Int { Int(text.split(separator: ":").last!)! }
}

/// What a handler saw, shared between the handler and the test.
final class Received: Sendable {
    private let messages = Mutex<[IncomingMessage]>([])

    func append(_ message: IncomingMessage) { messages.withLock { $0.append(message) } }
    var all: [IncomingMessage] { messages.withLock { $0 } }
    var count: Int { messages.withLock { $0.count } }
    var texts: [String] { all.map(\.text) }
}

/// The partitions one group member owns, following its rebalance events.
final class Assignment: Sendable {
    private let owned = Mutex<Set<KafkaTopicPartition>>([])

    func apply(_ event: RebalanceEvent) {
        owned.withLock { owned in
            switch event {
            case .assigned(let partitions): owned.formUnion(partitions)
            case .revoked(let partitions): owned.subtract(partitions)
            }
        }
    }
    var partitions: Set<KafkaTopicPartition> { owned.withLock { $0 } }
}

/// Runs `consume` in the background until `stop` is called.
struct Member {
    let task: Task<Void, any Error>

    init(
        _ transport: KafkaTransport, topic: String, group: String, assignment: Assignment? = nil,
        handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) {
        let onRebalance: (@Sendable (RebalanceEvent) -> Void)? =
            if let assignment { { assignment.apply($0) } } else { nil }
        task = Task {
            try await transport.consume(topics: [topic], group: group, onRebalance: onRebalance, handler: handler)
        }
    }

    /// Cancels the member and waits until it left the group (its offsets committed).
    func stop() async throws {
        task.cancel()
        try await task.value
    }
}

/// All messages of `topic`, read through `replay`.
func history(of topic: String, on transport: KafkaTransport) async throws -> [IncomingMessage] {
    let received = Received()
    try await transport.replay(topic: topic) { received.append($0) }
    return received.all
}

#endif
