import Contracts
import FluentKit
import Foundation
import Storage
import Tracing
import Logging
import SQLKit

/// Appends events to a service's outbox inside the caller's transaction.
public enum Outbox {
    public static func append(_ envelopes: [EventEnvelope], on db: any Database) async throws {
        // One statement for a command's events, in their order (the sequence numbers them so).
        try await envelopes.map { envelope in
            OutboxMessage(
                eventId: envelope.eventId, eventType: envelope.type, topic: Topics.visitEvents,
                messageKey: envelope.receptionId.uuidString,
                payload: String(decoding: try EventCoding.encode(envelope), as: UTF8.self),
                createdAt: envelope.occurredAt)
        }.insert(on: db)
    }
}

/// Publishes committed outbox rows to the transport, in order, and marks them published once
/// the transport accepted them. Until then it retries with backoff, so commands keep being
/// accepted while the transport is away; the outbox just grows and drains later.
public final class OutboxRelay: Sendable {
    public struct Settings: Sendable {
        public var pollInterval: Duration
        public var batchSize: Int
        public var maxBackoff: Duration

        public init(
            pollInterval: Duration = .milliseconds(200), batchSize: Int = 100, maxBackoff: Duration = .seconds(5)
        ) {
            self.pollInterval = pollInterval
            self.batchSize = batchSize
            self.maxBackoff = maxBackoff
        }
    }

    private let store: ServiceStore
    private let publisher: any EventPublisher
    private let settings: Settings
    private let logger: Logger
    private let observer: any MessagingObserver
    private let wake = WakeSignal()

    public init(
        store: ServiceStore, publisher: any EventPublisher, settings: Settings, logger: Logger,
        observer: any MessagingObserver = UnobservedMessaging()
    ) {
        self.observer = observer
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.logger = logger
    }

    /// Asks the relay to look at the outbox now (called after a commit that appended events).
    public func nudge() { wake.signal() }

    /// Relays until the task is canceled.
    public func run() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                while try await relayBatch() == settings.batchSize, !Task.isCancelled {}
                backoff = .milliseconds(100)
                await wake.wait(timeout: settings.pollInterval)
            } catch {
                logger.warning(
                    "outbox relay failed; retrying",
                    metadata: ["error": "\(loggable(error))", "backoff": "\(backoff)"])
                await wake.wait(timeout: backoff)
                backoff = min(backoff * 2, settings.maxBackoff)
            }
        }
    }

    /// Publishes the oldest unpublished rows; returns how many it published.
    ///
    /// Where several replicas share the database (PostgreSQL), one relays at a time: each batch
    /// runs under a transaction-scoped advisory lock, so no replica publishes a later event of a
    /// visit before another has finished publishing an earlier one.
    @discardableResult
    public func relayBatch() async throws -> Int {
        // Events of a database that is gone are not published: what they report was not kept.
        try store.checkStorage()
        if store.engine.hasSingleWriter {
            return try await relay(reading: store.database) { ids, now in
                try await self.store.write { db in try await Self.markPublished(ids, at: now, on: db) }
            }
        }
        return try await store.database.transaction { db in
            guard try await Self.tryRelayLock(on: db) else { return 0 }
            return try await self.relay(reading: db) { ids, now in try await Self.markPublished(ids, at: now, on: db) }
        }
    }

    private static func markPublished(_ ids: [Int], at now: Date, on db: any Database) async throws {
        try await db.sql.raw("UPDATE outbox SET published_at = \(bind: now) WHERE sequence IN \(list: ids)").run()
    }

    /// PostgreSQL's transaction-scoped advisory lock, released at commit or rollback.
    private static func tryRelayLock(on db: any Database) async throws -> Bool {
        let row = try await db.sql.raw("SELECT pg_try_advisory_xact_lock(\(literal: Self.relayLockKey)) AS locked").first()
        return try row?.decode(column: "locked", as: Bool.self) ?? false
    }

    /// Any constant: each service has a database of its own.
    private static let relayLockKey = 0x6f75_7462_6f78  // "outbox"

    private func relay(
        reading db: any Database, markPublished: @Sendable ([Int], Date) async throws -> Void
    ) async throws -> Int {
        let pending = try await db.sql.raw(
            "SELECT * FROM outbox WHERE published_at IS NULL ORDER BY sequence LIMIT \(unsafeRaw: String(settings.batchSize))"
        ).all().map { try $0.decode(fluentModel: OutboxMessage.self) }
        guard !pending.isEmpty else { return 0 }
        try store.checkStorage()  // (read from a file that was there a moment ago)
        let messages = pending.map {
            OutgoingMessage(topic: $0.topic, key: $0.messageKey, value: Data($0.payload.utf8))
        }
        // A producer span in the trace of the batch's first event, linked to the others'.
        let traces = pending.compactMap { Self.traceparent(inPayload: $0.payload) }
        return try await withSpan(
            "publish \(pending[0].topic)", context: TraceContext.context(of: traces.first), ofKind: .producer
        ) { span in
            span.attributes["messaging.operation.type"] = "publish"
            span.attributes["messaging.destination.name"] = pending[0].topic
            span.attributes["messaging.batch.message_count"] = pending.count
            for trace in traces.dropFirst() {
                span.addLink(SpanLink(context: TraceContext.context(of: trace), attributes: [:]))
            }
            return try await publish(pending, messages, markPublished: markPublished)
        }
    }

    /// The envelope's `traceparent`, found without decoding the whole event.
    static func traceparent(inPayload payload: String) -> String? {
        guard let start = payload.range(of: #""traceparent":""#) else { return nil }
        let value = payload[start.upperBound...].prefix(55)
        return value.count == 55 ? String(value) : nil
    }

    private func publish(
        _ pending: [OutboxMessage], _ messages: [OutgoingMessage], markPublished: @Sendable ([Int], Date) async throws -> Void
    ) async throws -> Int {
        do {
            try await publisher.publish(messages)
        } catch {
            let ids = pending.compactMap(\.id)
            let description = String(loggable(error).prefix(500))
            _ = try? await store.write { db in
                try await OutboxMessage.query(on: db).filter(\.$id ~~ ids)
                    .set(\.$lastError, to: description).update()
            }
            throw error
        }
        try await markPublished(pending.compactMap(\.id), Date())
        observer.eventsPublished(pending.count)
        logger.debug("relayed outbox batch", metadata: ["count": "\(pending.count)"])
        return pending.count
    }

    /// How many events wait to be published (for health and metrics).
    public func backlog() async throws -> Int {
        try await OutboxMessage.query(on: store.database).filter(\.$publishedAt == nil).count()
    }

    /// When the oldest event still waiting was appended (nil: none waits).
    public func oldestWaiting() async throws -> Date? {
        try await OutboxMessage.query(on: store.database).filter(\.$publishedAt == nil).sort(\.$id).first()?.createdAt
    }
}
