import Contracts
import FluentKit
import FluentSQLiteDriver
import Foundation
import Logging
import Messaging
import NIOPosix
import SQLKit
import ServiceKit
import Storage

/// One service on a real SQLite file, without HTTP or transport: for testing its event handlers
/// and its rebuild directly.
final class ServiceFixture<Service: HospitalService>: Sendable {
    let service: Service
    let store: ServiceStore
    private let databases: Databases
    private let directory: URL

    init(history: (any EventHistory)? = nil) async throws {
        directory = TestSystem.temporaryDirectory()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
        databases.use(
            .sqlite(
                .file(directory.appendingPathComponent("\(Service.name).sqlite").path), dataEncoder: .init(),
                dataDecoder: .init(), sqlLogLevel: nil),
            as: .sqlite)
        self.databases = databases
        let logger = Logger(label: "test")
        store = ServiceStore(engine: .sqlite) {
            databases.database(.sqlite, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())!
        }
        for migration in Service.migrations { try await migration.prepare(on: store.database).get() }
        service = Service(
            context: ServiceContext(store: store, nudgeRelay: {}, timeZone: .gmt, logger: logger, history: history))
    }

    func close() async {
        await databases.shutdownAsync()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Handles `envelope` as the consumer would, minus the inbox (to test the handler alone).
    func handle(_ envelope: EventEnvelope) async throws {
        try await store.write { db in try await self.service.handle(envelope, on: db) }
    }

    var sql: any SQLDatabase { store.database as! any SQLDatabase }

    func rows(_ query: String) async throws -> [any SQLRow] {
        try await sql.raw(SQLQueryString(query)).all()
    }

    /// The events the service put into its outbox, oldest first.
    func outbox() async throws -> [EventEnvelope] {
        try await rows("SELECT payload FROM outbox ORDER BY sequence").map {
            try EventCoding.decode(Data(try $0.decode(column: "payload", as: String.self).utf8))
        }
    }
}

func visitEnvelope(_ event: VisitEvent, receptionId: UUID, at seconds: Double = 0) -> EventEnvelope {
    EventEnvelope(
        occurredAt: Date(timeIntervalSince1970: 1_800_000_000 + seconds), receptionId: receptionId, producer: "test",
        traceparent: TraceParent.root().description, actor: "tester", event: event)
}
