import Logging
import NIOPosix
import SQLKit
import SQLiteKit

/// A fresh in-memory SQLite database for one test, closed after it.
func withMemoryDatabase(_ body: (any SQLDatabase) async throws -> Void) async throws {
    let source = SQLiteConnectionSource(
        configuration: .init(storage: .memory, enableForeignKeys: true), threadPool: .singleton)
    let connection = try await source.makeConnection(
        logger: Logger(label: "test"), on: MultiThreadedEventLoopGroup.singleton.any()
    ).get()
    do {
        try await body(connection.sql())
        try await connection.close().get()
    } catch {
        try? await connection.close().get()
        throw error
    }
}
