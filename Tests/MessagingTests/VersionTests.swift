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

        // Two commands both loaded version 0; the first claims version 1.
        try await database.db.claimVersion(table: "versioned", id: id, expected: 0)
        await #expect(throws: ConcurrentModification.self) {
            try await database.db.claimVersion(table: "versioned", id: id, expected: 0)
        }

        // Without the gate (as on PostgreSQL), the store retries a transaction that lost the race: it reloads and
        // decides again, this time from version 1.
        let ungated = ServiceStore(engine: .postgresql) { database.db }
        let seen = Mutex<[Int]>([])
        try await ungated.write { db in
            let rows = try await (db as! any SQLDatabase).raw("SELECT version FROM versioned").all()
            let version = try rows[0].decode(column: "version", as: Int.self)
            seen.withLock { $0.append(version) }
            // The first attempt acts on what it read before a concurrent save: version 0.
            try await db.claimVersion(
                table: "versioned", id: id, expected: seen.withLock { $0.count } == 1 ? 0 : version)
        }
        #expect(seen.withLock { $0 } == [1, 1])

        // A transaction that keeps losing gives up and says so (409), instead of looping.
        await #expect(throws: ConcurrentModification.self) {
            try await ungated.write { db in try await db.claimVersion(table: "versioned", id: id, expected: 0) }
        }
        await database.close()
    }
}

struct CreateVersioned: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema("versioned").id().field("version", .int, .required).create()
    }
    func revert(on database: any Database) async throws { try await database.schema("versioned").delete() }
}
