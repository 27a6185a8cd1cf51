import Contracts
import FluentKit
import Foundation
import Logging
import SQLKit
import Storage
import Synchronization
import Tracing

/// Consumes the visit events for one service: decodes each message, skips the types the service
/// does not handle, and applies the rest exactly once through the inbox.
///
/// Messages come in batches; a batch is applied in one transaction together with the
/// consumer's new position, so a service's data and its place in the event stream always
/// agree (see `ConsumerPositions`). If the batch fails, its messages are taken one at a time to
/// isolate the one that fails: that one is retried with backoff and, after `maxAttempts`, goes
/// to the dead-letter store with its error, while the visits behind it go on. A message that
/// cannot even be decoded goes there at once.
///
/// If even the dead-letter store cannot be written, the consumer does not move on: it throws,
/// the transport delivers the messages again after a pause, and `failure` says why until a
/// batch succeeds (readiness reports it).
public final class EventConsumer: Sendable {
    public typealias Handler = @Sendable (EventEnvelope, any Database) async throws -> Void

    public struct Settings: Sendable {
        public var maxAttempts: Int
        public var initialBackoff: Duration
        /// The most messages applied in one transaction.
        public var batchSize: Int

        /// Eight attempts from 100 ms doubling: about 25 s to ride out a short outage first.
        public init(maxAttempts: Int = 8, initialBackoff: Duration = .milliseconds(100), batchSize: Int = 100) {
            self.maxAttempts = maxAttempts
            self.initialBackoff = initialBackoff
            self.batchSize = max(1, batchSize)
        }
    }

    public enum Outcome: Equatable, Sendable {
        /// Applied; already applied before (by event id or by position); not for this service;
        /// dead-lettered; dead-lettered to wait behind an earlier event of its visit.
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
    private let observer: any MessagingObserver
    private let lastFailure = Mutex<String?>(nil)

    /// - Parameters:
    ///   - handledTypes: the event types this service reacts to; others are skipped.
    ///   - afterCommit: called after handled events committed (to nudge the outbox relay).
    public init(
        group: String, store: ServiceStore, handledTypes: Set<String>, settings: Settings = .init(),
        logger: Logger, afterCommit: @escaping @Sendable () -> Void = {},
        observer: any MessagingObserver = UnobservedMessaging(), handler: @escaping Handler
    ) {
        self.observer = observer
        self.group = group
        self.store = store
        self.handledTypes = handledTypes
        self.handler = handler
        self.settings = settings
        self.logger = logger
        self.afterCommit = afterCommit
    }

    /// Why the consumer cannot move on, while it cannot (nil when it is fine).
    public var failure: String? { lastFailure.withLock { $0 } }

    /// Consumes from `subscriber` until the task is canceled.
    public func run(on subscriber: any EventSubscriber) async throws {
        do {
            try await subscriber.consume(
                topics: [Topics.visitEvents], group: group, batchSize: settings.batchSize,
                positions: { [store, group] partitions in
                    try await ConsumerPositions.read(consumer: group, partitions: partitions, on: store.database)
                }
            ) { batch in
                _ = try await self.receive(batch)
            }
        } catch {
            if !(error is CancellationError) { recordFailure(error) }
            throw error
        }
    }

    /// The recorded positions of this consumer (for lag and for tests).
    public func positions() async throws -> [TopicPartition: Int64] {
        try await ConsumerPositions.all(consumer: group, on: store.database)
    }

    // MARK: Receiving

    /// Handles one message (a batch of one).
    @discardableResult
    public func receive(_ message: IncomingMessage) async throws -> Outcome {
        try await receive([message])[0]
    }

    /// Handles a batch: all of it in one transaction if it can, else one message at a time.
    /// Throws only when a message could neither be applied nor dead-lettered; then nothing of
    /// the batch from that message on counts as received.
    @discardableResult
    public func receive(_ batch: [IncomingMessage]) async throws -> [Outcome] {
        guard !batch.isEmpty else { return [] }
        let plans = batch.map(plan)
        do {
            let (outcomes, letters) = try await store.write { db in
                try await self.apply(Array(zip(batch, plans)), on: db)
            }
            finished(Array(zip(batch, plans)), outcomes, letters)
            return outcomes
        } catch {
            guard batch.count > 1 else { return [try await isolate(batch[0], plans[0], firstError: error)] }
            logger.info(
                "a batch failed; applying its messages one at a time",
                metadata: ["count": "\(batch.count)", "error": "\(loggable(error))"])
        }
        var outcomes: [Outcome] = []
        for (message, plan) in zip(batch, plans) {
            outcomes.append(try await isolate(message, plan, firstError: nil))
        }
        return outcomes
    }

    /// What to do with a message, decided from the message alone.
    private enum Plan: Sendable {
        case apply(EventEnvelope)
        case ignore
        case deadLetter(error: String, holding: UUID?)

        /// The event's type for metrics: a known type, or "unreadable".
        var eventType: String {
            if case .apply(let envelope) = self { return envelope.type }
            return "unreadable"
        }
    }

    private func plan(_ message: IncomingMessage) -> Plan {
        do {
            let envelope = try EventCoding.decode(message.value)
            return handledTypes.contains(envelope.type) ? .apply(envelope) : .ignore
        } catch let unknown as UnknownEvent where VisitEvent.allTypes.contains(unknown.type) {
            // A type we know at a version we do not: skipping it would lose it silently.
            return .deadLetter(
                error: "unsupported version \(unknown.version) of \(unknown.type)",
                holding: UUID(uuidString: message.key ?? ""))
        } catch let unknown as UnknownEvent {
            logger.debug(
                "skipping unknown event type", metadata: ["type": "\(unknown.type)", "version": "\(unknown.version)"])
            return .ignore
        } catch {
            return .deadLetter(error: "undecodable message: \(error)", holding: nil)
        }
    }

    /// Applies messages in the caller's transaction and moves the positions past them.
    private func apply(
        _ items: [(IncomingMessage, Plan)], on db: any Database
    ) async throws -> ([Outcome], [DeadLetter]) {
        let partitions = Array(Set(items.map { $0.0.topicPartition }))
        let positions = try await ConsumerPositions.read(consumer: group, partitions: partitions, on: db)
        let eventIds = items.compactMap { item -> UUID? in
            if case .apply(let envelope) = item.1 { return envelope.eventId }
            return nil
        }
        var seen = try await handledEventIds(among: eventIds, on: db)
        var held = try await heldVisits(on: db)
        var next = positions
        var outcomes: [Outcome] = []
        var letters: [DeadLetter] = []
        for (message, plan) in items {
            let partition = message.topicPartition
            defer { next[partition] = max(next[partition] ?? 0, message.offset + 1) }
            if let position = positions[partition], message.offset < position {
                outcomes.append(.duplicate)
                continue
            }
            switch plan {
            case .ignore:
                outcomes.append(.ignored)
            case .deadLetter(let error, let visit):
                letters.append(try await deadLetter(message, error: error, attempts: 1, holding: visit, on: db))
                if let visit { held.insert(visit) }
                outcomes.append(.deadLettered)
            case .apply(let envelope):
                // An earlier event of this visit is a dead letter: applying this one now would
                // apply a visit's events out of order (a cancellation before the registration it
                // cancels). It waits behind that letter and is replayed after it.
                if held.contains(envelope.receptionId) {
                    letters.append(
                        try await deadLetter(
                            message, error: "held: an earlier event of this visit is in the dead-letter store",
                            attempts: 0, holding: envelope.receptionId, on: db))
                    outcomes.append(.held)
                } else if seen.contains(envelope.eventId) {
                    outcomes.append(.duplicate)
                } else {
                    try await InboxEntry(eventId: envelope.eventId, eventType: envelope.type, handledAt: Date())
                        .insert(on: db)
                    // The handling is part of the trace that caused the event (its envelope's
                    // traceparent), per the OpenTelemetry messaging conventions: a consumer span.
                    try await withSpan(
                        "process \(envelope.type)", context: TraceContext.context(of: envelope.traceparent),
                        ofKind: .consumer
                    ) { span in
                        span.updateAttributes { attributes in
                            attributes["messaging.operation.type"] = "process"
                            attributes["messaging.destination.name"] = message.topic
                            attributes["messaging.consumer.group.name"] = group
                            attributes["messaging.message.id"] = envelope.eventId.uuidString
                            attributes["hospital.service"] = group
                        }
                        try await handler(envelope, db)
                    }
                    seen.insert(envelope.eventId)
                    outcomes.append(.handled)
                }
            }
        }
        let moved = next.filter { positions[$0.key] != $0.value }
        if !moved.isEmpty { try await ConsumerPositions.advance(consumer: group, to: moved, on: db) }
        return (outcomes, letters)
    }

    /// One message on its own: retried with backoff, then dead-lettered (with its position, in
    /// one transaction). Throws if even that fails.
    private func isolate(_ message: IncomingMessage, _ plan: Plan, firstError: (any Error)?) async throws -> Outcome {
        var backoff = settings.initialBackoff
        var attempt = 0
        var lastError = firstError
        if firstError != nil {
            attempt = 1
            log(firstError!, message, plan, attempt: 1)
        }
        while attempt < settings.maxAttempts {
            if attempt > 0 {
                try await Task.sleep(for: backoff)
                backoff *= 2
            }
            attempt += 1
            do {
                let (outcomes, letters) = try await store.write { db in try await self.apply([(message, plan)], on: db) }
                finished([(message, plan)], outcomes, letters)
                return outcomes[0]
            } catch where store.engine.isUniqueViolation(error) {
                // Another replica recorded the same event id first. If the violation came from the
                // handler instead, the inbox tells: a handled event is a duplicate, otherwise it is
                // a real failure.
                if case .apply(let envelope) = plan,
                    try await InboxEntry.byID(envelope.eventId, on: store.database) != nil
                {
                    return .duplicate
                }
                lastError = error
                log(error, message, plan, attempt: attempt)
                retrying(plan, attempt: attempt)
            } catch {
                lastError = error
                log(error, message, plan, attempt: attempt)
                retrying(plan, attempt: attempt)
            }
        }
        let holding: UUID? =
            switch plan {
            case .apply(let envelope): envelope.receptionId
            case .deadLetter(_, let visit): visit
            case .ignore: nil
            }
        let error = loggable(lastError ?? CancellationError())
        let attempts = attempt
        do {
            let letter = try await store.write { db in
                let letter = try await self.deadLetter(
                    message, error: error, attempts: attempts, holding: holding, on: db)
                try await ConsumerPositions.advance(
                    consumer: self.group, to: [message.topicPartition: message.offset + 1], on: db)
                return letter
            }
            finished([(message, plan)], [.deadLettered], [letter])
            return .deadLettered
        } catch {
            logger.critical(
                "a message can be neither handled nor dead-lettered; the consumer stays on it",
                metadata: [
                    "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
                    "error": "\(loggable(error))",
                ])
            recordFailure(error)
            throw error
        }
    }

    private func log(_ error: any Error, _ message: IncomingMessage, _ plan: Plan, attempt: Int) {
        var metadata: Logger.Metadata = [
            "offset": "\(message.offset)", "attempt": "\(attempt)", "error": "\(loggable(error))",
        ]
        if case .apply(let envelope) = plan {
            metadata["eventId"] = "\(envelope.eventId)"
            metadata["type"] = "\(envelope.type)"
        }
        logger.warning("event handling failed", metadata: metadata)
    }

    /// After a commit: say what was dead-lettered (only now that it is stored), clear a
    /// recorded failure, wake the relay.
    private func retrying(_ plan: Plan, attempt: Int) {
        guard attempt < settings.maxAttempts else { return }
        observer.eventRetried(group: group, type: plan.eventType)
    }

    private func finished(_ batch: [(IncomingMessage, Plan)], _ outcomes: [Outcome], _ letters: [DeadLetter]) {
        let now = Date()
        for ((_, plan), outcome) in zip(batch, outcomes) where outcome != .ignored {
            var since: TimeInterval?
            if case .apply(let envelope) = plan { since = now.timeIntervalSince(envelope.occurredAt) }
            observer.eventHandled(group: group, type: plan.eventType, outcome: outcome, sinceOccurred: since)
        }
        for letter in letters {
            logger.error(
                "message moved to the dead-letter store",
                metadata: [
                    "topic": "\(letter.topic)", "partition": "\(letter.partition)", "offset": "\(letter.offset)",
                    "deadLetter": "\(letter.id?.uuidString ?? "")",
                ])
        }
        lastFailure.withLock { $0 = nil }
        if outcomes.contains(.handled) { afterCommit() }
    }

    private func recordFailure(_ error: any Error) {
        lastFailure.withLock { $0 = String(loggable(error).prefix(500)) }
    }

    private func handledEventIds(among ids: [UUID], on db: any Database) async throws -> Set<UUID> {
        guard !ids.isEmpty else { return [] }
        let rows = try await db.sql.raw("SELECT event_id FROM inbox WHERE event_id IN \(list: ids)").all()
        return Set(try rows.map { try $0.decode(column: "event_id", as: UUID.self) })
    }

    private func heldVisits(on db: any Database) async throws -> Set<UUID> {
        let rows = try await db.sql.raw(
            """
            SELECT holds_visit FROM dead_letters
            WHERE consumer = \(bind: group) AND replayed_at IS NULL AND holds_visit IS NOT NULL
            """
        ).all()
        return Set(try rows.map { try $0.decode(column: "holds_visit", as: UUID.self) })
    }

    private func deadLetter(
        _ message: IncomingMessage, error: String, attempts: Int, holding visit: UUID?, on db: any Database
    ) async throws -> DeadLetter {
        let letter = DeadLetter(
            consumer: group, message: message, error: String(error.prefix(2000)), attempts: attempts, failedAt: Date(),
            holdsVisit: visit)
        try await letter.insert(on: db)
        return letter
    }

    // MARK: Replay

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

    /// Applies the letter's event and marks the letter replayed, in one transaction.
    private func replayOne(_ letter: DeadLetter) async throws -> Outcome {
        let envelope = try EventCoding.decode(letter.message.value)
        let applies = handledTypes.contains(envelope.type)
        let outcome: Outcome = try await store.write { db in
            var outcome = Outcome.ignored
            if applies {
                if try await InboxEntry.byID(envelope.eventId, on: db) != nil {
                    outcome = .duplicate
                } else {
                    try await InboxEntry(eventId: envelope.eventId, eventType: envelope.type, handledAt: Date())
                        .insert(on: db)
                    try await self.handler(envelope, db)
                    outcome = .handled
                }
            }
            letter.replayedAt = Date()
            try await letter.saveChanges(on: db)
            return outcome
        }
        if outcome == .handled { afterCommit() }
        return outcome
    }
}
