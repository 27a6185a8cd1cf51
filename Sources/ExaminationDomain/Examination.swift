import Contracts
import Foundation
import SharedKernel

/// One ordered exam (검사) in the examiner's worklist.
///
/// REQUESTED → COMPLETED with a result (검사 시행), or → CANCELED by the examiner (검사 취소) or by
/// compensation when the consultation is rejected or canceled.
public struct Examination: Sendable, Equatable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        case requested = "REQUESTED"
        case completed = "COMPLETED"
        case canceled = "CANCELED"
    }

    public let id: UUID
    public let orderId: UUID
    public let diagnosisId: UUID
    public let receptionId: UUID
    public let patientName: String
    public let code: String
    public let name: String
    public private(set) var status: Status
    public private(set) var result: String?
    public private(set) var cancelReason: String?
    public let requestedAt: Date
    public private(set) var resolvedAt: Date?
    /// The visit's department and 대기 번호 (from the prescription), and the desk's priority: the
    /// exam rooms' queues order by it, then by arrival.
    public let department: String?
    public let queueNumber: String?
    public internal(set) var priority: QueuePriority
    /// Where the patient stands in the exam rooms' queue (호출).
    public internal(set) var calling: Calling

    public init(
        id: UUID, orderId: UUID, diagnosisId: UUID, receptionId: UUID, patientName: String, code: String,
        name: String, status: Status, result: String?, cancelReason: String?, requestedAt: Date,
        resolvedAt: Date?, department: String? = nil, queueNumber: String? = nil, priority: QueuePriority = .normal,
        calling: Calling = Calling()
    ) {
        self.id = id
        self.orderId = orderId
        self.diagnosisId = diagnosisId
        self.receptionId = receptionId
        self.patientName = patientName
        self.code = code
        self.name = name
        self.status = status
        self.result = result
        self.cancelReason = cancelReason
        self.requestedAt = requestedAt
        self.resolvedAt = resolvedAt
        self.department = department
        self.queueNumber = queueNumber
        self.priority = priority
        self.calling = calling
    }

    /// 검사 정보 생성: one exam per order of a prescription.
    public static func requested(
        id: UUID, order: ExamOrder, of prescription: Prescribed, receptionId: UUID, at now: Date
    ) -> Examination {
        Examination(
            id: id, orderId: order.orderId, diagnosisId: prescription.diagnosisId, receptionId: receptionId,
            patientName: prescription.patientName, code: order.code, name: order.name, status: .requested,
            result: nil, cancelReason: nil, requestedAt: now, resolvedAt: nil, department: prescription.department,
            queueNumber: prescription.queueNumber,
            priority: prescription.priority.flatMap(QueuePriority.init(rawValue:)) ?? .normal)
    }

    /// 검사 시행: records the result.
    public mutating func perform(
        result: ExamNote, attachments: [AttachmentReference] = [], at now: Date
    ) throws(InvalidTransition) -> [VisitEvent] {
        guard status == .requested else {
            throw InvalidTransition(aggregate: "examination", currentState: status.rawValue, attempted: "perform")
        }
        status = .completed
        self.result = result.text
        resolvedAt = now
        return [
            .examinationCompleted(
                ExaminationCompleted(
                    examinationId: id, diagnosisId: diagnosisId, orderId: orderId, result: result.text,
                    attachments: attachments)
            )
        ]
    }

    /// 검사 취소 by the examiner.
    public mutating func cancel(reason: ExamNote, at now: Date) throws(InvalidTransition) -> [VisitEvent] {
        guard status == .requested else {
            throw InvalidTransition(aggregate: "examination", currentState: status.rawValue, attempted: "cancel")
        }
        return cancelPending(reason: reason.text, at: now)
    }

    /// Compensation: the consultation was rejected or canceled, so a pending exam is canceled.
    /// An exam already performed or canceled is left as it is.
    public mutating func consultationClosed(reason: String, at now: Date) -> [VisitEvent] {
        guard status == .requested else { return [] }
        return cancelPending(reason: reason, at: now)
    }

    private mutating func cancelPending(reason: String, at now: Date) -> [VisitEvent] {
        status = .canceled
        cancelReason = reason
        resolvedAt = now
        return [
            .examinationCanceled(
                ExaminationCanceled(examinationId: id, diagnosisId: diagnosisId, orderId: orderId, reason: reason))
        ]
    }
}

/// What the examiner writes: an exam's result, or why it was canceled. Required text.
public struct ExamNote: Sendable, Equatable {
    public let text: String

    public static func validated(_ raw: String?, field: String) throws(ValidationFailure) -> ExamNote {
        var v = FieldValidation()
        let text = v.required(raw, field, maxLength: 4000, multiline: true)
        try v.check()
        return ExamNote(text: text)
    }
}
