import FluentKit
import FluentPostgresDriver
import FluentSQLiteDriver
import SQLKit

/// The engine a database runs on, decided once where the database is opened (the composition
/// root, which knows the drivers), with what differs between the two. Code elsewhere asks this,
/// never a dialect's name or an error's text.
public struct DatabaseEngine: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case sqlite
        case postgresql
    }

    public let kind: Kind
    private let uniqueViolation: @Sendable (any Error) -> Bool

    /// - Parameter uniqueViolation: whether a driver's error is a unique or primary-key
    ///   violation, by its code.
    public init(_ kind: Kind, uniqueViolation: @escaping @Sendable (any Error) -> Bool) {
        self.kind = kind
        self.uniqueViolation = uniqueViolation
    }

    /// Whether `error` says a unique (or primary key) constraint was violated: a NOT NULL or
    /// foreign-key failure is not one.
    public func isUniqueViolation(_ error: any Error) -> Bool { uniqueViolation(error) }

    /// SQLite has a single writer: a service lets one write transaction in at a time there.
    public var hasSingleWriter: Bool { kind == .sqlite }

    /// The OpenTelemetry `db.system.name`.
    public var description: String { kind.rawValue }

    /// Runs `body` in one write transaction on `database`.
    ///
    /// On SQLite it holds the write lock from its first statement (`BEGIN IMMEDIATE`): a
    /// transaction that read first and wanted the lock afterwards would be refused at once
    /// (SQLITE_BUSY, no waiting) whenever another connection held it for a moment, as an online
    /// backup does while it pins its snapshot. Taken first, the lock is waited for instead.
    /// `body` must not begin a transaction of its own. On PostgreSQL, an ordinary transaction.
    public func writeTransaction<T: Sendable>(
        on database: any Database, _ body: @escaping @Sendable (any Database) async throws -> T
    ) async throws -> T {
        guard kind == .sqlite else { return try await database.transaction(body) }
        return try await database.withConnection { connection in
            let sql = try connection.sql
            try await sql.raw("BEGIN IMMEDIATE").run()
            do {
                let result = try await body(connection)
                try await sql.raw("COMMIT").run()
                return result
            } catch {
                try? await sql.raw("ROLLBACK").run()
                throw error
            }
        }
    }
}

/// A database that cannot be spoken to in SQL (no driver in use here is one).
public struct NotAnSQLDatabase: Error, CustomStringConvertible {
    public var description: String { "the database is not an SQL database (SQLite and PostgreSQL are)" }
}

extension Database {
    /// This database as SQLKit sees it: every driver in use (SQLite, PostgreSQL) is one.
    public var sql: any SQLDatabase {
        get throws(NotAnSQLDatabase) {
            guard let sql = self as? any SQLDatabase else { throw NotAnSQLDatabase() }
            return sql
        }
    }
}

extension DatabaseEngine {
    /// The engine of that kind.
    public static func of(_ kind: Kind) -> DatabaseEngine {
        switch kind {
        case .sqlite: .sqlite
        case .postgresql: .postgresql
        }
    }

    /// SQLite (SQLiteNIO opens with extended result codes): SQLITE_CONSTRAINT_UNIQUE or
    /// SQLITE_CONSTRAINT_PRIMARYKEY.
    public static let sqlite = DatabaseEngine(.sqlite) { error in
        guard let error = error as? SQLiteError else { return false }
        return error.reason == .constraintUniqueFailed || error.reason == .constraintPrimaryKeyFailed
    }

    /// PostgreSQL: SQLSTATE 23505, unique_violation (primary keys included).
    public static let postgresql = DatabaseEngine(.postgresql) { error in
        if let error = error as? PSQLError {
            return error.serverInfo?[.sqlState] == PostgresError.Code.uniqueViolation.raw
        }
        return (error as? PostgresError)?.code == .uniqueViolation
    }
}
