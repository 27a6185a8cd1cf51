import FluentKit
import Foundation
import Logging
import Messaging
import NIOPosix
import SQLiteNIO
import Testing

@Suite("Write transactions and another connection's write lock")
struct WriteLockTests {
    @Test("A write that reads first waits for another connection's write lock instead of failing")
    func waitsForTheLock() async throws {
        let database = try await TestDatabase()
        try await database.store.write { db in try await Note("먼저").create(on: db) }
        // Another connection (a backup pinning its snapshot, another process) holds the write
        // lock for a moment, on threads of its own.
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let holder = try await SQLiteConnection.open(
            storage: .file(path: database.directory.appendingPathComponent("service.sqlite").path), threadPool: pool,
            logger: Logger(label: "test"), on: MultiThreadedEventLoopGroup.singleton.any())
        _ = try await holder.query("BEGIN IMMEDIATE", [])
        let release = Task {
            try await Task.sleep(for: .milliseconds(300))
            _ = try await holder.query("ROLLBACK", [])
        }
        // Read, then write: begun as a reader, it would be refused (SQLITE_BUSY) on its write.
        let written = await Result(catching: {
            try await database.store.write { db in
                let count = try await Note.query(on: db).count()
                try await Note("\(count + 1)번째").create(on: db)
            }
        })
        _ = await release.result
        try await holder.close()
        #expect(throws: Never.self) { try written.get() }
        #expect(try await Note.query(on: database.db).count() == 2)
        try await pool.shutdownGracefully()
        await database.close()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}

