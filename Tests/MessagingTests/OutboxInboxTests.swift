import Contracts
import FluentKit
import Foundation
import Logging
import Messaging
import SQLKit
import Synchronization
import Testing

@Suite("Outbox and inbox")
struct OutboxInboxTests {
    @Test("A state change and its events commit together")
    func commitTogether() async throws {
        let database = try await TestDatabase()
        try await database.store.write { db in
            try await Note("접수").create(on: db)
            try await Outbox.append([envelope(), envelope()], on: db)
        }
        #expect(try await Note.query(on: database.db).count() == 1)
        #expect(try await OutboxMessage.query(on: database.db).count() == 2)
        await database.close()
    }

    @Test("A failure after the state change leaves neither the change nor its events")
    func failureAfterBoth() async throws {
        let database = try await TestDatabase()
        await #expect(throws: Injected.self) {
            try await database.store.write { db in
                try await Note("접수").create(on: db)
                try await Outbox.append([envelope()], on: db)
                throw Injected()
            }
        }
        #expect(try await Note.query(on: database.db).count() == 0)
        #expect(try await OutboxMessage.query(on: database.db).count() == 0)
        await database.close()
    }

    @Test("A failing outbox write undoes the state change written before it")
    func failingOutboxWrite() async throws {
        let database = try await TestDatabase()
        let event = envelope()
        try await database.store.write { db in try await Outbox.append([event], on: db) }
        // The same event id again violates the outbox's unique constraint.
        await #expect(throws: (any Error).self) {
            try await database.store.write { db in
                try await Note("접수").create(on: db)
                try await Outbox.append([event], on: db)
            }
        }
        #expect(try await Note.query(on: database.db).count() == 0)
        #expect(try await OutboxMessage.query(on: database.db).count() == 1)
        await database.close()
    }

    @Test("A second delivery of an event changes nothing")
    func inboxDeduplicates() async throws {
        let database = try await TestDatabase()
        let recorder = Recorder()
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: [TreatmentCanceled.type], logger: Logger(label: "test")
        ) { _, db in
            try recorder.call()
            try await Note("effect").create(on: db)
        }
        let event = envelope()
        #expect(try await consumer.receive(try message(event, offset: 1)) == .handled)
        // The same event published twice (a relay that died before marking it published).
        #expect(try await consumer.receive(try message(event, offset: 2)) == .duplicate)
        #expect(recorder.calls == 1)
        #expect(try await Note.query(on: database.db).count() == 1)
        #expect(try await InboxEntry.query(on: database.db).count() == 1)
        await database.close()
    }

    @Test("A handler that fails undoes its effect and its inbox entry, and is retried")
    func failedHandlerRetried() async throws {
        let database = try await TestDatabase()
        let recorder = Recorder(failures: 2)
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: [TreatmentCanceled.type],
            settings: .init(maxAttempts: 3, initialBackoff: .milliseconds(1)), logger: Logger(label: "test")
        ) { _, db in
            try await Note("effect").create(on: db)
            try recorder.call()
        }
        #expect(try await consumer.receive(try message(envelope())) == .handled)
        #expect(recorder.calls == 3)
        #expect(try await Note.query(on: database.db).count() == 1)
        #expect(try await DeadLetter.query(on: database.db).count() == 0)
        await database.close()
    }

    @Test("A message that keeps failing is dead-lettered with its error, and can be replayed once fixed")
    func deadLetterAndReplay() async throws {
        let database = try await TestDatabase()
        let recorder = Recorder(failures: 3)
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: [TreatmentCanceled.type],
            settings: .init(maxAttempts: 3, initialBackoff: .milliseconds(1)), logger: Logger(label: "test")
        ) { _, db in
            try recorder.call()
            try await Note("effect").create(on: db)
        }
        let poisoned = try message(envelope(), offset: 7)
        #expect(try await consumer.receive(poisoned) == .deadLettered)
        let letter = try #require(try await DeadLetter.query(on: database.db).first())
        #expect(letter.offset == 7)
        #expect(letter.attempts == 3)
        #expect(letter.error.contains("Injected"))
        // The next message is not held up.
        #expect(try await consumer.receive(try message(envelope(), offset: 8)) == .handled)

        #expect(try await consumer.replay(letter) == .handled)
        #expect(try await Note.query(on: database.db).count() == 2)
        #expect(try await DeadLetter.find(letter.id, on: database.db)?.replayedAt != nil)
        await database.close()
    }

    @Test("An undecodable message goes to the dead-letter store at once; an unknown type is skipped")
    func poisonAndUnknown() async throws {
        let database = try await TestDatabase()
        let recorder = Recorder()
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: Set(VisitEvent.allTypes), logger: Logger(label: "test")
        ) { _, _ in try recorder.call() }
        let garbage = IncomingMessage(
            topic: Topics.visitEvents, partition: 0, offset: 1, key: nil, value: Data("{not json".utf8))
        #expect(try await consumer.receive(garbage) == .deadLettered)
        #expect(try await DeadLetter.query(on: database.db).first()?.attempts == 1)

        var future = try JSONSerialization.jsonObject(with: try EventCoding.encode(envelope())) as! [String: Any]
        future["type"] = "PatientTeleported"
        let unknown = IncomingMessage(
            topic: Topics.visitEvents, partition: 0, offset: 2, key: nil,
            value: try JSONSerialization.data(withJSONObject: future))
        #expect(try await consumer.receive(unknown) == .ignored)

        // A known type at a version this build does not know is kept, not dropped.
        var newer = try JSONSerialization.jsonObject(with: try EventCoding.encode(envelope())) as! [String: Any]
        newer["version"] = 2
        let versioned = IncomingMessage(
            topic: Topics.visitEvents, partition: 0, offset: 3, key: nil,
            value: try JSONSerialization.data(withJSONObject: newer))
        #expect(try await consumer.receive(versioned) == .deadLettered)
        #expect(try await DeadLetter.query(on: database.db).count() == 2)

        #expect(recorder.calls == 0)
        #expect(try await InboxEntry.query(on: database.db).count() == 0)
        await database.close()
    }
}

@Suite("Dead letters keep a visit's order")
struct HeldVisitTests {
    @Test("Later events of a visit wait behind its dead letter; other visits go on; a replay applies them in order")
    func heldBehindDeadLetter() async throws {
        let database = try await TestDatabase()
        let broken = Mutex(true)
        let applied = Mutex<[String]>([])
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: Set(VisitEvent.allTypes),
            settings: .init(maxAttempts: 2, initialBackoff: .milliseconds(1)), logger: Logger(label: "test")
        ) { envelope, _ in
            if broken.withLock({ $0 }), case .treatmentReceived = envelope.event { throw Injected() }
            applied.withLock { $0.append(envelope.type) }
        }
        let visit = UUID()
        let other = UUID()
        let received = envelope(
            .treatmentReceived(TreatmentReceived(patientName: "a", department: nil, symptom: nil)), receptionId: visit)
        let canceled = envelope(.treatmentCanceled(TreatmentCanceled(reason: "r")), receptionId: visit)
        let elsewhere = envelope(.treatmentCanceled(TreatmentCanceled(reason: "r")), receptionId: other)

        #expect(try await consumer.receive(try message(received, offset: 1)) == .deadLettered)
        // The cancellation must not be applied before the registration it cancels.
        #expect(try await consumer.receive(try message(canceled, offset: 2)) == .held)
        #expect(try await consumer.receive(try message(elsewhere, offset: 3)) == .handled)
        #expect(applied.withLock { $0 } == [TreatmentCanceled.type])

        // Fixed; replaying the held one replays the visit from its first letter, in order.
        broken.withLock { $0 = false }
        let held = try #require(try await DeadLetter.query(on: database.db).filter(\.$offset == 2).first())
        #expect(try await consumer.replay(held) == .handled)
        #expect(applied.withLock { $0 } == [TreatmentCanceled.type, TreatmentReceived.type, TreatmentCanceled.type])
        #expect(try await DeadLetter.query(on: database.db).filter(\.$replayedAt == nil).count() == 0)
        // And the visit is no longer held.
        let later = envelope(.diagnosisCompleted(DiagnosisCompleted(diagnosisId: UUID(), note: "")), receptionId: visit)
        #expect(try await consumer.receive(try message(later, offset: 4)) == .handled)
        await database.close()
    }
}

@Suite("Batches and positions")
struct BatchTests {
    @Test("A poison message in the middle of a batch is isolated: the others are applied once, the visit behind it held")
    func poisonInTheMiddle() async throws {
        let database = try await TestDatabase()
        let poisoned = UUID()
        let applied = Mutex<[UUID]>([])
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: Set(VisitEvent.allTypes),
            settings: .init(maxAttempts: 2, initialBackoff: .milliseconds(1), batchSize: 10),
            logger: Logger(label: "test")
        ) { envelope, db in
            if envelope.receptionId == poisoned { throw Injected() }
            try await Note("\(envelope.eventId)").create(on: db)
            applied.withLock { $0.append(envelope.eventId) }
        }
        // Ten events; the fifth is the poisoned visit's, and the eighth its next event.
        var events = (0..<10).map { _ in envelope() }
        events[4] = envelope(receptionId: poisoned)
        events[7] = envelope(.treatmentReceived(TreatmentReceived(patientName: "a", department: nil, symptom: nil)), receptionId: poisoned)
        let batch = try events.enumerated().map { try message($1, offset: Int64($0 + 1)) }

        let outcomes = try await consumer.receive(batch)

        var expected = [EventConsumer.Outcome](repeating: .handled, count: 10)
        expected[4] = .deadLettered
        expected[7] = .held
        #expect(outcomes == expected)
        let healthy = events.enumerated().filter { ![4, 7].contains($0.offset) }.map(\.element.eventId)
        // Applied once each: the failed batch attempt left nothing behind.
        #expect(Set(applied.withLock { $0 }).isSuperset(of: healthy))
        #expect(try await Note.query(on: database.db).count() == 8)
        #expect(try await InboxEntry.query(on: database.db).count() == 8)
        #expect(try await DeadLetter.query(on: database.db).count() == 2)
        #expect(try await consumer.positions()[TopicPartition(topic: Topics.visitEvents, partition: 0)] == 11)
        #expect(consumer.failure == nil)
        await database.close()
    }

    @Test("A batch is one transaction with one position; a message below the position is a duplicate")
    func positionGuard() async throws {
        let database = try await TestDatabase()
        let recorder = Recorder()
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: [TreatmentCanceled.type],
            settings: .init(maxAttempts: 1, initialBackoff: .milliseconds(1), batchSize: 50),
            logger: Logger(label: "test")
        ) { _, db in
            try recorder.call()
            try await Note("effect").create(on: db)
        }
        let batch = try (1...50).map { try message(envelope(), offset: Int64($0)) }
        #expect(try await consumer.receive(batch) == Array(repeating: .handled, count: 50))
        #expect(try await consumer.positions()[TopicPartition(topic: Topics.visitEvents, partition: 0)] == 51)

        // The transport delivers an old stretch again (a rewound Kafka offset, a restored log):
        // recognised by the position alone, before any handler runs.
        #expect(try await consumer.receive(Array(batch[10..<20])) == Array(repeating: .duplicate, count: 10))
        #expect(recorder.calls == 50)
        #expect(try await Note.query(on: database.db).count() == 50)
        await database.close()
    }

    @Test("A dead letter that cannot be written stops the consumer and says so; nothing is claimed or skipped")
    func deadLetterWriteFails() async throws {
        let database = try await TestDatabase()
        let consumer = EventConsumer(
            group: "test", store: database.store, handledTypes: [TreatmentCanceled.type],
            settings: .init(maxAttempts: 2, initialBackoff: .milliseconds(1)), logger: Logger(label: "test")
        ) { _, _ in throw Injected() }
        let sql = try #require(database.db as? any SQLDatabase)
        try await sql.raw("ALTER TABLE dead_letters RENAME TO dead_letters_away").run()

        let poisoned = try message(envelope(), offset: 1)
        await #expect(throws: (any Error).self) { try await consumer.receive(poisoned) }
        #expect(consumer.failure != nil)
        #expect(try await consumer.positions()[TopicPartition(topic: Topics.visitEvents, partition: 0)] == nil)

        // Once the store works again, the same message is dead-lettered and the consumer recovers.
        try await sql.raw("ALTER TABLE dead_letters_away RENAME TO dead_letters").run()
        #expect(try await consumer.receive(poisoned) == .deadLettered)
        #expect(consumer.failure == nil)
        #expect(try await DeadLetter.query(on: database.db).count() == 1)
        #expect(try await consumer.positions()[TopicPartition(topic: Topics.visitEvents, partition: 0)] == 2)
        await database.close()
    }
}
