import FluentKit
import Foundation
import Runtime
import SQLKit
import Storage
import Testing

/// The storage layer tells a unique violation by the driver's code, on the engine the tests run
/// on (SQLite here, PostgreSQL in CI's second pass), and nothing else for one.
@Suite("Storage: what differs between SQLite and PostgreSQL")
struct StorageEngineTests {
    @Test("A duplicate key is a unique violation; a missing NOT NULL value or a syntax error is not")
    func uniqueViolationsByCode() async throws {
        try await withTestSystem { system in
            let engine: DatabaseEngine = TestSystem.onPostgres ? .postgresql : .sqlite
            let db = try #require(system.system.database(of: .reception))
            try await db.raw("CREATE TABLE storage_probe (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE)").run()
            try await db.raw("INSERT INTO storage_probe (id, code) VALUES (1, 'a')").run()
            func failure(_ statement: String) async -> (any Error)? {
                do {
                    try await db.raw(SQLQueryString(statement)).run()
                    return nil
                } catch {
                    return error
                }
            }
            let cases: [(String, Bool, String)] = [
                ("INSERT INTO storage_probe (id, code) VALUES (1, 'b')", true, "the same primary key"),
                ("INSERT INTO storage_probe (id, code) VALUES (2, 'a')", true, "the same unique column"),
                ("INSERT INTO storage_probe (id) VALUES (3)", false, "a NOT NULL column left out"),
                ("INSERT INTO storage_probe (id, nonsense) VALUES (4, 'x')", false, "no such column"),
            ]
            for (statement, unique, what) in cases {
                let error = try #require(await failure(statement), "\(what) was accepted")
                #expect(engine.isUniqueViolation(error) == unique, "\(what): \(String(reflecting: error))")
            }
            #expect(!engine.isUniqueViolation(CancellationError()))
        }
    }
}

/// A model of a table of its own, for the fixed statements.
private final class StorageProbe: Model, @unchecked Sendable {
    static let schema = "storage_probes"
    @ID(key: .id) var id: UUID?
    @Field(key: "status") var status: String
    @OptionalField(key: "note") var note: String?
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "version") var version: Int

    init() {}

    init(status: String, createdAt: Date, note: String? = nil) {
        self.status = status
        self.createdAt = createdAt
        self.note = note
        self.version = 1
    }
}

@Suite("Storage: fixed statements on both engines")
struct FixedStatementTests {
    @Test("An insert writes every field and the model knows it is stored; an update writes the changed fields, only at the version read; several selections are one ordered, bounded read")
    func insertsUpdatesSelections() async throws {
        try await withTestSystem { system in
            let db = try #require(system.system.modelDatabase(of: .reception))
            let (id, time) = TestSystem.onPostgres ? ("UUID", "TIMESTAMPTZ") : ("TEXT", "DOUBLE PRECISION")
            try await db.sql.raw(
                SQLQueryString(
                    """
                    CREATE TABLE storage_probes (id \(id) PRIMARY KEY, status TEXT NOT NULL, note TEXT,
                    created_at \(time) NOT NULL, version INTEGER NOT NULL)
                    """)
            ).run()
            let start = Date(timeIntervalSince1970: 1_800_000_000)
            // Six rows, two a statement (five columns, at most ten values a statement; one row
            // with a note: the same columns all the same).
            var rows: [StorageProbe] = []
            for index in 0..<6 {
                let status = index % 2 == 0 ? "WAITING" : "CALLED"
                let note: String? = index == 3 ? "메모" : nil
                rows.append(StorageProbe(status: status, createdAt: start.addingTimeInterval(Double(6 - index)), note: note))
            }
            try await rows.insert(on: db, maxBinds: 10)
            #expect(rows.allSatisfy { $0.id != nil && $0._$idExists && !$0.hasChanges })
            let thirdID = try #require(rows[3].id)
            let third = try #require(try await StorageProbe.byID(thirdID, on: db))
            #expect(third.status == "CALLED" && third.note == "메모" && third.version == 1)
            #expect(third.createdAt == rows[3].createdAt)
            await #expect(throws: FixedWriteError.self) { try await rows[0].insert(on: db) }

            // The changed fields only, and only at the version read.
            third.note = nil
            third.version = 2
            #expect(try await third.saveChanges(on: db, onlyIf: "version", is: 1))
            #expect(!third.hasChanges)
            // A writer that read version 1, before the update above, changes nothing.
            let stale = try #require(try await StorageProbe.byID(thirdID, on: db))
            stale.status = "DONE"
            stale.version = 2
            #expect(try await stale.saveChanges(on: db, onlyIf: "version", is: 1) == false)
            let stored = try #require(try await StorageProbe.byID(thirdID, on: db))
            #expect(stored.status == "CALLED" && stored.note == nil && stored.version == 2)

            // Two selections in one statement: each in its own order, each bounded.
            let parts = try await StorageProbe.select(
                [
                    Selection("status = \(bind: "WAITING")", orderedBy: "created_at, id", limit: 2),
                    Selection("status = \(bind: "CALLED")", orderedBy: "created_at DESC, id", limit: 5),
                ], on: db)
            #expect(parts.map { $0.map(\.id) } == [[rows[4].id, rows[2].id], [rows[1].id, rows[3].id, rows[5].id]])
            #expect(parts.joined().allSatisfy { $0._$idExists })
        }
    }
}
