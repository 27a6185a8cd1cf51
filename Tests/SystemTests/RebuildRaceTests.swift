import Contracts
import FluentKit
import FluentSQLiteDriver
import Foundation
import Logging
import Messaging
import NIOPosix
import PatientManagementService
import SQLKit
import ServiceKit
import Synchronization
import Testing

/// The rebuild of the read model against the consumer that keeps running beside it.
@Suite("Rebuild race")
struct RebuildRaceTests {
    @Test("An event the consumer applies while a rebuild reads the history is not lost")
    func eventDuringRebuild() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
        databases.use(
            .sqlite(
                .file(directory.appendingPathComponent("pm.sqlite").path), dataEncoder: .init(), dataDecoder: .init(),
                sqlLogLevel: nil),
            as: .sqlite)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let logger = Logger(label: "test")
        let store = ServiceStore(serializeWrites: true) {
            databases.database(.sqlite, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())!
        }
        for migration in PatientManagementService.migrations { try await migration.prepare(on: store.database).get() }

        let old = visitEvent(patient: "먼저 온 환자")
        let late = visitEvent(patient: "늦게 온 환자")
        let consumerRef = Box<EventConsumer?>(nil)
        let lateApplied = Box(false)
        // The history holds `old`; while the rebuild reads it, `late` arrives and the consumer
        // gets every chance (up to half a second) to apply it before the rebuild goes on.
        let history = ScriptedHistory(events: [old]) {
            let consumer = consumerRef.value.withLock { $0 }!
            Task {
                _ = try await consumer.apply(late)
                lateApplied.value.withLock { $0 = true }
            }
            let deadline = ContinuousClock.now + .milliseconds(500)
            while !lateApplied.value.withLock({ $0 }), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        let service = PatientManagementService(
            context: ServiceContext(store: store, nudgeRelay: {}, timeZone: .gmt, logger: logger, history: history))
        let consumer = EventConsumer(
            group: "patient-management", store: store, handledTypes: service.handledEventTypes, logger: logger,
            handler: service.handle)
        consumerRef.value.withLock { $0 = consumer }

        let report = try await service.rebuild()
        #expect(report.visits == 1)
        _ = try await eventually("the late event applied") { lateApplied.value.withLock { $0 } ? true : nil }

        let rows = try await (store.database as! any SQLDatabase)
            .raw("SELECT reception_id FROM patient_managements").all()
            .map { try $0.decode(column: "reception_id", as: UUID.self) }
        #expect(Set(rows) == [old.receptionId, late.receptionId])
        await databases.shutdownAsync()
    }

    private func visitEvent(patient: String) -> EventEnvelope {
        EventEnvelope(
            occurredAt: Date(), receptionId: UUID(), producer: "reception", traceparent: nil, actor: "desk",
            event: .treatmentReceived(TreatmentReceived(patientName: patient, department: nil, symptom: nil)))
    }
}

/// A fixed history that runs `whileReading` after handing out its events.
struct ScriptedHistory: EventHistory {
    let events: [EventEnvelope]
    let whileReading: @Sendable () async -> Void

    func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        for (offset, event) in events.enumerated() {
            try await handler(
                IncomingMessage(
                    topic: topic, partition: 0, offset: Int64(offset), key: event.receptionId.uuidString,
                    value: try EventCoding.encode(event)))
        }
        await whileReading()
    }
}

/// Shared state between a test and the tasks it starts.
final class Box<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
}
