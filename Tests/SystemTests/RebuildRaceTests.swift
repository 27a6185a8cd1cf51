import Contracts
import Foundation
import Logging
import Messaging
import PatientManagementService
import SQLKit
import Synchronization
import TestSupport
import Testing

/// The rebuild of the read model against the consumer that keeps running beside it.
@Suite("Rebuild race")
struct RebuildRaceTests {
    @Test("An event the consumer applies while a rebuild reads the history is not lost")
    func eventDuringRebuild() async throws {
        let old = visitEvent(patient: "먼저 온 환자")
        let late = visitEvent(patient: "늦게 온 환자")
        let consumerRef = Box<EventConsumer?>(nil)
        let lateApplied = Box(false)
        // The history holds `old`; while the rebuild reads it, `late` arrives and the consumer
        // gets every chance (up to half a second) to apply it before the rebuild goes on.
        let history = ScriptedHistory(events: [old]) {
            let consumer = consumerRef.value.withLock { $0 }!
            Task {
                _ = try await consumer.receive(
                    IncomingMessage(
                        topic: Topics.visitEvents, partition: 0, offset: 1, key: late.receptionId.uuidString,
                        value: try EventCoding.encode(late)))
                lateApplied.value.withLock { $0 = true }
            }
            let deadline = ContinuousClock.now + .milliseconds(500)
            while !lateApplied.value.withLock({ $0 }), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        let fixture = try await ServiceFixture<PatientManagementService>(history: history)
        let service = fixture.service
        let consumer = EventConsumer(
            group: "patient-management", store: fixture.store, handledTypes: service.handledEventTypes,
            logger: Logger(label: "test"), handler: service.handle)
        consumerRef.value.withLock { $0 = consumer }

        let report = try await service.rebuild()
        #expect(report.visits == 1)
        _ = try await eventually("the late event applied") { lateApplied.value.withLock { $0 } ? true : nil }

        let rows = try await fixture.rows("SELECT reception_id FROM patient_managements")
            .map { try $0.decode(column: "reception_id", as: UUID.self) }
        #expect(Set(rows) == [old.receptionId, late.receptionId])
        await fixture.close()
    }

    @Test("A rebuild in chunks smaller than a visit equals the consumer's board; a repeated event counts once")
    func chunkedRebuild() async throws {
        let visits = (0..<5).map { _ in UUID() }
        var history: [EventEnvelope] = []
        // Each visit's events interleave with the others', so every chunk of two splits visits.
        let steps: [@Sendable (UUID) -> VisitEvent] = [
            { _ in .treatmentReceived(TreatmentReceived(patientName: "환자", department: "내과", symptom: nil)) },
            { .prescribed(Prescribed(diagnosisId: $0, patientName: "환자", orders: [])) },
            { .diagnosisCompleted(DiagnosisCompleted(diagnosisId: $0, note: "ok")) },
        ]
        for (step, make) in steps.enumerated() {
            for (n, id) in visits.enumerated() {
                history.append(visitEnvelope(make(id), receptionId: id, at: Double(step * 10 + n)))
            }
        }
        // A publish retried after a crash: the same event again, chunks later.
        history.insert(history[1], at: 9)
        history.append(history[0])

        let incremental = try await ServiceFixture<PatientManagementService>()
        let consumer = EventConsumer(
            group: "patient-management", store: incremental.store,
            handledTypes: incremental.service.handledEventTypes, logger: Logger(label: "test"),
            handler: incremental.service.handle)
        for (offset, event) in history.enumerated() {
            _ = try await consumer.receive(
                IncomingMessage(
                    topic: Topics.visitEvents, partition: 0, offset: Int64(offset), key: event.receptionId.uuidString,
                    value: try EventCoding.encode(event)))
        }
        let query = "SELECT reception_id, status, document FROM patient_managements ORDER BY reception_id"
        let expected = try await incremental.rows(query).map { try Self.row($0) }
        #expect(expected.count == visits.count)
        #expect(Set(expected.map { $0[1] }) == ["COMPLETED"])

        let rebuilt = try await ServiceFixture<PatientManagementService>(history: ScriptedHistory(events: history) {})
        let report = try await rebuilt.service.rebuild(chunkSize: 2)
        #expect(report.events == 15 && report.visits == 5)
        #expect(try await rebuilt.rows(query).map { try Self.row($0) } == expected)
        #expect(try await rebuilt.rows("SELECT event_id FROM inbox").count == 15)
        await incremental.close()
        await rebuilt.close()
    }

    private static func row(_ row: any SQLRow) throws -> [String] {
        [
            try row.decode(column: "reception_id", as: UUID.self).uuidString,
            try row.decode(column: "status", as: String.self), try row.decode(column: "document", as: String.self),
        ]
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
