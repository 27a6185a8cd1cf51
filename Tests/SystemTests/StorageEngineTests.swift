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
