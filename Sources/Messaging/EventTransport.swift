import Foundation

/// A message on its way to the broker.
public struct OutgoingMessage: Sendable, Equatable {
    public var topic: String
    /// The partitioning key: the visit's `receptionId`.
    public var key: String
    public var value: Data

    public init(topic: String, key: String, value: Data) {
        self.topic = topic
        self.key = key
        self.value = value
    }
}

/// A message as a consumer receives it.
public struct IncomingMessage: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: String?
    public var value: Data

    public init(topic: String, partition: Int32, offset: Int64, key: String?, value: Data) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
    }
}

/// Where services publish their events. Implemented by the local event log and by Kafka.
public protocol EventPublisher: Sendable {
    /// Returns once the transport has durably accepted every message, in order; throws otherwise,
    /// in which case any prefix may have been accepted (consumers deduplicate by event id).
    func publish(_ messages: [OutgoingMessage]) async throws
}

/// Where services consume events from, as members of a consumer group.
public protocol EventSubscriber: Sendable {
    /// Delivers the group's messages to `handler`, in order within a partition, at least once.
    /// A message's offset is committed only after `handler` returned; if `handler` throws, the
    /// message is delivered again. Runs until the task is canceled.
    func consume(
        topics: [String], group: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws
}

/// The retained history of a topic, read from its beginning (to rebuild a read model).
public protocol EventHistory: Sendable {
    /// Delivers every message the topic holds now, oldest first, then returns.
    func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws
}

public typealias EventTransport = EventPublisher & EventSubscriber & EventHistory
