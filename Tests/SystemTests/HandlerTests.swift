import Contracts
import DiagnosisService
import ExaminationService
import Foundation
import PatientManagementService
import ReceptionService
import SQLKit
import Testing

/// Each service's reactions to the others' events, called directly on a real database. Each is
/// idempotent by itself too (not only through the inbox): a repeated fact changes nothing.
@Suite("Event handlers")
struct HandlerTests {
    let visit = UUID()
    var received: EventEnvelope {
        visitEnvelope(
            .treatmentReceived(TreatmentReceived(patientName: "홍길동", department: "내과", symptom: "기침")),
            receptionId: visit)
    }

    @Test("Diagnosis: a registration opens one WAITING diagnosis, however often it arrives")
    func diagnosisOpens() async throws {
        let fixture = try await ServiceFixture<DiagnosisService>()
        try await fixture.handle(received)
        try await fixture.handle(visitEnvelope(received.event, receptionId: visit, at: 5))
        let rows = try await fixture.rows("SELECT status, patient_name, symptom FROM diagnoses")
        #expect(rows.count == 1)
        #expect(try rows[0].decode(column: "status", as: String.self) == "WAITING")
        #expect(try rows[0].decode(column: "symptom", as: String.self) == "기침")
        #expect(try await fixture.outbox().isEmpty)
        await fixture.close()
    }

    @Test("Diagnosis: the desk's cancellation cancels it once and announces DiagnosisCanceled")
    func diagnosisCanceled() async throws {
        let fixture = try await ServiceFixture<DiagnosisService>()
        try await fixture.handle(received)
        let canceled = visitEnvelope(.treatmentCanceled(TreatmentCanceled(reason: "환자 요청")), receptionId: visit, at: 1)
        try await fixture.handle(canceled)
        try await fixture.handle(canceled)
        #expect(
            try await fixture.rows("SELECT status FROM diagnoses")[0].decode(column: "status", as: String.self)
                == "CANCELED")
        let events = try await fixture.outbox()
        #expect(events.map(\.type) == [DiagnosisCanceled.type])
        #expect(events.first?.receptionId == visit)
        #expect(events.first?.actor == "system:diagnosis")
        #expect(TraceParent(events.first?.traceparent ?? "")?.traceId == TraceParent(canceled.traceparent!)?.traceId)
        await fixture.close()
    }

    @Test("Diagnosis: results of unknown diagnoses or orders change nothing")
    func diagnosisIgnoresStrangers() async throws {
        let fixture = try await ServiceFixture<DiagnosisService>()
        try await fixture.handle(received)
        let stranger = ExaminationCompleted(examinationId: UUID(), diagnosisId: UUID(), orderId: UUID(), result: "?")
        try await fixture.handle(visitEnvelope(.examinationCompleted(stranger), receptionId: visit))
        #expect(try await fixture.rows("SELECT version FROM diagnoses")[0].decode(column: "version", as: Int.self) == 0)
        await fixture.close()
    }

    @Test("Examination: one exam per order, however often the prescription arrives")
    func examinationPerOrder() async throws {
        let fixture = try await ServiceFixture<ExaminationService>()
        let diagnosisId = UUID()
        let orders = [
            ExamOrder(orderId: UUID(), code: "CBC", name: "혈액검사"), ExamOrder(orderId: UUID(), code: "CT", name: "CT"),
        ]
        let prescribed = visitEnvelope(
            .prescribed(Prescribed(diagnosisId: diagnosisId, patientName: "홍길동", orders: orders)), receptionId: visit)
        try await fixture.handle(prescribed)
        try await fixture.handle(visitEnvelope(prescribed.event, receptionId: visit, at: 3))
        let rows = try await fixture.rows("SELECT order_id, diagnosis_id, reception_id, status FROM examinations")
        #expect(rows.count == 2)
        #expect(Set(try rows.map { try $0.decode(column: "order_id", as: UUID.self) }) == Set(orders.map(\.orderId)))
        #expect(try rows.allSatisfy { try $0.decode(column: "reception_id", as: UUID.self) == visit })
        await fixture.close()
    }

    @Test("Examination: a rejection cancels the pending exams and leaves performed ones alone")
    func examinationCompensates() async throws {
        let fixture = try await ServiceFixture<ExaminationService>()
        let diagnosisId = UUID()
        let orders = [
            ExamOrder(orderId: UUID(), code: "CBC", name: "혈액검사"), ExamOrder(orderId: UUID(), code: "CT", name: "CT"),
        ]
        try await fixture.handle(
            visitEnvelope(
                .prescribed(Prescribed(diagnosisId: diagnosisId, patientName: "홍길동", orders: orders)),
                receptionId: visit))
        _ = try await fixture.sql.raw("UPDATE examinations SET status = 'COMPLETED', result = '정상' WHERE code = 'CBC'")
            .run()

        let rejected = visitEnvelope(
            .diagnosisRejected(DiagnosisRejected(diagnosisId: diagnosisId, reason: "전원")), receptionId: visit)
        try await fixture.handle(rejected)
        try await fixture.handle(rejected)

        let statuses = Dictionary(
            uniqueKeysWithValues: try await fixture.rows("SELECT code, status FROM examinations").map {
                (try $0.decode(column: "code", as: String.self), try $0.decode(column: "status", as: String.self))
            })
        #expect(statuses == ["CBC": "COMPLETED", "CT": "CANCELED"])
        let events = try await fixture.outbox()
        #expect(events.map(\.type) == [ExaminationCanceled.type])
        if case .examinationCanceled(let e) = events.first?.event {
            #expect(e.orderId == orders[1].orderId)
            #expect(e.reason == "전원")
        }
        await fixture.close()
    }

    @Test("Reception: completion closes it; a rejection that crossed the desk's cancellation gives the doctor's reason")
    func receptionOutcomes() async throws {
        let fixture = try await ServiceFixture<ReceptionService>()
        let a = UUID()
        let b = UUID()
        for id in [a, b] {
            _ = try await fixture.sql.raw(
                """
                INSERT INTO receptions (id, version, status, patient_name, received_at, canceled_at, cancel_reason)
                VALUES (\(bind: id), 0, \(bind: id == a ? "RECEIVED" : "CANCELED"), '환자', 1800000000,
                        \(bind: id == a ? nil : 1_800_000_001.0), \(bind: id == a ? nil : "환자 요청"))
                """
            ).run()
        }
        try await fixture.handle(
            visitEnvelope(.diagnosisCompleted(DiagnosisCompleted(diagnosisId: UUID(), note: "")), receptionId: a, at: 2)
        )
        try await fixture.handle(
            visitEnvelope(
                .diagnosisRejected(DiagnosisRejected(diagnosisId: UUID(), reason: "거부")), receptionId: b, at: 2))

        let rows = try await fixture.rows("SELECT id, status, cancel_reason FROM receptions")
        let byId = Dictionary(uniqueKeysWithValues: try rows.map { (try $0.decode(column: "id", as: UUID.self), $0) })
        #expect(try byId[a]!.decode(column: "status", as: String.self) == "COMPLETED")
        #expect(try byId[b]!.decode(column: "status", as: String.self) == "CANCELED")
        // The rejection crossed the desk's cancellation: the doctor's service decided, so its reason stands.
        #expect(try byId[b]!.decode(column: "cancel_reason", as: String.self) == "거부")
        #expect(try await fixture.outbox().isEmpty)
        await fixture.close()
    }

    @Test("Patient management: a visit's row follows its events, in any order")
    func boardRow() async throws {
        let fixture = try await ServiceFixture<PatientManagementService>()
        let diagnosisId = UUID()
        // The completion arrives before the registration.
        try await fixture.handle(
            visitEnvelope(
                .diagnosisCompleted(DiagnosisCompleted(diagnosisId: diagnosisId, note: "")), receptionId: visit, at: 9))
        try await fixture.handle(received)
        let rows = try await fixture.rows("SELECT status, received_at FROM patient_managements")
        #expect(rows.count == 1)
        #expect(try rows[0].decode(column: "status", as: String.self) == "COMPLETED")
        #expect(try rows[0].decode(column: "received_at", as: Date.self) == Date(timeIntervalSince1970: 1_800_000_000))
        await fixture.close()
    }
}
