import Foundation

/// The events of the outpatient visit, named as in the user's model (the seed).
public enum VisitEvent: Sendable, Equatable {
    /// 접수됨: the desk registered a visit.
    case treatmentReceived(TreatmentReceived)
    /// 접수취소: the desk canceled the visit.
    case treatmentCanceled(TreatmentCanceled)
    /// 검사처방: the doctor ordered one or more examinations.
    case prescribed(Prescribed)
    /// 검사완료: an examination was performed, with its result.
    case examinationCompleted(ExaminationCompleted)
    /// 검사취소: an examination was canceled by the examiner or by compensation.
    case examinationCanceled(ExaminationCanceled)
    /// 진료완료: the doctor completed the consultation.
    case diagnosisCompleted(DiagnosisCompleted)
    /// 진료거부: the doctor rejected the consultation.
    case diagnosisRejected(DiagnosisRejected)
    /// The diagnosis was canceled because its reception was canceled.
    case diagnosisCanceled(DiagnosisCanceled)
    /// 신환 등록: the registry has a new patient (keyed by the patient's id, not a visit's).
    case patientRegistered(PatientRegistered)
    /// 환자 정보 수정: what the screens show of a patient changed (keyed by the patient's id).
    case patientUpdated(PatientUpdated)
    /// 환자 병합: a duplicate record was merged into another (keyed by the merged patient's id).
    case patientMerged(PatientMerged)
    /// A visit was called, started, marked absent or taken back in its queue (호출).
    case queueUpdated(QueueUpdated)
    case priorityChanged(PriorityChanged)

    public var type: String {
        switch self {
        case .treatmentReceived: TreatmentReceived.type
        case .treatmentCanceled: TreatmentCanceled.type
        case .prescribed: Prescribed.type
        case .examinationCompleted: ExaminationCompleted.type
        case .examinationCanceled: ExaminationCanceled.type
        case .diagnosisCompleted: DiagnosisCompleted.type
        case .diagnosisRejected: DiagnosisRejected.type
        case .diagnosisCanceled: DiagnosisCanceled.type
        case .patientRegistered: PatientRegistered.type
        case .patientUpdated: PatientUpdated.type
        case .patientMerged: PatientMerged.type
        case .queueUpdated: QueueUpdated.type
        case .priorityChanged: PriorityChanged.type
        }
    }

    /// Whether it is one of the registry's events: its envelope's `receptionId` holds the
    /// patient's id (the message key), and no visit is named.
    public var isRegistryEvent: Bool {
        switch self {
        case .patientRegistered, .patientUpdated, .patientMerged: true
        default: false
        }
    }

    /// Every payload is at version 1; a breaking change adds a version and keeps decoding the old one.
    public var version: Int { 1 }

    public static let allTypes: [String] = [
        TreatmentReceived.type, TreatmentCanceled.type, Prescribed.type, ExaminationCompleted.type,
        ExaminationCanceled.type, DiagnosisCompleted.type, DiagnosisRejected.type, DiagnosisCanceled.type,
        PatientRegistered.type, PatientUpdated.type, PatientMerged.type, QueueUpdated.type, PriorityChanged.type,
    ]

    static func decode(type: String, version: Int, from decoder: any Decoder) throws -> VisitEvent {
        guard version == 1 else { throw UnknownEvent(type: type, version: version) }
        switch type {
        case TreatmentReceived.type: return .treatmentReceived(try .init(from: decoder))
        case TreatmentCanceled.type: return .treatmentCanceled(try .init(from: decoder))
        case Prescribed.type: return .prescribed(try .init(from: decoder))
        case ExaminationCompleted.type: return .examinationCompleted(try .init(from: decoder))
        case ExaminationCanceled.type: return .examinationCanceled(try .init(from: decoder))
        case DiagnosisCompleted.type: return .diagnosisCompleted(try .init(from: decoder))
        case DiagnosisRejected.type: return .diagnosisRejected(try .init(from: decoder))
        case DiagnosisCanceled.type: return .diagnosisCanceled(try .init(from: decoder))
        case PatientRegistered.type: return .patientRegistered(try .init(from: decoder))
        case PatientUpdated.type: return .patientUpdated(try .init(from: decoder))
        case PatientMerged.type: return .patientMerged(try .init(from: decoder))
        case QueueUpdated.type: return .queueUpdated(try .init(from: decoder))
        case PriorityChanged.type: return .priorityChanged(try .init(from: decoder))
        default: throw UnknownEvent(type: type, version: version)
        }
    }

    func encodePayload(to encoder: any Encoder) throws {
        switch self {
        case .treatmentReceived(let p): try p.encode(to: encoder)
        case .treatmentCanceled(let p): try p.encode(to: encoder)
        case .prescribed(let p): try p.encode(to: encoder)
        case .examinationCompleted(let p): try p.encode(to: encoder)
        case .examinationCanceled(let p): try p.encode(to: encoder)
        case .diagnosisCompleted(let p): try p.encode(to: encoder)
        case .diagnosisRejected(let p): try p.encode(to: encoder)
        case .diagnosisCanceled(let p): try p.encode(to: encoder)
        case .patientRegistered(let p): try p.encode(to: encoder)
        case .patientUpdated(let p): try p.encode(to: encoder)
        case .queueUpdated(let p): try p.encode(to: encoder)
        case .patientMerged(let p): try p.encode(to: encoder)
        case .priorityChanged(let p): try p.encode(to: encoder)
        }
    }
}

/// An event type or version this build does not know. Consumers skip such events (tolerant reader)
/// rather than treat them as poison: a newer producer may run beside an older consumer.
public struct UnknownEvent: Error, Equatable {
    public var type: String
    public var version: Int
}

// MARK: - Payloads
//
// Events carry identifiers and what their consumers need to do their work, never the patient
// record: no chart number, resident registration number, phone number or address. What every
// screen shows of a visit's patient travels (the registry's id, name, sex and birth date, for
// 만 나이), so each service knows whom a visit is for without asking the desk.

/// What the screens show of a patient, as of the registry's `version` of the record: a consumer
/// keeps the newest version it has seen, whatever order the events reach it in.
public struct PatientFacts: Codable, Sendable, Equatable {
    public var patientId: UUID
    public var name: String
    /// `M`, `F` or `U`.
    public var sex: String
    /// `YYYY-MM-DD`, when known.
    public var birthDate: String?
    public var version: Int

    public init(patientId: UUID, name: String, sex: String, birthDate: String?, version: Int) {
        self.patientId = patientId
        self.name = name
        self.sex = sex
        self.birthDate = birthDate
        self.version = version
    }
}

public struct TreatmentReceived: Codable, Sendable, Equatable {
    public static let type = "TreatmentReceived"
    public var patientName: String
    public var department: String?
    public var symptom: String?
    /// The registry's patient (absent in events from before the registry).
    public var patient: PatientFacts?
    /// 대기 번호, e.g. `A-012`: the department's running number of the day (absent in events
    /// from before calling).
    public var queueNumber: String?
    /// `EMERGENCY`, `CARE` or `NORMAL` (absent: normal).
    public var priority: String?

    public init(
        patientName: String, department: String?, symptom: String?, patient: PatientFacts? = nil,
        queueNumber: String? = nil, priority: String? = nil
    ) {
        self.patientName = patientName
        self.department = department
        self.symptom = symptom
        self.patient = patient
        self.queueNumber = queueNumber
        self.priority = priority
    }
}

/// The desk changed a waiting visit's priority (응급, 배려, 일반) after 접수: its place in the
/// department's queue moves with it.
public struct PriorityChanged: Codable, Sendable, Equatable {
    public static let type = "PriorityChanged"
    /// `EMERGENCY`, `CARE` or `NORMAL`.
    public var priority: String

    public init(priority: String) { self.priority = priority }
}

/// A visit's place in a calling queue changed: the doctor (or examiner) called it, called it
/// again, began, marked it absent, or took the last of these back. Carries what a board or a
/// waiting-room display shows: never the patient's name (they know it by the visit).
public struct QueueUpdated: Codable, Sendable, Equatable {
    public static let type = "QueueUpdated"
    /// `CALL`, `RECALL`, `START`, `NO_SHOW`, `UNDO`, or `RESET` (sent to exams: waits again
    /// once they are done).
    public var transition: String
    /// The queue's side: `diagnosis` (진료실) or `examination` (검사실).
    public var stage: String
    /// The diagnosis (or examination) queued.
    public var entryId: UUID
    /// The examination's order (absent for a consultation).
    public var orderId: UUID?
    public var department: String?
    public var queueNumber: String?
    /// What it is now: `WAITING`, `CALLED`, `IN_CONSULTATION`, `IN_EXAM` or `NO_SHOW`.
    public var state: String
    /// Where the patient was called to (진료실 2), while called or in consultation.
    public var room: String?
    /// How many times it was called since it last waited.
    public var calls: Int

    public init(
        transition: String, stage: String, entryId: UUID, orderId: UUID? = nil, department: String?, queueNumber: String?,
        state: String, room: String?, calls: Int
    ) {
        self.transition = transition
        self.stage = stage
        self.entryId = entryId
        self.orderId = orderId
        self.department = department
        self.queueNumber = queueNumber
        self.state = state
        self.room = room
        self.calls = calls
    }
}

public struct PatientRegistered: Codable, Sendable, Equatable {
    public static let type = "PatientRegistered"
    public var patient: PatientFacts

    public init(patient: PatientFacts) { self.patient = patient }
}

public struct PatientUpdated: Codable, Sendable, Equatable {
    public static let type = "PatientUpdated"
    public var patient: PatientFacts
    /// Which of the shown fields changed (`name`, `sex`, `birthDate`).
    public var changed: [String]

    public init(patient: PatientFacts, changed: [String]) {
        self.patient = patient
        self.changed = changed
    }
}

public struct PatientMerged: Codable, Sendable, Equatable {
    public static let type = "PatientMerged"
    /// The record merged away.
    public var patientId: UUID
    /// The record every one of its visits now belongs to.
    public var into: UUID

    public init(patientId: UUID, into: UUID) {
        self.patientId = patientId
        self.into = into
    }
}

public struct TreatmentCanceled: Codable, Sendable, Equatable {
    public static let type = "TreatmentCanceled"
    public var reason: String

    public init(reason: String) { self.reason = reason }
}

public struct ExamOrder: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var code: String
    public var name: String

    public init(orderId: UUID, code: String, name: String) {
        self.orderId = orderId
        self.code = code
        self.name = name
    }
}

public struct Prescribed: Codable, Sendable, Equatable {
    public static let type = "Prescribed"
    public var diagnosisId: UUID
    public var patientName: String
    public var orders: [ExamOrder]
    /// The registry's patient as the doctor's side knew it (absent before the registry).
    public var patient: PatientFacts?
    /// The visit's department, 대기 번호 and priority, for the exam rooms' queues (absent from
    /// prescriptions made before exams were called).
    public var department: String?
    public var queueNumber: String?
    public var priority: String?

    public init(
        diagnosisId: UUID, patientName: String, orders: [ExamOrder], patient: PatientFacts? = nil, department: String? = nil,
        queueNumber: String? = nil, priority: String? = nil
    ) {
        self.diagnosisId = diagnosisId
        self.patientName = patientName
        self.orders = orders
        self.patient = patient
        self.department = department
        self.queueNumber = queueNumber
        self.priority = priority
    }
}

public struct ExaminationCompleted: Codable, Sendable, Equatable {
    public static let type = "ExaminationCompleted"
    public var examinationId: UUID
    public var diagnosisId: UUID
    public var orderId: UUID
    public var result: String
    /// The result files attached by then: references, never their bytes (absent when none, so
    /// consumers that predate attachments read the event as before).
    public var attachments: [AttachmentReference]?

    public init(
        examinationId: UUID, diagnosisId: UUID, orderId: UUID, result: String, attachments: [AttachmentReference]? = nil
    ) {
        self.examinationId = examinationId
        self.diagnosisId = diagnosisId
        self.orderId = orderId
        self.result = result
        self.attachments = attachments.flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// A file attached to an examination, as events name it: enough to fetch and check it
/// (`GET /examinations/{examinationId}/attachments/{id}`, the SHA-256), nothing of its contents.
public struct AttachmentReference: Codable, Sendable, Equatable {
    public var id: UUID
    public var contentType: String
    public var size: Int64
    public var sha256: String

    public init(id: UUID, contentType: String, size: Int64, sha256: String) {
        self.id = id
        self.contentType = contentType
        self.size = size
        self.sha256 = sha256
    }
}

public struct ExaminationCanceled: Codable, Sendable, Equatable {
    public static let type = "ExaminationCanceled"
    public var examinationId: UUID
    public var diagnosisId: UUID
    public var orderId: UUID
    public var reason: String

    public init(examinationId: UUID, diagnosisId: UUID, orderId: UUID, reason: String) {
        self.examinationId = examinationId
        self.diagnosisId = diagnosisId
        self.orderId = orderId
        self.reason = reason
    }
}

public struct DiagnosisCompleted: Codable, Sendable, Equatable {
    public static let type = "DiagnosisCompleted"
    public var diagnosisId: UUID
    public var note: String

    public init(diagnosisId: UUID, note: String) {
        self.diagnosisId = diagnosisId
        self.note = note
    }
}

public struct DiagnosisRejected: Codable, Sendable, Equatable {
    public static let type = "DiagnosisRejected"
    public var diagnosisId: UUID
    public var reason: String

    public init(diagnosisId: UUID, reason: String) {
        self.diagnosisId = diagnosisId
        self.reason = reason
    }
}

public struct DiagnosisCanceled: Codable, Sendable, Equatable {
    public static let type = "DiagnosisCanceled"
    public var diagnosisId: UUID
    public var reason: String

    public init(diagnosisId: UUID, reason: String) {
        self.diagnosisId = diagnosisId
        self.reason = reason
    }
}
