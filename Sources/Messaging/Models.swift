import FluentKit
import Foundation

/// An event waiting in (or already relayed from) a service's outbox. It is written in the same
/// transaction as the state change that caused it, so a change is never published without its
/// event and an event never without its change.
public final class OutboxMessage: Model, @unchecked Sendable {
    public static let schema = "outbox"

    /// Insertion order: the relay publishes in this order.
    @ID(custom: "sequence", generatedBy: .database) public var id: Int?
    @Field(key: "event_id") public var eventId: UUID
    @Field(key: "event_type") public var eventType: String
    @Field(key: "topic") public var topic: String
    @Field(key: "message_key") public var messageKey: String
    @Field(key: "payload") public var payload: String
    @Field(key: "created_at") public var createdAt: Date
    @OptionalField(key: "published_at") public var publishedAt: Date?
    @Field(key: "attempts") public var attempts: Int
    @OptionalField(key: "last_error") public var lastError: String?

    public init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    public var properties: [any AnyProperty] {
        [$id, $eventId, $eventType, $topic, $messageKey, $payload, $createdAt, $publishedAt, $attempts, $lastError]
    }

    init(eventId: UUID, eventType: String, topic: String, messageKey: String, payload: String, createdAt: Date) {
        self.eventId = eventId
        self.eventType = eventType
        self.topic = topic
        self.messageKey = messageKey
        self.payload = payload
        self.createdAt = createdAt
        self.attempts = 0
    }
}

/// The id of an event a service has handled, recorded in the same transaction as its effect, so
/// a second delivery of the same event changes nothing.
public final class InboxEntry: Model, @unchecked Sendable {
    public static let schema = "inbox"

    @ID(custom: "event_id", generatedBy: .user) public var id: UUID?
    @Field(key: "event_type") public var eventType: String
    @Field(key: "handled_at") public var handledAt: Date

    public init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    public var properties: [any AnyProperty] { [$id, $eventType, $handledAt] }

    public init(eventId: UUID, eventType: String, handledAt: Date) {
        self.id = eventId
        self.eventType = eventType
        self.handledAt = handledAt
    }
}

/// A message that could not be handled after bounded retries, kept with its error so an
/// operator can see it and replay it once the cause is fixed.
public final class DeadLetter: Model, @unchecked Sendable {
    public static let schema = "dead_letters"

    @ID(key: .id) public var id: UUID?
    @Field(key: "consumer") public var consumer: String
    @Field(key: "topic") public var topic: String
    @Field(key: "partition") public var partition: Int
    @Field(key: "message_offset") public var offset: Int64
    @OptionalField(key: "message_key") public var messageKey: String?
    /// The message as received, base64: it may not even be UTF-8.
    @Field(key: "payload") public var payload: String
    @Field(key: "error") public var error: String
    @Field(key: "attempts") public var attempts: Int
    @Field(key: "failed_at") public var failedAt: Date
    @OptionalField(key: "replayed_at") public var replayedAt: Date?
    /// The visit whose later events wait behind this letter (nil for an undecodable message,
    /// which belongs to no visit it could be replayed for).
    @OptionalField(key: "holds_visit") public var holdsVisit: UUID?

    public init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    public var properties: [any AnyProperty] {
        [
            $id, $consumer, $topic, $partition, $offset, $messageKey, $payload, $error, $attempts, $failedAt,
            $replayedAt,
            $holdsVisit,
        ]
    }

    init(
        consumer: String, message: IncomingMessage, error: String, attempts: Int, failedAt: Date, holdsVisit: UUID?
    ) {
        self.id = UUID()
        self.consumer = consumer
        self.topic = message.topic
        self.partition = Int(message.partition)
        self.offset = message.offset
        self.messageKey = message.key
        self.payload = message.value.base64EncodedString()
        self.error = error
        self.attempts = attempts
        self.failedAt = failedAt
        self.holdsVisit = holdsVisit
    }

    var message: IncomingMessage {
        IncomingMessage(
            topic: topic, partition: Int32(partition), offset: offset, key: messageKey,
            value: Data(base64Encoded: payload) ?? Data())
    }
}

/// The messaging tables every service has: numbered migrations, one type each.
public enum MessagingMigrations {
    public static var all: [any Migration] {
        [
            CreateOutbox(), CreateInbox(), CreateDeadLetters(), AddHoldsVisitToDeadLetters(),
            ConsumerPositions.CreateTable(),
            CreateIndexes(
                name: "M006_MessagingIndexes",
                [
                    // The relay's query: the pending rows, in order, without reading published ones.
                    .init("outbox_pending", on: "outbox", ["sequence"], where: "published_at IS NULL"),
                    .init(
                        "dead_letters_waiting", on: "dead_letters", ["consumer", "holds_visit"],
                        where: "replayed_at IS NULL"),
                ]),
            CreateIndexes(
                name: "M007_RetentionIndexes",
                [
                    // The retention sweep's queries (see Retention).
                    .init("outbox_published", on: "outbox", ["published_at"], where: "published_at IS NOT NULL"),
                    .init("inbox_handled", on: "inbox", ["handled_at"]),
                ]),
        ]
    }

    struct CreateOutbox: AsyncMigration {
        var name: String { "M001_CreateOutbox" }

        func prepare(on database: any Database) async throws {
            try await database.schema(OutboxMessage.schema)
                .field("sequence", .int64, .identifier(auto: true))
                .field("event_id", .uuid, .required)
                .field("event_type", .string, .required)
                .field("topic", .string, .required)
                .field("message_key", .string, .required)
                .field("payload", .string, .required)
                .field("created_at", .datetime, .required)
                .field("published_at", .datetime)
                .field("attempts", .int, .required)
                .field("last_error", .string)
                .unique(on: "event_id")
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(OutboxMessage.schema).delete()
        }
    }

    struct CreateInbox: AsyncMigration {
        var name: String { "M002_CreateInbox" }

        func prepare(on database: any Database) async throws {
            try await database.schema(InboxEntry.schema)
                .field("event_id", .uuid, .identifier(auto: false))
                .field("event_type", .string, .required)
                .field("handled_at", .datetime, .required)
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(InboxEntry.schema).delete()
        }
    }

    struct AddHoldsVisitToDeadLetters: AsyncMigration {
        var name: String { "M004_AddHoldsVisitToDeadLetters" }

        func prepare(on database: any Database) async throws {
            try await database.schema(DeadLetter.schema).field("holds_visit", .uuid).update()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(DeadLetter.schema).deleteField("holds_visit").update()
        }
    }

    struct CreateDeadLetters: AsyncMigration {
        var name: String { "M003_CreateDeadLetters" }

        func prepare(on database: any Database) async throws {
            try await database.schema(DeadLetter.schema)
                .id()
                .field("consumer", .string, .required)
                .field("topic", .string, .required)
                .field("partition", .int, .required)
                .field("message_offset", .int64, .required)
                .field("message_key", .string)
                .field("payload", .string, .required)
                .field("error", .string, .required)
                .field("attempts", .int, .required)
                .field("failed_at", .datetime, .required)
                .field("replayed_at", .datetime)
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(DeadLetter.schema).delete()
        }
    }
}
