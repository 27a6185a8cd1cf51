import Contracts
import DiagnosisDomain
import Foundation
import SharedKernel
import Testing

private let order1 = id(11)
private let order2 = id(12)
private let order3 = id(13)

private func waiting() -> Diagnosis {
    Diagnosis.open(
        receptionId: receptionId,
        from: TreatmentReceived(patientName: "김민수", department: "내과", symptom: "기침"), at: t0)
}

private func prescription(_ codes: String...) -> Prescription {
    try! Prescription.validated(codes.map { (code: $0, name: "검사 \($0)") })
}

private func note(_ text: String?, required: Bool = false) -> ClosingNote {
    try! ClosingNote.validated(text, field: required ? "reason" : "note", required: required)
}

/// A diagnosis brought to `status` through its own commands.
/// EXAM_ORDERED has order1 and order2 pending; EXAM_DONE has order1 completed and order2 canceled.
private func diagnosis(in status: Diagnosis.Status) -> Diagnosis {
    var d = waiting()
    switch status {
    case .waiting:
        break
    case .examOrdered:
        _ = try! d.prescribe(prescription("CBC", "XR"), orderIds: [order1, order2], at: at(60))
    case .examDone:
        d = diagnosis(in: .examOrdered)
        d.examinationCompleted(orderId: order1, result: "정상", at: at(120))
        d.examinationCanceled(orderId: order2, reason: "장비 고장", at: at(180))
    case .completed:
        _ = try! d.complete(note: note("이상 없음"), at: at(600))
    case .rejected:
        d = diagnosis(in: .examOrdered)
        _ = try! d.reject(reason: note("타 병원 전원", required: true), at: at(600))
    case .canceled:
        _ = d.receptionCanceled(reason: "환자 귀가", at: at(600))
    }
    precondition(d.status == status)
    return d
}

private func prescriptionFailures(_ raw: [(code: String?, name: String?)]?) -> [ValidationFailure.Field] {
    do {
        _ = try Prescription.validated(raw)
        return []
    } catch {
        return error.fields
    }
}

@Suite("Diagnosis: the consultation's state machine")
struct DiagnosisStateMachineTests {
    @Test("A registered visit opens a WAITING diagnosis with the patient's name")
    func opens() {
        let d = waiting()

        #expect(d.status == .waiting)
        #expect(d.receptionId == receptionId)
        #expect(d.patientName == "김민수")
        #expect(d.department == "내과")
        #expect(d.orders.isEmpty)
        #expect(d.createdAt == t0)
    }

    @Test("Prescribing from WAITING orders every exam and emits one Prescribed event with all of them")
    func prescribeFromWaiting() throws {
        var d = waiting()

        let events = try d.prescribe(prescription("CBC", "XR"), orderIds: [order1, order2], at: at(60))

        #expect(d.status == .examOrdered)
        #expect(
            events == [
                .prescribed(
                    Prescribed(
                        diagnosisId: Diagnosis.id(of: receptionId), patientName: "김민수",
                        orders: [
                            ExamOrder(orderId: order1, code: "CBC", name: "검사 CBC"),
                            ExamOrder(orderId: order2, code: "XR", name: "검사 XR"),
                        ],
                        // For the exam rooms' queue: the visit's department and priority.
                        department: "내과", priority: "NORMAL"))
            ])
        #expect(d.orders.map(\.orderId) == [order1, order2])
        #expect(d.orders.allSatisfy { $0.status == .requested && $0.orderedAt == at(60) && $0.resolvedAt == nil })
        #expect(d.pendingOrders.count == 2)
    }

    @Test("One resolved order of two keeps the diagnosis EXAM_ORDERED")
    func partlyResolved() {
        var d = diagnosis(in: .examOrdered)

        d.examinationCompleted(orderId: order1, result: "정상", at: at(120))

        #expect(d.status == .examOrdered)
        #expect(d.pendingOrders.map(\.orderId) == [order2])
        #expect(d.orders[0].status == .completed)
        #expect(d.orders[0].result == "정상")
        #expect(d.orders[0].resolvedAt == at(120))
    }

    @Test("Once every order is performed or canceled the diagnosis is EXAM_DONE")
    func everyOrderResolved() {
        var d = diagnosis(in: .examOrdered)

        d.examinationCompleted(orderId: order1, result: "정상", at: at(120))
        d.examinationCanceled(orderId: order2, reason: "장비 고장", at: at(180))

        #expect(d.status == .examDone)
        #expect(d.pendingOrders.isEmpty)
        #expect(d.orders[1].status == .canceled)
        #expect(d.orders[1].cancelReason == "장비 고장")
        #expect(d.orders[1].result == nil)
        #expect(d.orders[1].resolvedAt == at(180))
    }

    @Test("Every order canceled also makes EXAM_DONE")
    func allCanceled() {
        var d = diagnosis(in: .examOrdered)

        d.examinationCanceled(orderId: order2, reason: "환자 거부", at: at(120))
        d.examinationCanceled(orderId: order1, reason: "환자 거부", at: at(130))

        #expect(d.status == .examDone)
    }

    @Test("Prescribing again from EXAM_DONE goes back to EXAM_ORDERED and keeps the earlier orders")
    func prescribeAgain() throws {
        var d = diagnosis(in: .examDone)

        let events = try d.prescribe(prescription("CT"), orderIds: [order3], at: at(300))

        #expect(d.status == .examOrdered)
        #expect(d.orders.map(\.orderId) == [order1, order2, order3])
        #expect(d.pendingOrders.map(\.orderId) == [order3])
        #expect(
            events == [
                .prescribed(
                    Prescribed(
                        diagnosisId: Diagnosis.id(of: receptionId), patientName: "김민수",
                        orders: [
                            ExamOrder(orderId: order3, code: "CT", name: "검사 CT")
                        ], department: "내과", priority: "NORMAL"))
            ])
    }

    @Test("Prescribing more while exams are pending stays EXAM_ORDERED and needs every order resolved")
    func prescribeWhilePending() throws {
        var d = diagnosis(in: .examOrdered)

        _ = try d.prescribe(prescription("CT"), orderIds: [order3], at: at(90))
        d.examinationCompleted(orderId: order1, result: "a", at: at(120))
        d.examinationCompleted(orderId: order2, result: "b", at: at(130))

        #expect(d.status == .examOrdered)
        d.examinationCompleted(orderId: order3, result: "c", at: at(140))
        #expect(d.status == .examDone)
    }

    @Test("Completing is allowed from WAITING and from EXAM_DONE", arguments: [Diagnosis.Status.waiting, .examDone])
    func completeAllowed(from status: Diagnosis.Status) throws {
        var d = diagnosis(in: status)

        let events = try d.complete(note: note("  이상 없음 "), at: at(900))

        #expect(events == [.diagnosisCompleted(DiagnosisCompleted(diagnosisId: Diagnosis.id(of: receptionId), note: "이상 없음"))])
        #expect(d.status == .completed)
        #expect(d.closedAt == at(900))
        #expect(d.closingNote == "이상 없음")
    }

    @Test("Completing with an exam pending is refused as EXAM_ORDERED, saying exams are pending")
    func completeWithPendingExam() throws {
        var d = diagnosis(in: .examOrdered)
        d.examinationCompleted(orderId: order1, result: "정상", at: at(120))
        let before = d

        let error = try #require(throws: InvalidTransition.self) {
            try d.complete(note: note(nil), at: at(900))
        }

        #expect(error.aggregate == "diagnosis")
        #expect(error.currentState == "EXAM_ORDERED")
        #expect(error.attempted == "complete")
        let reason = try #require(error.reason)
        #expect(reason.contains("pending"))
        #expect(reason.contains("1"))
        #expect(d == before)
    }

    @Test(
        "Completing a closed consultation is refused with its state",
        arguments: [Diagnosis.Status.completed, .rejected, .canceled])
    func completeClosed(status: Diagnosis.Status) {
        var d = diagnosis(in: status)

        #expect(throws: InvalidTransition(aggregate: "diagnosis", currentState: status.rawValue, attempted: "complete"))
        {
            try d.complete(note: note(nil), at: at(900))
        }
    }

    @Test(
        "Rejecting is allowed any time before closing, pending exams included",
        arguments: [Diagnosis.Status.waiting, .examOrdered, .examDone])
    func rejectAllowed(from status: Diagnosis.Status) throws {
        var d = diagnosis(in: status)

        let events = try d.reject(reason: note("타 병원 전원", required: true), at: at(900))

        #expect(events == [.diagnosisRejected(DiagnosisRejected(diagnosisId: Diagnosis.id(of: receptionId), reason: "타 병원 전원"))])
        #expect(d.status == .rejected)
        #expect(d.closedAt == at(900))
        #expect(d.closingNote == "타 병원 전원")
    }

    @Test(
        "Rejecting after the consultation closed is refused with its state",
        arguments: [Diagnosis.Status.completed, .rejected, .canceled])
    func rejectClosed(status: Diagnosis.Status) {
        var d = diagnosis(in: status)
        let before = d

        #expect(throws: InvalidTransition(aggregate: "diagnosis", currentState: status.rawValue, attempted: "reject")) {
            try d.reject(reason: note("again", required: true), at: at(900))
        }
        #expect(d == before)
    }

    @Test(
        "Prescribing on a closed consultation is refused with its state",
        arguments: [Diagnosis.Status.completed, .rejected, .canceled])
    func prescribeClosed(status: Diagnosis.Status) {
        var d = diagnosis(in: status)

        #expect(
            throws: InvalidTransition(aggregate: "diagnosis", currentState: status.rawValue, attempted: "prescribe")
        ) {
            try d.prescribe(prescription("CT"), orderIds: [order3], at: at(900))
        }
        #expect(d.status == status)
    }

    @Test(
        "A canceled reception cancels an open diagnosis with DiagnosisCanceled",
        arguments: [Diagnosis.Status.waiting, .examOrdered, .examDone])
    func receptionCanceledOpen(from status: Diagnosis.Status) {
        var d = diagnosis(in: status)

        let events = d.receptionCanceled(reason: "환자 귀가", at: at(900))

        #expect(events == [.diagnosisCanceled(DiagnosisCanceled(diagnosisId: Diagnosis.id(of: receptionId), reason: "환자 귀가"))])
        #expect(d.status == .canceled)
        #expect(d.closedAt == at(900))
        #expect(d.closingNote == "환자 귀가")
    }

    @Test(
        "A canceled reception changes nothing on a closed diagnosis and emits nothing",
        arguments: [Diagnosis.Status.completed, .rejected, .canceled])
    func receptionCanceledClosed(status: Diagnosis.Status) {
        var d = diagnosis(in: status)
        let before = d

        let events = d.receptionCanceled(reason: "late cancel", at: at(900))

        #expect(events.isEmpty)
        #expect(d == before)
    }

    @Test("A result for an unknown order changes nothing")
    func unknownOrder() {
        var d = diagnosis(in: .examOrdered)
        let before = d

        d.examinationCompleted(orderId: id(404), result: "?", at: at(120))
        d.examinationCanceled(orderId: id(405), reason: "?", at: at(130))

        #expect(d == before)
    }

    @Test("An order is resolved once: a later cancel or a duplicate result changes nothing")
    func resolvedOnce() {
        var d = diagnosis(in: .examOrdered)
        d.examinationCompleted(orderId: order1, result: "정상", at: at(120))
        let afterFirst = d

        d.examinationCompleted(orderId: order1, result: "정상", at: at(125))
        d.examinationCanceled(orderId: order1, reason: "late", at: at(130))

        #expect(d == afterFirst)
        #expect(d.orders[0].resolvedAt == at(120))
        #expect(d.orders[0].cancelReason == nil)
    }

    @Test("Compensating exam cancellations after a rejection are recorded but keep the diagnosis REJECTED")
    func cancellationsAfterRejection() throws {
        var d = diagnosis(in: .rejected)

        d.examinationCanceled(orderId: order1, reason: "진료 거부", at: at(700))
        d.examinationCanceled(orderId: order2, reason: "진료 거부", at: at(701))

        #expect(d.status == .rejected)
        #expect(d.pendingOrders.isEmpty)
        #expect(d.closedAt == at(600))
    }
}

@Suite("Diagnosis: its id")
struct DiagnosisIdTests {
    @Test("A visit's diagnosis id is the same every time it is opened, and differs from every other visit's")
    func derivedFromTheVisit() {
        let visits = (0..<10_000).map { _ in UUID() }
        let ids = visits.map(Diagnosis.id(of:))

        #expect(visits.map(Diagnosis.id(of:)) == ids)
        #expect(Set(ids).count == visits.count)
        #expect(Set(ids).isDisjoint(with: visits))
        #expect(ids.allSatisfy { $0.uuidString.dropFirst(14).first == "8" })
        #expect(Diagnosis.open(receptionId: receptionId, from: TreatmentReceived(patientName: "a", department: nil, symptom: nil), at: t0).id == Diagnosis.id(of: receptionId))
    }
}

@Suite("Diagnosis: validating prescriptions and notes")
struct PrescriptionValidationTests {
    @Test("A prescription needs at least one examination", arguments: [[(code: String?, name: String?)]?.none, []])
    func empty(raw: [(code: String?, name: String?)]?) {
        #expect(
            prescriptionFailures(raw) == [
                .init(field: "examinations", code: .required, message: "must list at least one examination")
            ])
    }

    @Test("A prescription lists at most 20 examinations")
    func tooMany() {
        let twenty = (1...20).map { (code: String?("C\($0)"), name: String?("검사 \($0)")) }
        let twentyOne = (1...21).map { (code: String?("C\($0)"), name: String?("검사 \($0)")) }

        #expect(prescriptionFailures(twenty).isEmpty)
        #expect(
            prescriptionFailures(twentyOne) == [
                .init(field: "examinations", code: .tooMany, message: "must list at most 20 examinations")
            ])
    }

    @Test("Blank or missing codes and names are reported with their index")
    func blankFields() {
        let reported = prescriptionFailures([
            (code: "CBC", name: "혈액"), (code: "  ", name: "X-ray"), (code: "CT", name: nil),
        ])

        #expect(
            reported == [
                .init(field: "examinations[1].code", code: .required, message: "must not be empty"),
                .init(field: "examinations[2].name", code: .required, message: "is required"),
            ])
    }

    @Test("The same code twice in one prescription is refused at the second occurrence")
    func duplicateCodes() {
        let reported = prescriptionFailures([
            (code: "CBC", name: "혈액"), (code: "XR", name: "X"), (code: " CBC ", name: "또"),
        ])

        #expect(fieldNames(ValidationFailure(reported)) == ["examinations[2].code"])
        #expect(reported.first?.message.contains("CBC") == true)
    }

    @Test("Codes and names are trimmed and length-limited")
    func trimmedAndLimited() throws {
        let valid = try Prescription.validated([(code: " CBC ", name: " 일반혈액검사 ")])
        #expect(valid.examinations.map(\.code) == ["CBC"])
        #expect(valid.examinations.map(\.name) == ["일반혈액검사"])

        let reported = prescriptionFailures([
            (code: String(repeating: "C", count: 33), name: String(repeating: "n", count: 101))
        ])
        #expect(fieldNames(ValidationFailure(reported)) == ["examinations[0].code", "examinations[0].name"])
    }

    @Test("A rejection reason is required; a completion note may be left out")
    func closingNote() throws {
        #expect(throws: ValidationFailure([.init(field: "reason", code: .required, message: "is required")])) {
            try ClosingNote.validated(nil, field: "reason", required: true)
        }
        #expect(throws: ValidationFailure([.init(field: "reason", code: .required, message: "must not be empty")])) {
            try ClosingNote.validated(" \n ", field: "reason", required: true)
        }
        #expect(try ClosingNote.validated(nil, field: "note", required: false).text == "")
        #expect(try ClosingNote.validated("   ", field: "note", required: false).text == "")
        #expect(try ClosingNote.validated(" 경과 관찰 ", field: "note", required: false).text == "경과 관찰")
        #expect(
            throws: ValidationFailure([.init(field: "note", code: .tooLong, message: "must be at most 2000 characters")]
            )
        ) {
            try ClosingNote.validated(String(repeating: "x", count: 2001), field: "note", required: false)
        }
    }
}
