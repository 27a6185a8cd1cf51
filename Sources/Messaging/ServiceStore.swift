import FluentKit
import Foundation
import Tracing

/// A service's own database, with the one way to write to it: a transaction.
public struct ServiceStore: Sendable {
    private let makeDatabase: @Sendable () -> any Database
    private let gate: WriteGate?

    /// - Parameter serializeWrites: true for SQLite, which has a single writer.
    public init(serializeWrites: Bool, database: @escaping @Sendable () -> any Database) {
        self.makeDatabase = database
        self.gate = serializeWrites ? WriteGate() : nil
    }

    /// Whether this store lets one write transaction in at a time (SQLite).
    public var serializesWrites: Bool { gate != nil }

    /// For reads, which need no transaction.
    public var database: any Database { makeDatabase() }

    /// Runs `body` in one transaction: everything it writes commits together or not at all.
    /// A transaction that lost a race on an aggregate's version is retried from the start.
    public func write<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        // One span for the transaction (and its retries), a child of whatever caused it; none
        // outside a trace (a consumer's batch spans several traces: each event has its own
        // `process` span).
        guard ServiceContext.current != nil else { return try await transaction(body) }
        return try await withSpan("transaction", ofKind: .client) { span in
            span.attributes["db.system.name"] = gate == nil ? "postgresql" : "sqlite"
            return try await transaction(body)
        }
    }

    private func transaction<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
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
        // Only a unique violation, told apart by its reason (not NOT NULL or foreign-key failures):
        // SQLite reports "UNIQUE constraint failed", PostgreSQL SQLSTATE 23505 (unique_violation).
        guard let error = error as? any DatabaseError, error.isConstraintFailure else { return false }
        let text = String(reflecting: error)
        return text.contains("UNIQUE constraint failed") || text.contains("23505")
    }
}

/// Another transaction changed the aggregate between our read and our write.
public struct ConcurrentModification: Error {
    public init() {}
}
