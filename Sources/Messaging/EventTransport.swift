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

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }
}

/// One partition of a topic: the unit of order, and of a consumer's position.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// Where a consumer starts reading: for each partition it is asked about, the offset of the
/// next message it has not applied, from its own records. A partition it has no record of is
/// left out and starts at the beginning of the retained history.
public typealias StartPositions = @Sendable ([TopicPartition]) async throws -> [TopicPartition: Int64]

/// Where services publish their events. Implemented by the local event log and by Kafka.
public protocol EventPublisher: Sendable {
    /// Returns once the transport has durably accepted every message, in order; throws otherwise,
    /// in which case any prefix may have been accepted (consumers deduplicate by event id).
    func publish(_ messages: [OutgoingMessage]) async throws
}

/// Where services consume events from, as members of a consumer group.
public protocol EventSubscriber: Sendable {
    /// Delivers the group's messages to `handler` in batches of at most `batchSize`, in order
    /// within a partition, at least once. Runs until the task is canceled.
    ///
    /// The consumer owns its position: `positions` is asked where to start whenever partitions
    /// come to this member (at start, and on every assignment), and the consumer is expected to
    /// record its progress in the same transaction as its effects. Whatever the transport
    /// remembers itself (Kafka's committed offsets) is only used when `positions` is nil.
    /// If `handler` throws, the same messages are delivered again after a pause.
    func consume(
        topics: [String], group: String, batchSize: Int, positions: StartPositions?,
        handler: @escaping @Sendable ([IncomingMessage]) async throws -> Void
    ) async throws
}

extension EventSubscriber {
    /// One message at a time, starting where the transport itself remembers (tests and tools).
    public func consume(
        topics: [String], group: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws {
        try await consume(topics: topics, group: group, batchSize: 1, positions: nil) { batch in
            for message in batch { try await handler(message) }
        }
    }
}

/// The retained history of a topic, read from its beginning (to rebuild a read model).
public protocol EventHistory: Sendable {
    /// Delivers every message the topic holds now, oldest first, then returns.
    func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws
}

public typealias EventTransport = EventPublisher & EventSubscriber & EventHistory
