import Contracts
import Foundation
import Messaging

/// Gives the logical topic and consumer groups of the code their configured names on the
/// broker: `hospital.visit-events` → HOSPITAL_KAFKA_TOPIC, group `diagnosis` → prefix + name.
struct NamedTransport: EventTransport, EventLogEnds {
    let inner: any EventTransport
    let topic: String
    let groupPrefix: String

    private func physical(_ logical: String) -> String { logical == Topics.visitEvents ? topic : logical }

    private func logical(_ physical: String) -> String { physical == topic ? Topics.visitEvents : physical }

    private func logical(_ partition: TopicPartition) -> TopicPartition {
        TopicPartition(topic: logical(partition.topic), partition: partition.partition)
    }

    private func physical(_ partition: TopicPartition) -> TopicPartition {
        TopicPartition(topic: physical(partition.topic), partition: partition.partition)
    }

    private func logical(_ message: IncomingMessage) -> IncomingMessage {
        var message = message
        message.topic = logical(message.topic)
        return message
    }

    func publish(_ messages: [OutgoingMessage]) async throws {
        try await inner.publish(
            messages.map {
                var m = $0; m.topic = physical(m.topic); return m
            })
    }

    func consume(
        topics: [String], group: String, batchSize: Int, positions: StartPositions?,
        handler: @escaping @Sendable ([IncomingMessage]) async throws -> Void
    ) async throws {
        // The consumer's own positions are kept under the logical names, so a renamed topic is
        // a configuration change, not a new history.
        var named: StartPositions?
        if let positions {
            named = { physicalPartitions in
                let known = try await positions(physicalPartitions.map(self.logical))
                var result: [TopicPartition: Int64] = [:]
                for (partition, next) in known { result[self.physical(partition)] = next }
                return result
            }
        }
        try await inner.consume(
            topics: topics.map(physical), group: groupPrefix + group, batchSize: batchSize, positions: named
        ) { batch in
            try await handler(batch.map(logical))
        }
    }

    func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        try await inner.replay(topic: physical(topic)) { message in try await handler(logical(message)) }
    }

    func endOffsets(topic: String) async throws -> [Int32: Int64] {
        guard let ends = inner as? any EventLogEnds else { return [:] }
        return try await ends.endOffsets(topic: physical(topic))
    }

    func groupPositions(topic: String, group: String) async throws -> [Int32: Int64]? {
        guard let ends = inner as? any EventLogEnds else { return nil }
        return try await ends.groupPositions(topic: physical(topic), group: groupPrefix + group)
    }
}
