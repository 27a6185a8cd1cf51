import Contracts
import FluentKit
import FluentSQLiteDriver
import Foundation
import Logging
import Messaging
import NIOPosix
import Storage
import Synchronization

/// A service database on a real SQLite file, with the messaging tables and one entity table.
final class TestDatabase: Sendable {
    let databases: Databases
    let store: ServiceStore
    let directory: URL

    init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("messaging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
        databases.use(.sqlite(.file(directory.appendingPathComponent("service.sqlite").path)), as: .sqlite)
        self.databases = databases
        let logger = Logger(label: "test")
        store = ServiceStore(engine: .sqlite) {
            databases.database(.sqlite, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())!
        }
        for migration in MessagingMigrations.all + [CreateNotes()] {
            try await migration.prepare(on: store.database).get()
        }
    }

    func close() async {
        await databases.shutdownAsync()
        try? FileManager.default.removeItem(at: directory)
    }

    var db: any Database { store.database }
}

/// A stand-in aggregate: what a service's command writes beside its events.
final class Note: Model, @unchecked Sendable {
    static let schema = "notes"
    @ID(key: .id) var id: UUID?
    @Field(key: "text") var text: String
    init() {}
    init(_ text: String) {
        self.id = UUID()
        self.text = text
    }
}

struct CreateNotes: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(Note.schema).id().field("text", .string, .required).create()
    }
    func revert(on database: any Database) async throws { try await database.schema(Note.schema).delete() }
}

func envelope(
    _ event: VisitEvent = .treatmentCanceled(TreatmentCanceled(reason: "r")), receptionId: UUID = UUID()
)
    -> EventEnvelope
{
    EventEnvelope(
        occurredAt: Date(timeIntervalSince1970: 1_800_000_000), receptionId: receptionId, producer: "test",
        traceparent: TraceParent.root().description, actor: "tester", event: event)
}

func message(_ envelope: EventEnvelope, offset: Int64 = 1) throws -> IncomingMessage {
    IncomingMessage(
        topic: Topics.visitEvents, partition: 0, offset: offset, key: envelope.receptionId.uuidString,
        value: try EventCoding.encode(envelope))
}

struct Injected: Error {}

/// Counts calls, and fails the first `failures` of them.
final class Recorder: Sendable {
    private let state: Mutex<(calls: Int, failures: Int)>
    init(failures: Int = 0) { state = Mutex((0, failures)) }
    var calls: Int { state.withLock { $0.calls } }
    func call() throws {
        let fail = state.withLock { s -> Bool in
            s.calls += 1
            if s.failures > 0 {
                s.failures -= 1
                return true
            }
            return false
        }
        if fail { throw Injected() }
    }
}
