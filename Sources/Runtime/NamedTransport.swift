import Contracts
import Foundation
import Messaging

/// Gives the logical topic and consumer groups of the code their configured names on the
/// broker: `hospital.visit-events` → HOSPITAL_KAFKA_TOPIC, group `diagnosis` → prefix + name.
struct NamedTransport: EventTransport {
    let inner: any EventTransport
    let topic: String
    let groupPrefix: String

    private func physical(_ logical: String) -> String { logical == Topics.visitEvents ? topic : logical }

    private func logical(_ message: IncomingMessage) -> IncomingMessage {
        var message = message
        if message.topic == topic { message.topic = Topics.visitEvents }
        return message
    }

    func publish(_ messages: [OutgoingMessage]) async throws {
        try await inner.publish(
            messages.map {
                var m = $0; m.topic = physical(m.topic); return m
            })
    }

    func consume(
        topics: [String], group: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws {
        try await inner.consume(topics: topics.map(physical), group: groupPrefix + group) { message in
            try await handler(logical(message))
        }
    }

    func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        try await inner.replay(topic: physical(topic)) { message in try await handler(logical(message)) }
    }
}
