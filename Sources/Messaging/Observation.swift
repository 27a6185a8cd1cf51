import Foundation

/// What the messaging layer tells whoever watches it (the service's metrics). Called on the hot
/// path: implementations only count.
public protocol MessagingObserver: Sendable {
    /// An event left the consumer with `outcome`, `sinceOccurred` after its `occurredAt` (nil
    /// when the message could not be read).
    func eventHandled(group: String, type: String, outcome: EventConsumer.Outcome, sinceOccurred: TimeInterval?)
    /// A failed attempt at an event that will be tried again.
    func eventRetried(group: String, type: String)
    /// The relay published `count` events from the outbox.
    func eventsPublished(_ count: Int)
}

/// Nobody watching.
public struct UnobservedMessaging: MessagingObserver {
    public init() {}
    public func eventHandled(group: String, type: String, outcome: EventConsumer.Outcome, sinceOccurred: TimeInterval?) {}
    public func eventRetried(group: String, type: String) {}
    public func eventsPublished(_ count: Int) {}
}

/// A transport that can say where each partition of a topic ends: the offset the next message
/// will get. With a consumer's positions, that is its lag.
public protocol EventLogEnds: Sendable {
    func endOffsets(topic: String) async throws -> [Int32: Int64]
    /// Where `group` stands on `topic` as the broker knows it (Kafka's committed offsets), so
    /// any process can tell a group's lag, even with the group's own processes gone; nil when
    /// the transport keeps no positions for groups (the local log: the services keep them).
    func groupPositions(topic: String, group: String) async throws -> [Int32: Int64]?
}

extension EventConsumer.Outcome {
    /// Its name in metrics.
    public var label: String {
        switch self {
        case .handled: "handled"
        case .duplicate: "duplicate"
        case .ignored: "ignored"
        case .deadLettered: "dead_lettered"
        case .held: "held"
        }
    }
}
