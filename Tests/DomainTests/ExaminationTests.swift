import Contracts
import ExaminationDomain
import Foundation
import SharedKernel
import Testing

private let examinationId = id(21)
private let orderId = id(11)

private func requested() -> Examination {
    let order = ExamOrder(orderId: orderId, code: "CBC", name: "일반혈액검사")
    let prescribed = Prescribed(diagnosisId: diagnosisId, patientName: "김민수", orders: [order])
    return Examination.requested(id: examinationId, order: order, of: prescribed, receptionId: receptionId, at: t0)
}

private func text(_ raw: String) -> ExamNote { try! ExamNote.validated(raw, field: "result") }

private func performed() -> Examination {
    var exam = requested()
    _ = try! exam.perform(result: text("정상"), at: at(60))
    return exam
}

private func canceledByExaminer() -> Examination {
    var exam = requested()
    _ = try! exam.cancel(reason: text("장비 고장"), at: at(60))
    return exam
}

@Suite("Examination: the examiner's worklist item")
struct ExaminationTests {
    @Test("An order of a prescription becomes a REQUESTED exam linked to its diagnosis, order and visit")
    func requestedFromOrder() {
        let exam = requested()

        #expect(exam.status == .requested)
        #expect(exam.orderId == orderId)
        #expect(exam.diagnosisId == diagnosisId)
        #expect(exam.receptionId == receptionId)
        #expect(exam.patientName == "김민수")
        #expect(exam.code == "CBC" && exam.name == "일반혈액검사")
        #expect(exam.requestedAt == t0)
        #expect(exam.resolvedAt == nil)
    }

    @Test("검사실 호출: the prescription's department, number and priority; a room that does not perform the exam refused; call, recall, start and undo each a QueueUpdated of the exam's order; a performed exam is not called")
    func callingToExamRooms() throws {
        let order = ExamOrder(orderId: orderId, code: "CBC", name: "일반혈액검사")
        let prescribed = Prescribed(
            diagnosisId: diagnosisId, patientName: "김민수", orders: [order], department: "내과", queueNumber: "A-007",
            priority: "CARE")
        var exam = Examination.requested(id: examinationId, order: order, of: prescribed, receptionId: receptionId, at: t0)
        #expect(exam.department == "내과" && exam.queueNumber == "A-007" && exam.priority == .care)
        let layout = ClinicLayout.standard

        #expect(throws: InvalidTransition.self) { try exam.call(room: "영상검사실", in: layout, by: "lee", at: at(10)) }
        #expect(throws: InvalidTransition.self) { try exam.call(room: "진료실 1", in: layout, by: "lee", at: at(10)) }
        let called = try exam.call(room: "검사실 1", in: layout, by: "lee", at: at(10))
        #expect(
            called == [
                .queueUpdated(
                    QueueUpdated(
                        transition: "CALL", stage: "examination", entryId: examinationId, orderId: orderId, department: "내과",
                        queueNumber: "A-007", state: "CALLED", room: "검사실 1", calls: 1))
            ])
        #expect(throws: InvalidTransition.self) { try exam.call(room: "검사실 1", in: layout, by: "park", at: at(11)) }
        let recalled = try exam.call(room: "검사실 1", in: layout, by: "lee", at: at(20))
        guard case .queueUpdated(let recall) = recalled.first else { Issue.record("not a queue event"); return }
        #expect(recall.transition == "RECALL" && recall.calls == 2)
        let started = try exam.start(room: nil, in: layout, by: "lee", at: at(30))
        guard case .queueUpdated(let start) = started.first else { Issue.record("not a queue event"); return }
        #expect(start.state == "IN_EXAM" && start.room == "검사실 1")
        #expect(throws: InvalidTransition.self) { try exam.undoCalling(in: layout, by: "park", at: at(31)) }
        _ = try exam.undoCalling(in: layout, by: "lee", at: at(31))
        #expect(exam.calling.place.state == .called)
        _ = try exam.perform(result: text("정상"), at: at(40))
        #expect(throws: InvalidTransition.self) { try exam.call(room: "검사실 1", in: layout, by: "lee", at: at(50)) }
    }

    @Test("Performing a REQUESTED exam records the result and emits ExaminationCompleted")
    func perform() throws {
        var exam = requested()

        let events = try exam.perform(result: text(" Hb 14.2 "), at: at(60))

        #expect(
            events == [
                .examinationCompleted(
                    ExaminationCompleted(
                        examinationId: examinationId, diagnosisId: diagnosisId, orderId: orderId, result: "Hb 14.2"))
            ])
        #expect(exam.status == .completed)
        #expect(exam.result == "Hb 14.2")
        #expect(exam.resolvedAt == at(60))
    }

    @Test("Canceling a REQUESTED exam records the reason and emits ExaminationCanceled")
    func cancel() throws {
        var exam = requested()

        let events = try exam.cancel(reason: text("환자 거부"), at: at(60))

        #expect(
            events == [
                .examinationCanceled(
                    ExaminationCanceled(
                        examinationId: examinationId, diagnosisId: diagnosisId, orderId: orderId, reason: "환자 거부"))
            ])
        #expect(exam.status == .canceled)
        #expect(exam.cancelReason == "환자 거부")
        #expect(exam.result == nil)
        #expect(exam.resolvedAt == at(60))
    }

    @Test("Performing or canceling a resolved exam is refused with its state")
    func resolvedRefuses() {
        for (resolved, state) in [(performed(), "COMPLETED"), (canceledByExaminer(), "CANCELED")] {
            var exam = resolved

            #expect(throws: InvalidTransition(aggregate: "examination", currentState: state, attempted: "perform")) {
                try exam.perform(result: text("again"), at: at(120))
            }
            #expect(throws: InvalidTransition(aggregate: "examination", currentState: state, attempted: "cancel")) {
                try exam.cancel(reason: text("again"), at: at(120))
            }
            #expect(exam == resolved)
        }
    }

    @Test("A closed consultation cancels a pending exam and emits ExaminationCanceled")
    func compensationCancelsPending() {
        var exam = requested()

        let events = exam.consultationClosed(reason: "진료 거부", at: at(300))

        #expect(
            events == [
                .examinationCanceled(
                    ExaminationCanceled(
                        examinationId: examinationId, diagnosisId: diagnosisId, orderId: orderId, reason: "진료 거부"))
            ])
        #expect(exam.status == .canceled)
        #expect(exam.cancelReason == "진료 거부")
        #expect(exam.resolvedAt == at(300))
    }

    @Test("A closed consultation leaves a performed or already canceled exam untouched, without events")
    func compensationLeavesResolved() {
        for resolved in [performed(), canceledByExaminer()] {
            var exam = resolved

            let events = exam.consultationClosed(reason: "진료 거부", at: at(300))

            #expect(events.isEmpty)
            #expect(exam == resolved)
        }
    }

    @Test("A result or cancel reason is required text")
    func examResultValidation() throws {
        #expect(throws: ValidationFailure([.init(field: "result", code: .required, message: "is required")])) {
            try ExamNote.validated(nil, field: "result")
        }
        #expect(throws: ValidationFailure([.init(field: "reason", code: .required, message: "must not be empty")])) {
            try ExamNote.validated("   ", field: "reason")
        }
        #expect(
            throws: ValidationFailure([
                .init(field: "result", code: .tooLong, message: "must be at most 4000 characters")
            ])
        ) {
            try ExamNote.validated(String(repeating: "x", count: 4001), field: "result")
        }
        #expect(try ExamNote.validated(" 정상 ", field: "result").text == "정상")
    }
}
