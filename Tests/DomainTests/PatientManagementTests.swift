import Contracts
import Foundation
import PatientManagementDomain
import Testing

private let order1 = id(11)
private let order2 = id(12)
private let order3 = id(13)

// MARK: - Events of one visit, stamped `seconds` after t0

private func received(_ s: TimeInterval) -> EventEnvelope {
    envelope(
        .treatmentReceived(TreatmentReceived(patientName: "김민수", department: "내과", symptom: "기침")), at: s,
        producer: "reception")
}

private func prescribed(_ s: TimeInterval, _ orders: UUID...) -> EventEnvelope {
    envelope(
        .prescribed(
            Prescribed(
                diagnosisId: diagnosisId, patientName: "김민수",
                orders: orders.map { ExamOrder(orderId: $0, code: "C\($0.uuidString.suffix(2))", name: "검사") })),
        at: s, producer: "diagnosis")
}

private func examCompleted(_ s: TimeInterval, _ order: UUID) -> EventEnvelope {
    envelope(
        .examinationCompleted(
            ExaminationCompleted(examinationId: UUID(), diagnosisId: diagnosisId, orderId: order, result: "정상")),
        at: s, producer: "examination")
}

private func examCanceled(_ s: TimeInterval, _ order: UUID, _ reason: String = "장비 고장") -> EventEnvelope {
    envelope(
        .examinationCanceled(
            ExaminationCanceled(examinationId: UUID(), diagnosisId: diagnosisId, orderId: order, reason: reason)),
        at: s, producer: "examination")
}

private func deskCanceled(_ s: TimeInterval, _ reason: String = "환자 귀가") -> EventEnvelope {
    envelope(.treatmentCanceled(TreatmentCanceled(reason: reason)), at: s, producer: "reception")
}

private func diagnosisCompleted(_ s: TimeInterval) -> EventEnvelope {
    envelope(
        .diagnosisCompleted(DiagnosisCompleted(diagnosisId: diagnosisId, note: "이상 없음")), at: s, producer: "diagnosis")
}

private func diagnosisRejected(_ s: TimeInterval, _ reason: String = "타 병원 전원") -> EventEnvelope {
    envelope(
        .diagnosisRejected(DiagnosisRejected(diagnosisId: diagnosisId, reason: reason)), at: s, producer: "diagnosis")
}

private func diagnosisCanceled(_ s: TimeInterval, _ reason: String = "환자 귀가") -> EventEnvelope {
    envelope(
        .diagnosisCanceled(DiagnosisCanceled(diagnosisId: diagnosisId, reason: reason)), at: s, producer: "diagnosis")
}

/// The read model built the way the service builds it: the row is created by whichever event arrives first.
private func project(_ history: [EventEnvelope]) -> PatientManagement {
    var visit = PatientManagement(receptionId: receptionId, firstEventAt: history[0].occurredAt)
    for event in history { visit.apply(event) }
    return visit
}

// MARK: - Histories

/// Received, two orders, one performed, one canceled, consultation completed.
private let completedHistory = [
    received(0), prescribed(60, order1, order2), examCompleted(120, order1), examCanceled(180, order2),
    diagnosisCompleted(240),
]

/// Rejected with one exam pending, which compensation then cancels.
private let rejectedHistory = [
    received(0), prescribed(60, order1, order2), examCompleted(120, order1), diagnosisRejected(200),
    examCanceled(210, order2, "진료 거부"),
]

/// The desk cancels while both exams are pending; the diagnosis and the exams follow.
private let deskCanceledHistory = [
    received(0), prescribed(60, order1, order2), deskCanceled(100), diagnosisCanceled(101),
    examCanceled(102, order1, "접수 취소"), examCanceled(103, order2, "접수 취소"),
]

/// A second prescription after the first exam was done.
private let secondPrescriptionHistory = [
    received(0), prescribed(60, order1), examCompleted(120, order1), prescribed(300, order3),
    examCompleted(400, order3), diagnosisCompleted(500),
]

private let histories: [(String, [EventEnvelope])] = [
    ("completed", completedHistory), ("rejected", rejectedHistory), ("desk canceled", deskCanceledHistory),
    ("second prescription", secondPrescriptionHistory),
    ("desk cancel crossed the completion", [received(0), prescribed(60, order1), examCompleted(120, order1), deskCanceled(199), diagnosisCompleted(200)]),
    ("desk cancel crossed the rejection", [received(0), prescribed(60, order1), deskCanceled(100), diagnosisRejected(101), examCanceled(102, order1, "진료 거부")]),
]

@Suite("Patient management: the desk's read model")
struct PatientManagementProjectionTests {
    @Test("A completed visit shows every step's time")
    func completedVisit() throws {
        let visit = project(completedHistory)

        #expect(visit.status == .completed)
        #expect(visit.patientName == "김민수")
        #expect(visit.department == "내과")
        #expect(visit.diagnosisId == diagnosisId)
        #expect(visit.receivedAt == at(0))
        #expect(visit.examOrderedAt == at(60))
        #expect(visit.examDoneAt == at(180))
        #expect(visit.completedAt == at(240))
        #expect(visit.rejectedAt == nil && visit.canceledAt == nil)
        #expect(visit.statusSince == at(240))
        #expect(visit.closingReason == nil)
        #expect(visit.lastEventAt == at(240))
        #expect(visit.orders.map(\.orderId) == [order1, order2])
        #expect(visit.orders.map(\.status) == [.completed, .canceled])
        #expect(visit.orders.map(\.resolvedAt) == [at(120), at(180)])
        #expect(visit.orders.allSatisfy { $0.orderedAt == at(60) && $0.code != nil && $0.name == "검사" })
    }

    @Test("Each step moves the status, and statusSince follows it")
    func stepByStep() {
        let steps = (1...completedHistory.count).map { project(Array(completedHistory.prefix($0))) }

        #expect(steps.map(\.status) == [.received, .examOrdered, .examOrdered, .examDone, .completed])
        #expect(steps.map(\.statusSince) == [at(0), at(60), at(60), at(180), at(240)])
        #expect(steps.map(\.examDoneAt) == [nil, nil, nil, at(180), at(180)])
    }

    @Test("A rejected visit is REJECTED with the doctor's reason")
    func rejectedVisit() {
        let visit = project(rejectedHistory)

        #expect(visit.status == .rejected)
        #expect(visit.rejectedAt == at(200))
        #expect(visit.closingReason == "타 병원 전원")
        #expect(visit.statusSince == at(200))
        #expect(visit.orders.map(\.status) == [.completed, .canceled])
        #expect(visit.examDoneAt == at(210))
    }

    @Test("A visit the desk canceled is CANCELED at the desk's time with the desk's reason")
    func deskCanceledVisit() {
        let visit = project(deskCanceledHistory)

        #expect(visit.status == .canceled)
        #expect(visit.canceledAt == at(100))
        #expect(visit.closingReason == "환자 귀가")
        #expect(visit.statusSince == at(100))
        #expect(visit.orders.allSatisfy { $0.status == .canceled })
    }

    @Test("A new prescription after EXAM_DONE goes back to EXAM_ORDERED, then EXAM_DONE again")
    func secondPrescription() {
        let afterFirstExam = project(Array(secondPrescriptionHistory.prefix(3)))
        let afterSecondOrder = project(Array(secondPrescriptionHistory.prefix(4)))
        let afterSecondExam = project(Array(secondPrescriptionHistory.prefix(5)))

        #expect(afterFirstExam.status == .examDone)
        #expect(afterFirstExam.statusSince == at(120))
        #expect(afterSecondOrder.status == .examOrdered)
        #expect(afterSecondOrder.statusSince == at(300))
        #expect(afterSecondOrder.examOrderedAt == at(60))
        #expect(afterSecondOrder.examDoneAt == nil)
        #expect(afterSecondExam.status == .examDone)
        #expect(afterSecondExam.examDoneAt == at(400))
        #expect(afterSecondExam.orders.map(\.orderId) == [order1, order3])
    }

    @Test("examDoneAt is the latest resolution, whichever order it belongs to and whichever arrives first")
    func examDoneAtIsLatest() {
        // order1 (listed first) is resolved last
        let inOrder = project([
            received(0), prescribed(60, order1, order2), examCanceled(200, order2), examCompleted(300, order1),
        ])
        let lateFirst = project([
            received(0), prescribed(60, order1, order2), examCompleted(300, order1), examCanceled(200, order2),
        ])

        #expect(inOrder.examDoneAt == at(300))
        #expect(lateFirst.examDoneAt == at(300))
        #expect(lateFirst.statusSince == at(300))
    }

    @Test("A visit only registered is RECEIVED since its registration")
    func onlyReceived() {
        let visit = project([received(0)])

        #expect(visit.status == .received)
        #expect(visit.statusSince == at(0))
        #expect(visit.examDoneAt == nil)
        #expect(visit.closingReason == nil)
        #expect(visit.orders.isEmpty)
    }

    @Test(
        "Desk cancel and doctor's completion crossing: the diagnosis decides, whatever the times and delivery order",
        arguments: [(cancelAt: 100.0, completeAt: 150.0), (cancelAt: 150.0, completeAt: 100.0), (100.0, 100.0)])
    func cancelCompleteCrossing(cancelAt: TimeInterval, completeAt: TimeInterval) {
        let cancel = deskCanceled(cancelAt)
        let complete = diagnosisCompleted(completeAt)

        let cancelFirst = project([received(0), cancel, complete])
        let completeFirst = project([received(0), complete, cancel])

        #expect(cancelFirst.status == .completed)
        #expect(cancelFirst == completeFirst)
        #expect(cancelFirst.statusSince == at(completeAt))
        #expect(cancelFirst.closingReason == nil)
    }

    @Test("The desk's cancellation shows CANCELED until the doctor's service confirms it, and after")
    func deskCancelIsProvisionalThenConfirmed() {
        let provisional = project([received(0), deskCanceled(100)])
        let confirmed = project([received(0), deskCanceled(100), diagnosisCanceled(130)])

        #expect(provisional.status == .canceled)
        #expect(provisional.closingReason == "환자 귀가")
        #expect(confirmed.status == .canceled)
        #expect(confirmed.statusSince == at(100))
    }

    @Test("A later resolution of an already resolved order does not overwrite the first")
    func firstResolutionStands() {
        let visit = project([
            received(0), prescribed(60, order1), examCompleted(120, order1), examCanceled(300, order1),
        ])

        #expect(visit.orders.map(\.status) == [.completed])
        #expect(visit.orders.map(\.resolvedAt) == [at(120)])
        #expect(visit.examDoneAt == at(120))
    }

    @Test("A rejection before a late desk cancel stays REJECTED with the doctor's reason")
    func rejectionBeforeDeskCancel() {
        let visit = project([received(0), deskCanceled(150), diagnosisRejected(100)])

        #expect(visit.status == .rejected)
        #expect(visit.closingReason == "타 병원 전원")
    }
}

@Suite("Patient management: convergence whatever the delivery")
struct PatientManagementConvergenceTests {
    @Test("Every delivery order of a history yields the in-order value", arguments: histories)
    func everyPermutation(name: String, history: [EventEnvelope]) {
        let expected = project(history)

        for delivery in permutations(history) {
            #expect(project(delivery) == expected, "\(name): \(delivery.map(\.type))")
        }
    }

    @Test("The reversed history yields the in-order value", arguments: histories)
    func reversed(name: String, history: [EventEnvelope]) {
        #expect(project(history.reversed()) == project(history))
    }

    @Test("Applying every event twice, in any order, yields the in-order value", arguments: histories)
    func everyEventTwice(name: String, history: [EventEnvelope]) {
        let expected = project(history)

        for delivery in permutations(history) {
            #expect(project(delivery.flatMap { [$0, $0] }) == expected, "\(name) doubled in place")
            #expect(project(delivery + delivery) == expected, "\(name) replayed")
        }
    }

    @Test("Random shuffles of a history with duplicates yield the in-order value", arguments: histories)
    func randomShufflesWithDuplicates(name: String, history: [EventEnvelope]) {
        let expected = project(history)
        var generator = SeededGenerator(seed: 0x5EED_0001)

        for _ in 0..<300 {
            let extra = history.shuffled(using: &generator).prefix(Int.random(in: 1...history.count, using: &generator))
            let delivery = (history + extra).shuffled(using: &generator)
            #expect(project(delivery) == expected, "\(name): \(delivery.map(\.type))")
        }
    }

    @Test("Every redelivery of an event of the completed visit changes nothing")
    func redeliveryIsIdempotent() {
        var visit = project(completedHistory)
        let settled = visit

        for event in completedHistory { visit.apply(event) }

        #expect(visit == settled)
    }
}
