import Contracts
import FluentKit
import Foundation
import Messaging
import Vapor

/// The operator's view of a service's dead letters: what could not be handled, and why, with a
/// way to replay one after its cause was fixed. Served on the service's own port only.
public enum DeadLetterRoutes {
    public static func register(on routes: any RoutesBuilder, consumer: EventConsumer, store: ServiceStore) {
        let letters = routes.grouped("admin", "dead-letters")
        letters.get { _ async throws -> [DeadLetterResponse] in
            try await DeadLetter.query(on: store.database).sort(\.$failedAt).all().map(DeadLetterResponse.init)
        }
        letters.post(":id", "replay") { req async throws -> DeadLetterResponse in
            let id = try req.id(of: "dead letter")
            guard let letter = try await DeadLetter.byID(id, on: store.database) else {
                throw AppError.notFound(resource: "dead letter", id: id.uuidString)
            }
            if letter.replayedAt != nil {
                throw AppError.conflict(currentState: "REPLAYED", detail: "This dead letter was already replayed.")
            }
            do {
                _ = try await consumer.replay(letter)
            } catch is DecodingError, is UnknownEvent {
                throw AppError.conflict(
                    currentState: "UNDECODABLE", detail: "This message still cannot be decoded; it cannot be replayed.")
            }
            return DeadLetterResponse(letter)
        }
    }
}

public struct DeadLetterResponse: Content {
    public var id: UUID
    public var consumer: String
    public var topic: String
    public var partition: Int
    public var offset: Int64
    @Nullable public var key: String?
    /// The message as received, base64-encoded.
    public var payload: String
    public var error: String
    public var attempts: Int
    public var failedAt: Date
    @Nullable public var replayedAt: Date?

    init(_ letter: DeadLetter) {
        id = letter.id!
        consumer = letter.consumer
        topic = letter.topic
        partition = letter.partition
        offset = letter.offset
        key = letter.messageKey
        payload = letter.payload
        error = letter.error
        attempts = letter.attempts
        failedAt = letter.failedAt
        replayedAt = letter.replayedAt
    }
}
