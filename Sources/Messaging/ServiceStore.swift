import FluentKit
import Foundation
import SQLKit

/// A service's own database, with the one way to write to it: a transaction.
public struct ServiceStore: Sendable {
    private let makeDatabase: @Sendable () -> any Database
    private let gate: WriteGate?

    /// - Parameter serializeWrites: true for SQLite, which has a single writer.
    public init(serializeWrites: Bool, database: @escaping @Sendable () -> any Database) {
        self.makeDatabase = database
        self.gate = serializeWrites ? WriteGate() : nil
    }

    /// For reads, which need no transaction.
    public var database: any Database { makeDatabase() }

    /// Runs `body` in one transaction: everything it writes commits together or not at all.
    /// A transaction that lost a race on an aggregate's version is retried from the start.
    public func write<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                if let gate {
                    return try await gate.withPermit { try await makeDatabase().transaction(body) }
                }
                return try await makeDatabase().transaction(body)
            } catch is ConcurrentModification where attempt < 5 {
                continue
            }
        }
    }
}

extension ServiceStore {
    /// True if `error` says a unique constraint was violated (SQLite or PostgreSQL).
    public static func isUniqueViolation(_ error: any Error) -> Bool {
        if let error = error as? any DatabaseError, error.isConstraintFailure { return true }
        let text = String(reflecting: error)
        return text.contains("UNIQUE constraint failed") || text.contains("23505")
    }
}

/// Another transaction changed the aggregate between our read and our write.
public struct ConcurrentModification: Error {}

extension Database {
    /// Claims the next version of an aggregate row: succeeds only if the row is still at
    /// `version`, so of two concurrent commands on one aggregate exactly one proceeds and the
    /// other is retried against the new state. Works the same on SQLite and PostgreSQL.
    public func claimVersion(table: String, id: UUID, expected version: Int) async throws {
        guard let sql = self as? any SQLDatabase else { fatalError("Fluent driver without SQL support") }
        let rows = try await sql.update(table)
            .set("version", to: SQLLiteral.numeric("\(version + 1)"))
            .where("id", .equal, SQLBind(id))
            .where("version", .equal, SQLLiteral.numeric("\(version)"))
            .returning("id")
            .all()
        if rows.isEmpty { throw ConcurrentModification() }
    }

}
