import FluentKit
import Foundation
import Storage
import Tracing

/// A service's own database, with the one way to write to it: a transaction.
public struct ServiceStore: Sendable {
    private let makeDatabase: @Sendable () -> any Database
    private let gate: WriteGate?
    private let storage: (@Sendable () throws -> Void)?
    /// SQLite or PostgreSQL, as the database was opened.
    public let engine: DatabaseEngine

    /// - Parameters:
    ///   - engine: what the database runs on; on SQLite (a single writer) writes take turns.
    ///   - storage: throws when the database can no longer keep a write (its file deleted,
    ///     replaced or read-only): checked before and after every write transaction, and by the
    ///     outbox relay before it publishes.
    public init(
        engine: DatabaseEngine, storage: (@Sendable () throws -> Void)? = nil,
        database: @escaping @Sendable () -> any Database
    ) {
        self.makeDatabase = database
        self.engine = engine
        self.gate = engine.hasSingleWriter ? WriteGate() : nil
        self.storage = storage
    }

    /// Throws if the database can no longer keep what is written to it.
    public func checkStorage() throws { try storage?() }

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
            span.attributes["db.system.name"] = engine.description
            return try await transaction(body)
        }
    }

    private func transaction<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                if let gate {
                    return try await gate.withPermit { try await checkedTransaction(body) }
                }
                return try await checkedTransaction(body)
            } catch is ConcurrentModification where attempt < 5 {
                continue
            }
        }
    }

    /// A transaction into a database that can keep it: checked before, and after the commit (a
    /// file deleted meanwhile took the write with it: the caller hears it failed).
    private func checkedTransaction<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T)
        async throws -> T
    {
        try checkStorage()
        let result = try await engine.writeTransaction(on: makeDatabase(), body)
        try checkStorage()
        return result
    }
}

/// Another transaction changed the aggregate between our read and our write.
public struct ConcurrentModification: Error {
    public init() {}
}
