import Contracts
import FluentKit
import Foundation
import Logging
import Messaging
import MessagingLocal
import Synchronization
import TestSupport
import Testing

/// A transport that refuses while `down` is set: the broker being away.
final class FlakyPublisher: EventPublisher {
    let down = Mutex(true)
    let published = Mutex<[OutgoingMessage]>([])
    func publish(_ messages: [OutgoingMessage]) async throws {
        if down.withLock({ $0 }) { throw Injected() }
        published.withLock { $0 += messages }
    }
}

@Suite("Relay and local event log")
struct RelayAndLogTests {
    @Test("The relay keeps rows while the transport is down and publishes them in order once it is back")
    func relayRetries() async throws {
        let database = try await TestDatabase()
        let events = (0..<5).map { _ in envelope() }
        try await database.store.write { db in try await Outbox.append(events, on: db) }
        let publisher = FlakyPublisher()
        let relay = OutboxRelay(
            store: database.store, publisher: publisher, settings: .init(), logger: Logger(label: "test"))

        await #expect(throws: Injected.self) { try await relay.relayBatch() }
        #expect(try await relay.backlog() == 5)
        #expect(try await OutboxMessage.query(on: database.db).first()?.lastError?.contains("Injected") == true)

        publisher.down.withLock { $0 = false }
        #expect(try await relay.relayBatch() == 5)
        #expect(try await relay.backlog() == 0)
        let sent = publisher.published.withLock { $0 }.map { try! EventCoding.decode($0.value).eventId }
        #expect(sent == events.map(\.eventId))
        await database.close()
    }

    @Test("The log delivers in order and commits a position only after the handler returned")
    func positionsAfterHandling() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = try await LocalEventLog.open(
            directory: directory, pollInterval: .milliseconds(10), logger: Logger(label: "t"))
        let values = (1...5).map { OutgoingMessage(topic: "t", key: "k", value: Data("m\($0)".utf8)) }
        try await log.publish(values)

        // The handler fails on the third message: the first two are acknowledged, not the third,
        // which is delivered again (after a pause) rather than skipped.
        let seen = Mutex<[String]>([])
        let failing = Task {
            try await log.consume(topics: ["t"], group: "g") { message in
                let text = String(decoding: message.value, as: UTF8.self)
                seen.withLock { $0.append(text) }
                if text == "m3" { throw Injected() }
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while seen.withLock({ $0.filter { $0 == "m3" }.count }) < 2 {
            guard ContinuousClock.now < deadline else {
                Issue.record("the failed message was not delivered again")
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        failing.cancel()
        _ = await failing.result
        #expect(Array(seen.withLock { $0 }.prefix(4)) == ["m1", "m2", "m3", "m3"])
        #expect(!seen.withLock { $0 }.contains("m4"))
        #expect(try await log.lag(group: "g", topic: "t") == 3)
        await log.close()

        // A new process (here: a new connection) resumes at the unacknowledged message.
        let reopened = try await LocalEventLog.open(directory: directory, logger: Logger(label: "t"))
        let resumed = Mutex<[String]>([])
        let consumer = Task {
            try await reopened.consume(topics: ["t"], group: "g") { message in
                resumed.withLock { $0.append(String(decoding: message.value, as: UTF8.self)) }
            }
        }
        // Caught up means every delivered message was also acknowledged.
        let caughtUp = ContinuousClock.now + .seconds(10)
        while try await reopened.lag(group: "g", topic: "t") > 0 {
            guard ContinuousClock.now < caughtUp else {
                Issue.record("the consumer never acknowledged every message")
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        consumer.cancel()
        _ = await consumer.result
        #expect(resumed.withLock { $0 } == ["m3", "m4", "m5"])

        // The history is all there, for a rebuild.
        let history = Mutex<[String]>([])
        try await reopened.replay(topic: "t") { message in
            history.withLock { $0.append(String(decoding: message.value, as: UTF8.self)) }
        }
        #expect(history.withLock { $0 } == ["m1", "m2", "m3", "m4", "m5"])
        await reopened.close()
    }

    @Test("A consumer waiting on the log is woken by a publish in the same process")
    func wakesOnPublish() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        // A poll interval far longer than the wait: only the wake-up can deliver in time.
        let log = try await LocalEventLog.open(
            directory: directory, pollInterval: .seconds(30), logger: Logger(label: "t"))
        let received = Mutex(0)
        let consumer = Task {
            try await log.consume(topics: ["t"], group: "g") { _ in received.withLock { $0 += 1 } }
        }
        // Once the first message is in, the consumer has read the log and found nothing more to do.
        try await log.publish([OutgoingMessage(topic: "t", key: "k", value: Data("x".utf8))])
        try await waitUntil("the first message", timeout: .seconds(5)) { received.withLock { $0 } == 1 }
        try await log.publish([OutgoingMessage(topic: "t", key: "k", value: Data("y".utf8))])
        try await waitUntil("the second message", timeout: .seconds(5)) { received.withLock { $0 } == 2 }
        consumer.cancel()
        _ = await consumer.result
        await log.close()
    }
}

