import FluentKit
import Foundation
import Logging
import Messaging
import SQLKit
import ServiceKit
import Storage
import Synchronization
import Testing

/// Optimistic concurrency without the SQLite write gate, as on PostgreSQL.
@Suite("Aggregate versions")
struct VersionTests {
    @Test("A save from a stale version is refused; the command is retried against the new state")
    func staleVersion() async throws {
        let database = try await TestDatabase()
        try await CreateVersioned().prepare(on: database.db)
        let id = UUID()
        try await (database.db as! any SQLDatabase).raw("INSERT INTO versioned (id, version) VALUES (\(bind: id), 0)")
            .run()

        // Two commands both loaded version 0; the first saves version 1.
        let first = try #require(try await Versioned.byID(id, on: database.db))
        let second = try #require(try await Versioned.byID(id, on: database.db))
        try await first.save(from: 0, on: database.db)
        await #expect(throws: ConcurrentModification.self) { try await second.save(from: 0, on: database.db) }
        #expect(try await Versioned.byID(id, on: database.db)?.version == 1)

        // Without the gate (as on PostgreSQL), the store retries a transaction that lost the race: it reloads and
        // decides again, this time from version 1.
        let ungated = ServiceStore(engine: .postgresql) { database.db }
        let seen = Mutex<[Int]>([])
        try await ungated.write { db in
            let row = try #require(try await Versioned.byID(id, on: db))
            seen.withLock { $0.append(row.version) }
            // The first attempt acts on what it read before a concurrent save: version 0.
            try await row.save(from: seen.withLock { $0.count } == 1 ? 0 : row.version, on: db)
        }
        #expect(seen.withLock { $0 } == [1, 1])
        #expect(try await Versioned.byID(id, on: database.db)?.version == 2)

        // A transaction that keeps losing gives up and says so (409), instead of looping.
        await #expect(throws: ConcurrentModification.self) {
            try await ungated.write { db in
                try await #require(try await Versioned.byID(id, on: db)).save(from: 0, on: db)
            }
        }
        await database.close()
    }
}

/// A row with a version, saved as an aggregate is (`AggregateRecord.update`): its changes and
/// the next version in one statement, provided the version is still the one it was read at.
final class Versioned: Model, @unchecked Sendable {
    static let schema = "versioned"
    @ID(key: .id) var id: UUID?
    @Field(key: "version") var version: Int
    init() {}

    func save(from loaded: Int, on db: any Database) async throws {
        version = loaded + 1
        guard try await saveChanges(on: db, onlyIf: "version", is: loaded) else { throw ConcurrentModification() }
    }
}

struct CreateVersioned: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema("versioned").id().field("version", .int, .required).create()
    }
    func revert(on database: any Database) async throws { try await database.schema("versioned").delete() }
}
