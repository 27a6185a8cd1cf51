import FluentKit
import FluentPostgresDriver
import FluentSQLiteDriver
import Logging
import NIOCore
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

extension DatabaseEngine {
    /// Whether `error` says a lock was waited for as long as allowed (``SQLiteLockWait`` on
    /// SQLite; SQLSTATE 55P03, lock_not_available, on PostgreSQL): the work was not done, and
    /// trying again in a moment may well succeed.
    public static func isLockWaitOver(_ error: any Error) -> Bool {
        if let error = error as? SQLiteError {
            return [.busy, .busyTimeout, .locked].contains(error.reason)
        }
        if let error = error as? PSQLError { return error.serverInfo?[.sqlState] == "55P03" }
        return false
    }

    /// The engine `database` runs on, for code handed only the database (a migration that
    /// declares a column differently on each).
    public static func of(_ database: any Database) throws -> DatabaseEngine {
        try database.sql.dialect.name == "postgresql" ? .postgresql : .sqlite
    }
}

/// How long an SQLite statement waits for another connection's lock before it fails with
/// SQLITE_BUSY, set on every connection the product opens.
///
/// SQLiteNIO installs a busy handler that retries at once and for ever, on the thread-pool thread
/// running the statement. Waiters spinning on every thread of a pool starve the connection that
/// holds the lock of the thread it needs to commit, and everything on that pool stops for good:
/// it happened in CI (a test's own writes on a service's file and on the event log, twenty
/// minutes, every test of the process timing out). `PRAGMA busy_timeout` replaces that handler
/// with SQLite's own, which sleeps between tries and gives up: a wait ends in an error the caller
/// retries or reports, never in a hang. Pools are also sized so that each connection has a thread.
public enum SQLiteLockWait {
    public static let milliseconds = 5_000
    /// The statement that sets it on one connection.
    public static let pragma = "PRAGMA busy_timeout = \(milliseconds)"
}

extension Databases {
    /// Sets ``SQLiteLockWait`` on every connection of the SQLite database `id`.
    /// FluentSQLiteDriver keeps exactly one connection per event loop, for the life of its pool
    /// (an SQLite connection does not drop), so this reaches each of them.
    public func boundSQLiteLockWaits(_ id: DatabaseID, on group: any EventLoopGroup, logger: Logger) async throws {
        for loop in group.makeIterator() {
            guard let database = database(id, logger: logger, on: loop) else { continue }
            try await database.withConnection { connection in
                try await connection.sql.raw(SQLQueryString(SQLiteLockWait.pragma)).run()
            }
        }
    }
}
