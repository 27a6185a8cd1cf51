import Contracts
import FluentKit
import Foundation
import Logging

/// Consumes the visit events for one service: decodes each message, skips the types the service
/// does not handle, and applies the rest exactly once through the inbox.
///
/// A message that fails is retried with backoff; after `maxAttempts` it goes to the dead-letter
/// store with its error and the consumer moves on, so one bad message cannot hold up the visits
/// behind it. A message that cannot even be decoded goes there at once.
public final class EventConsumer: Sendable {
    public typealias Handler = @Sendable (EventEnvelope, any Database) async throws -> Void

    public struct Settings: Sendable {
        public var maxAttempts: Int
        public var initialBackoff: Duration

        /// Eight attempts from 100 ms doubling: about 25 s to ride out a short outage first.
        public init(maxAttempts: Int = 8, initialBackoff: Duration = .milliseconds(100)) {
            self.maxAttempts = maxAttempts
            self.initialBackoff = initialBackoff
        }
    }

    public enum Outcome: Equatable, Sendable {
        /// Applied; already applied before; not for this service; dead-lettered after failing;
        /// dead-lettered to wait behind an earlier event of its visit.
        case handled, duplicate, ignored, deadLettered, held
    }

    /// The consumer group, e.g. "diagnosis".
    public let group: String
    private let store: ServiceStore
    private let handledTypes: Set<String>
    private let handler: Handler
    private let settings: Settings
    private let logger: Logger
    private let afterCommit: @Sendable () -> Void

    /// - Parameters:
    ///   - handledTypes: the event types this service reacts to; others are skipped.
    ///   - afterCommit: called after a handled event committed (to nudge the outbox relay).
    public init(
        group: String, store: ServiceStore, handledTypes: Set<String>, settings: Settings = .init(),
        logger: Logger, afterCommit: @escaping @Sendable () -> Void = {}, handler: @escaping Handler
    ) {
        self.group = group
        self.store = store
        self.handledTypes = handledTypes
        self.handler = handler
        self.settings = settings
        self.logger = logger
        self.afterCommit = afterCommit
    }

    /// Consumes from `subscriber` until the task is canceled.
    public func run(on subscriber: any EventSubscriber) async throws {
        try await subscriber.consume(topics: [Topics.visitEvents], group: group) { message in
            _ = try await self.receive(message)
        }
    }

    /// Handles one message; throws only when even the dead-letter store cannot be written, in
    /// which case the transport must deliver the message again.
    @discardableResult
    public func receive(_ message: IncomingMessage) async throws -> Outcome {
        let envelope: EventEnvelope
        do {
            envelope = try EventCoding.decode(message.value)
        } catch let unknown as UnknownEvent where VisitEvent.allTypes.contains(unknown.type) {
            // A type we know at a version we do not: skipping it would lose it silently.
            try await deadLetter(
                message, error: "unsupported version \(unknown.version) of \(unknown.type)", attempts: 1,
                holding: UUID(uuidString: message.key ?? ""))
            return .deadLettered
        } catch let unknown as UnknownEvent {
            logger.debug(
                "skipping unknown event type", metadata: ["type": "\(unknown.type)", "version": "\(unknown.version)"])
            return .ignored
        } catch {
            try await deadLetter(message, error: "undecodable message: \(error)", attempts: 1, holding: nil)
            return .deadLettered
        }
        guard handledTypes.contains(envelope.type) else { return .ignored }

        // An earlier event of this visit is a dead letter: applying this one now would apply a
        // visit's events out of order (a cancellation before the registration it cancels). It
        // waits behind that letter and is replayed after it; other visits go on.
        if try await isHeld(envelope.receptionId) {
            try await deadLetter(
                message, error: "held: an earlier event of this visit is in the dead-letter store", attempts: 0,
                holding: envelope.receptionId)
            return .held
        }

        var backoff = settings.initialBackoff
        for attempt in 1...settings.maxAttempts {
            do {
                let outcome = try await apply(envelope)
                if outcome == .handled { afterCommit() }
                return outcome
            } catch {
                logger.warning(
                    "event handling failed",
                    metadata: [
                        "eventId": "\(envelope.eventId)", "type": "\(envelope.type)", "attempt": "\(attempt)",
                        "error": "\(loggable(error))",
                    ])
                if attempt == settings.maxAttempts {
                    try await deadLetter(
                        message, error: loggable(error), attempts: attempt, holding: envelope.receptionId)
                    return .deadLettered
                }
                try await Task.sleep(for: backoff)
                backoff *= 2
            }
        }
        return .deadLettered
    }

    /// Applies the event and records it in the inbox, in one transaction.
    public func apply(_ envelope: EventEnvelope) async throws -> Outcome {
        do {
            return try await store.write { db in
                if try await InboxEntry.find(envelope.eventId, on: db) != nil { return .duplicate }
                try await InboxEntry(eventId: envelope.eventId, eventType: envelope.type, handledAt: Date()).create(
                    on: db)
                try await self.handler(envelope, db)
                return .handled
            }
        } catch  where ServiceStore.isUniqueViolation(error) {
            // Another replica recorded the same event id first. If the violation came from
            // the handler instead, the inbox tells: a handled event is a duplicate, otherwise it
            // is a real failure.
            if try await InboxEntry.find(envelope.eventId, on: store.database) != nil { return .duplicate }
            throw error
        }
    }

    private func isHeld(_ visit: UUID) async throws -> Bool {
        try await DeadLetter.query(on: store.database)
            .filter(\.$consumer == group).filter(\.$holdsVisit == visit).filter(\.$replayedAt == nil)
            .first() != nil
    }

    private func deadLetter(
        _ message: IncomingMessage, error: String, attempts: Int, holding visit: UUID?
    )
        async throws
    {
        logger.error(
            "message moved to the dead-letter store",
            metadata: ["topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)"])
        let letter = DeadLetter(
            consumer: group, message: message, error: String(error.prefix(2000)), attempts: attempts, failedAt: Date(),
            holdsVisit: visit)
        try await store.write { db in try await letter.create(on: db) }
    }

    /// Handles a dead letter again (after its cause was fixed) and marks it replayed. A letter of
    /// a visit replays all of that visit's waiting letters, in their original order, stopping at
    /// the first that fails again; so none is ever applied ahead of an earlier one.
    public func replay(_ letter: DeadLetter) async throws -> Outcome {
        guard let visit = letter.holdsVisit else { return try await replayOne(letter) }
        let waiting = try await DeadLetter.query(on: store.database)
            .filter(\.$consumer == group).filter(\.$holdsVisit == visit).filter(\.$replayedAt == nil)
            .sort(\.$partition).sort(\.$offset).all()
        var outcome = Outcome.ignored
        for next in waiting {
            let result = try await replayOne(next)
            if next.id == letter.id { outcome = result }
        }
        return outcome
    }

    private func replayOne(_ letter: DeadLetter) async throws -> Outcome {
        let envelope = try EventCoding.decode(letter.message.value)
        let outcome = handledTypes.contains(envelope.type) ? try await apply(envelope) : .ignored
        if outcome == .handled { afterCommit() }
        letter.replayedAt = Date()
        try await store.write { db in try await letter.save(on: db) }
        return outcome
    }
}
