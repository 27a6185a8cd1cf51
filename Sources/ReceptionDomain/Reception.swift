import Contracts
import Foundation
import SharedKernel

/// A registered outpatient visit (접수), owned by the desk.
///
/// RECEIVED → COMPLETED when the doctor completes the consultation, or → CANCELED when the desk
/// cancels it (접수취소) or the doctor rejects it (진료거부). The doctor's service has the last
/// word: a desk cancellation that crossed the doctor's completion becomes COMPLETED.
public struct Reception: Sendable, Equatable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        case received = "RECEIVED"
        case completed = "COMPLETED"
        case canceled = "CANCELED"
    }

    public let id: UUID
    public var patient: Patient
    public private(set) var status: Status
    public let receivedAt: Date
    public private(set) var completedAt: Date?
    public private(set) var canceledAt: Date?
    /// Why the visit was canceled: the desk's reason or the doctor's rejection.
    public private(set) var cancelReason: String?

    public init(
        id: UUID, patient: Patient, status: Status, receivedAt: Date, completedAt: Date?,
        canceledAt: Date?, cancelReason: String?
    ) {
        self.id = id
        self.patient = patient
        self.status = status
        self.receivedAt = receivedAt
        self.completedAt = completedAt
        self.canceledAt = canceledAt
        self.cancelReason = cancelReason
    }

    /// 접수: registers a visit and announces it to the doctor and the desk's board.
    /// `registryFacts`: what the events carry of the registry's patient (name, sex, birth date).
    public static func register(
        id: UUID, patient: Patient, registryFacts: PatientFacts? = nil,
        queue: (number: String, priority: String)? = nil, at now: Date
    ) -> (Reception, [VisitEvent]) {
        let reception = Reception(
            id: id, patient: patient, status: .received, receivedAt: now, completedAt: nil,
            canceledAt: nil, cancelReason: nil)
        let event = TreatmentReceived(
            patientName: patient.name, department: patient.department, symptom: patient.symptom,
            patient: registryFacts, queueNumber: queue?.number, priority: queue?.priority)
        return (reception, [.treatmentReceived(event)])
    }

    /// 접수 취소 by the desk: only while the visit is open.
    public mutating func cancel(reason: CancelReason, at now: Date) throws(InvalidTransition) -> [VisitEvent] {
        guard status == .received else {
            throw InvalidTransition(aggregate: "reception", currentState: status.rawValue, attempted: "cancel")
        }
        status = .canceled
        canceledAt = now
        cancelReason = reason.text
        return [.treatmentCanceled(TreatmentCanceled(reason: reason.text))]
    }

    /// The desk changes the visit's priority (`current` → `priority`): only while it is open;
    /// the same priority again changes nothing and announces nothing.
    public func changePriority(from current: QueuePriority, to priority: QueuePriority) throws(InvalidTransition)
        -> [VisitEvent]
    {
        guard status == .received else {
            throw InvalidTransition(
                aggregate: "reception", currentState: status.rawValue, attempted: "priority",
                reason: "the visit is \(status.rawValue.lowercased())")
        }
        guard priority != current else { return [] }
        return [.priorityChanged(PriorityChanged(priority: priority.rawValue))]
    }

    /// The doctor completed the consultation.
    ///
    /// The diagnosis service decides a visit's outcome (see "One outcome per visit" in the README):
    /// it applies the desk's cancellation and the doctor's commands one after another, so if it
    /// says completed, the doctor completed before the cancellation reached the consultation. A
    /// cancellation the desk recorded meanwhile is overruled and the visit is completed.
    public mutating func diagnosisCompleted(at now: Date) {
        guard status != .completed else { return }
        status = .completed
        completedAt = now
        canceledAt = nil
        cancelReason = nil
    }

    /// Compensation: the doctor rejected the consultation, so the visit is canceled with the
    /// doctor's reason, even if the desk's own cancellation crossed the rejection.
    public mutating func diagnosisRejected(reason: String, at now: Date) {
        guard status != .completed else { return }
        status = .canceled
        canceledAt = canceledAt.map { min($0, now) } ?? now
        cancelReason = reason
    }
}

/// The patient details the desk records. Only the name travels in events; the chart number,
/// birth date and phone stay in the reception service.
public struct Patient: Sendable, Equatable {
    public var name: String
    public var patientId: String?
    public var birthDate: String?
    public var phone: String?
    public var department: String?
    public var symptom: String?

    public init(
        name: String, patientId: String?, birthDate: String?, phone: String?, department: String?,
        symptom: String?
    ) {
        self.name = name
        self.patientId = patientId
        self.birthDate = birthDate
        self.phone = phone
        self.department = department
        self.symptom = symptom
    }

    /// Validates what the desk typed; every broken rule is reported at once.
    public static func validated(
        name: String?, patientId: String?, birthDate: String?, phone: String?, department: String?,
        symptom: String?, today: Date
    ) throws(ValidationFailure) -> Patient {
        var v = FieldValidation()
        let name = v.required(name, "patientName", maxLength: 100)
        let patientId = v.optional(patientId, "patientId", maxLength: 20)
        if let patientId { checkChartNumber(patientId, &v) }
        let birthDate = v.optional(birthDate, "birthDate", maxLength: 10)
        if let birthDate {
            if let date = CalendarDate.parse(birthDate) {
                if CalendarDate.utcDay(of: today).lexicographicallyPrecedes(date) {
                    v.fail("birthDate", .inFuture, "must not be in the future")
                }
            } else {
                v.fail("birthDate", .invalidFormat, "must be a date written as YYYY-MM-DD")
            }
        }
        let phone = v.optional(phone, "phone", maxLength: 20)
        if let phone, !phone.allSatisfy({ $0.isASCII && ($0.isNumber || "+- ".contains($0)) }) {
            v.fail("phone", .invalidCharacters, "may contain only digits, spaces, '+' and '-'")
        }
        let department = v.optional(department, "department", maxLength: 50)
        let symptom = v.optional(symptom, "symptom", maxLength: 1000, multiline: true)
        try v.check()
        return Patient(
            name: name, patientId: patientId, birthDate: birthDate, phone: phone, department: department,
            symptom: symptom)
    }
}

extension Patient {
    /// A chart number (환자번호) to look a patient's visits up by: required, the registration's rules.
    public static func validatedChartNumber(_ raw: String?) throws(ValidationFailure) -> String {
        var v = FieldValidation()
        let patientId = v.required(raw, "patientId", maxLength: 20)
        checkChartNumber(patientId, &v)
        try v.check()
        return patientId
    }

    fileprivate static func checkChartNumber(_ patientId: String, _ v: inout FieldValidation) {
        if !patientId.isEmpty, !patientId.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
            v.fail("patientId", .invalidCharacters, "may contain only letters, digits and '-'")
        }
    }
}

/// Why the desk canceled a visit: required, so the doctor and the board can show it.
public struct CancelReason: Sendable, Equatable {
    public let text: String

    public static func validated(_ raw: String?) throws(ValidationFailure) -> CancelReason {
        var v = FieldValidation()
        let text = v.required(raw, "reason", maxLength: 500, multiline: true)
        try v.check()
        return CancelReason(text: text)
    }
}

/// A calendar date `YYYY-MM-DD` as [year, month, day], compared lexicographically.
enum CalendarDate {
    static func parse(_ s: String) -> [Int]? {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        // Digits only: Int("+1") would parse, and "2000-+1-01" is not a date.
        guard s.count == 10, parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            s.allSatisfy({ $0 == "-" || ("0"..."9").contains($0) }),
            let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]),
            y >= 1900, (1...12).contains(m), (1...daysIn(month: m, year: y)).contains(d)
        else { return nil }
        return [y, m, d]
    }

    static func utcDay(of date: Date) -> [Int] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return [c.year!, c.month!, c.day!]
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
