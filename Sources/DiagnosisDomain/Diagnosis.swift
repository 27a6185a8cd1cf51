import Contracts
import Foundation
import SharedKernel

/// A consultation (진료) in the doctor's worklist, opened when a visit is registered.
///
/// WAITING → EXAM_ORDERED → EXAM_DONE → COMPLETED. EXAM_DONE is reached when every order was
/// performed or canceled; a new prescription from EXAM_DONE goes back to EXAM_ORDERED. The doctor
/// completes only with no exam pending, and may reject at any time before completing. A canceled
/// reception cancels the diagnosis.
public struct Diagnosis: Sendable, Equatable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        case waiting = "WAITING"
        case examOrdered = "EXAM_ORDERED"
        case examDone = "EXAM_DONE"
        case completed = "COMPLETED"
        case rejected = "REJECTED"
        case canceled = "CANCELED"

        public var isClosed: Bool { self == .completed || self == .rejected || self == .canceled }
    }

    public let id: UUID
    public let receptionId: UUID
    public let patientName: String
    public let department: String?
    public let symptom: String?
    public private(set) var status: Status
    public private(set) var orders: [Order]
    public let createdAt: Date
    public private(set) var closedAt: Date?
    /// The doctor's note on completion, or the reason of a rejection or cancellation.
    public private(set) var closingNote: String?
    /// 대기 번호 (`A-012`) and the desk's priority, from the registration (the priority as the
    /// desk last changed it).
    public let queueNumber: String?
    public internal(set) var priority: QueuePriority
    /// Where the visit stands in its department's queue.
    public internal(set) var calling: Calling

    public init(
        id: UUID, receptionId: UUID, patientName: String, department: String?, symptom: String?,
        status: Status, orders: [Order], createdAt: Date, closedAt: Date?, closingNote: String?,
        queueNumber: String? = nil, priority: QueuePriority = .normal, calling: Calling = Calling()
    ) {
        self.queueNumber = queueNumber
        self.priority = priority
        self.calling = calling
        self.id = id
        self.receptionId = receptionId
        self.patientName = patientName
        self.department = department
        self.symptom = symptom
        self.status = status
        self.orders = orders
        self.createdAt = createdAt
        self.closedAt = closedAt
        self.closingNote = closingNote
    }

    /// An exam the doctor ordered (검사 처방) and what became of it.
    public struct Order: Sendable, Equatable, Codable {
        public enum Status: String, Sendable, Codable {
            case requested = "REQUESTED"
            case completed = "COMPLETED"
            case canceled = "CANCELED"
        }

        public var orderId: UUID
        public var code: String
        public var name: String
        public var status: Status
        public var result: String?
        public var cancelReason: String?
        public var orderedAt: Date
        public var resolvedAt: Date?
        /// The examination that performed it, and the result files it attached (references).
        public var examinationId: UUID?
        public var attachments: [AttachmentReference]?

        public init(
            orderId: UUID, code: String, name: String, status: Status, result: String?, cancelReason: String?,
            orderedAt: Date, resolvedAt: Date?
        ) {
            self.orderId = orderId
            self.code = code
            self.name = name
            self.status = status
            self.result = result
            self.cancelReason = cancelReason
            self.orderedAt = orderedAt
            self.resolvedAt = resolvedAt
        }
    }

    /// The consultation's id, derived from the visit's: a diagnosis database restored from a
    /// backup opens the visits it missed again under the ids the other services already know.
    /// The reception id's random bits, scrambled by a fixed mask, as a version 8 UUID.
    public static func id(of receptionId: UUID) -> UUID {
        let mask: [UInt8] = [
            0x3c, 0x9a, 0x51, 0xe7, 0x08, 0xd2, 0x00, 0x6b, 0x00, 0x47, 0xa9, 0x15, 0xc3, 0x7e, 0x2f, 0x90,
        ]
        var bytes = withUnsafeBytes(of: receptionId.uuid) { Array($0) }
        for i in bytes.indices { bytes[i] ^= mask[i] }
        bytes[6] = 0x80 | (bytes[6] & 0x0f)
        bytes[8] = 0x80 | (bytes[8] & 0x3f)
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
                bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }

    public var pendingOrders: [Order] { orders.filter { $0.status == .requested } }

    /// A visit was registered: it appears in the doctor's worklist, waiting.
    public static func open(receptionId: UUID, from event: TreatmentReceived, at now: Date) -> Diagnosis {
        Diagnosis(
            id: id(of: receptionId), receptionId: receptionId, patientName: event.patientName,
            department: event.department,
            symptom: event.symptom, status: .waiting, orders: [], createdAt: now, closedAt: nil, closingNote: nil,
            queueNumber: event.queueNumber, priority: event.priority.flatMap(QueuePriority.init(rawValue:)) ?? .normal)
    }

    /// 검사 처방: orders one or more exams, each with its own order id.
    public mutating func prescribe(
        _ prescription: Prescription, orderIds: [UUID], at now: Date
    )
        throws(InvalidTransition) -> [VisitEvent]
    {
        precondition(orderIds.count == prescription.examinations.count, "one order id per examination")
        guard !status.isClosed else {
            throw InvalidTransition(aggregate: "diagnosis", currentState: status.rawValue, attempted: "prescribe")
        }
        let newOrders = zip(prescription.examinations, orderIds).map { exam, orderId in
            Order(
                orderId: orderId, code: exam.code, name: exam.name, status: .requested, result: nil,
                cancelReason: nil, orderedAt: now, resolvedAt: nil)
        }
        orders += newOrders
        status = .examOrdered
        // To the exam rooms: when every exam is done, the patient waits to be called again.
        let wasPlaced = calling.place != .waiting
        calling.reset()
        let event = Prescribed(
            diagnosisId: id, patientName: patientName,
            orders: newOrders.map { ExamOrder(orderId: $0.orderId, code: $0.code, name: $0.name) },
            department: department, queueNumber: queueNumber, priority: priority.rawValue)
        return [.prescribed(event)] + (wasPlaced ? [queueEvent("RESET")] : [])
    }

    /// 진료 완료: only when no exam is pending.
    public mutating func complete(note: ClosingNote, at now: Date) throws(InvalidTransition) -> [VisitEvent] {
        guard status == .waiting || status == .examDone else {
            let reason =
                status == .examOrdered
                ? "\(pendingOrders.count) examination(s) are still pending" : nil
            throw InvalidTransition(
                aggregate: "diagnosis", currentState: status.rawValue, attempted: "complete", reason: reason)
        }
        close(.completed, note: note.text, at: now)
        return [.diagnosisCompleted(DiagnosisCompleted(diagnosisId: id, note: note.text))]
    }

    /// 진료 거부: allowed any time before the consultation is closed; pending exams are then
    /// canceled by the examination service and the reception is canceled (compensation).
    public mutating func reject(reason: ClosingNote, at now: Date) throws(InvalidTransition) -> [VisitEvent] {
        guard !status.isClosed else {
            throw InvalidTransition(aggregate: "diagnosis", currentState: status.rawValue, attempted: "reject")
        }
        close(.rejected, note: reason.text, at: now)
        return [.diagnosisRejected(DiagnosisRejected(diagnosisId: id, reason: reason.text))]
    }

    /// The desk canceled the visit: an open diagnosis is canceled, and its pending exams with it.
    public mutating func receptionCanceled(reason: String, at now: Date) -> [VisitEvent] {
        guard !status.isClosed else { return [] }
        close(.canceled, note: reason, at: now)
        return [.diagnosisCanceled(DiagnosisCanceled(diagnosisId: id, reason: reason))]
    }

    /// An exam was performed: its result is recorded, and the consultation may be ready for review.
    public mutating func examinationCompleted(
        orderId: UUID, result: String, examinationId: UUID? = nil, attachments: [AttachmentReference]? = nil,
        at now: Date
    ) {
        resolve(orderId: orderId, at: now) { order in
            order.status = .completed
            order.result = result
            order.examinationId = examinationId
            order.attachments = attachments
        }
    }

    /// An exam was canceled by the examiner or by compensation.
    public mutating func examinationCanceled(orderId: UUID, reason: String, at now: Date) {
        resolve(orderId: orderId, at: now) { order in
            order.status = .canceled
            order.cancelReason = reason
        }
    }

    private mutating func resolve(orderId: UUID, at now: Date, _ change: (inout Order) -> Void) {
        guard let index = orders.firstIndex(where: { $0.orderId == orderId }),
            orders[index].status == .requested
        else { return }
        change(&orders[index])
        orders[index].resolvedAt = now
        if status == .examOrdered, pendingOrders.isEmpty {
            status = .examDone
        }
    }

    private mutating func close(_ final: Status, note: String, at now: Date) {
        status = final
        closedAt = now
        closingNote = note
    }
}

/// What the doctor orders: at least one exam, each with a catalogue code and a name.
public struct Prescription: Sendable, Equatable {
    public struct Exam: Sendable, Equatable {
        public var code: String
        public var name: String
    }

    public let examinations: [Exam]

    public static let maximumExaminations = 20

    public static func validated(
        _ raw: [(code: String?, name: String?)]?
    ) throws(ValidationFailure)
        -> Prescription
    {
        var v = FieldValidation()
        guard let raw, !raw.isEmpty else {
            v.fail("examinations", .required, "must list at least one examination")
            try v.check()
            return Prescription(examinations: [])
        }
        if raw.count > maximumExaminations {
            v.fail("examinations", .tooMany, "must list at most \(maximumExaminations) examinations")
        }
        var exams: [Exam] = []
        for (index, item) in raw.enumerated() {
            let code = v.required(item.code, "examinations[\(index)].code", maxLength: 32)
            let name = v.required(item.name, "examinations[\(index)].name", maxLength: 100)
            if !code.isEmpty, exams.contains(where: { $0.code == code }) {
                v.fail("examinations[\(index)].code", .duplicate, "orders \(code) twice in one prescription")
            }
            exams.append(Exam(code: code, name: name))
        }
        try v.check()
        return Prescription(examinations: exams)
    }
}

/// The doctor's completion note or rejection reason.
public struct ClosingNote: Sendable, Equatable {
    public let text: String

    /// A completion note may be empty; a rejection must say why.
    public static func validated(
        _ raw: String?, field: String, required: Bool
    ) throws(ValidationFailure)
        -> ClosingNote
    {
        var v = FieldValidation()
        let text =
            required
            ? v.required(raw, field, maxLength: 2000, multiline: true)
            : (v.optional(raw, field, maxLength: 2000, multiline: true) ?? "")
        try v.check()
        return ClosingNote(text: text)
    }
}
