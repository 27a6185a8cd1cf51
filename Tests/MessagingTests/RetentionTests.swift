import Contracts
import FluentKit
import Foundation
import Logging
import Messaging
import MessagingLocal
import Synchronization
import TestSupport
import Testing

@Suite("Retention")
struct RetentionTests {
    @Test("The sweep deletes published outbox rows and inbox entries past their retention, never a pending row")
    func sweep() async throws {
        let database = try await TestDatabase()
        let now = Date()
        // 2,500 published rows: more than one delete batch. Then one pending row, the oldest of all.
        let published = (0..<2_500).map { _ in envelope() }
        try await database.store.write { db in try await Outbox.append(published + [envelope()], on: db) }
        let ids = try await OutboxMessage.query(on: database.db).sort(\.$id).all(\.$id)
        try await OutboxMessage.query(on: database.db).filter(\.$id ~~ Array(ids.prefix(2_500)))
            .set(\.$publishedAt, to: now.addingTimeInterval(-8 * 86_400)).update()
        // One published yesterday: within the 7 days.
        try await database.store.write { db in try await Outbox.append([envelope()], on: db) }
        try await OutboxMessage.query(on: database.db).filter(\.$publishedAt == nil).filter(\.$id > ids.last!)
            .set(\.$publishedAt, to: now.addingTimeInterval(-86_400)).update()

        try await database.store.write { db in
            try await InboxEntry(eventId: UUID(), eventType: "Old", handledAt: now.addingTimeInterval(-31 * 86_400))
                .create(on: db)
            try await InboxEntry(eventId: UUID(), eventType: "Recent", handledAt: now.addingTimeInterval(-86_400))
                .create(on: db)
        }

        let report = try await Retention.sweep(database.store, settings: RetentionSettings(), now: now)
        #expect(report == .init(outbox: 2_500, inbox: 1))
        let left = try await OutboxMessage.query(on: database.db).sort(\.$id).all()
        #expect(left.count == 2)
        #expect(left.first?.publishedAt == nil, "the pending row stays whatever its age")
        #expect(try await InboxEntry.query(on: database.db).all(\.$eventType) == ["Recent"])

        // Kept for good: nothing goes.
        let kept = try await Retention.sweep(
            database.store, settings: RetentionSettings(outbox: nil, inbox: nil), now: now.addingTimeInterval(1e9))
        #expect(kept == .init())
        await database.close()
    }

    @Test("The local log trims old events, keeps its positions, and refuses a replay of a trimmed history")
    func trimLog() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = try await LocalEventLog.open(directory: directory, pollInterval: .milliseconds(10), logger: Logger(label: "t"))
        try await log.publish((1...3).map { OutgoingMessage(topic: "t", key: "k", value: Data("m\($0)".utf8)) })
        #expect(try await log.trim(appendedBefore: Date().addingTimeInterval(-3600)) == 0)
        try await log.replay(topic: "t") { _ in }

        #expect(try await log.trim(appendedBefore: Date().addingTimeInterval(60)) == 3)
        #expect(try await log.head(topic: "t") == 3, "the head survives its events")
        await #expect(throws: LocalEventLogError.self) { try await log.replay(topic: "t") { _ in } }

        // A later event gets the next position, and a consumer that keeps its own position
        // (at 4, after the trimmed three) reads it.
        try await log.publish([OutgoingMessage(topic: "t", key: "k", value: Data("m4".utf8))])
        let seen = Mutex<[Int64]>([])
        let consumer = Task {
            try await log.consume(
                topics: ["t"], group: "g", batchSize: 10,
                positions: { _ in [TopicPartition(topic: "t", partition: 0): 4] }
            ) { batch in seen.withLock { $0 += batch.map(\.offset) } }
        }
        try await waitUntil("the fourth event seen", timeout: .seconds(10)) { seen.withLock { $0 } == [4] }
        consumer.cancel()
        _ = await consumer.result
        await log.close()
    }
}
