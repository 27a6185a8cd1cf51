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
        }
    }

    /// Every payload is at version 1; a breaking change adds a version and keeps decoding the old one.
    public var version: Int { 1 }

    public static let allTypes: [String] = [
        TreatmentReceived.type, TreatmentCanceled.type, Prescribed.type, ExaminationCompleted.type,
        ExaminationCanceled.type, DiagnosisCompleted.type, DiagnosisRejected.type, DiagnosisCanceled.type,
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
// record: no chart number, resident registration number, birth date or phone number. The
// patient's name travels because the doctor's worklist, the examiner's worklist and the desk's
// board must show whom a visit is for.

public struct TreatmentReceived: Codable, Sendable, Equatable {
    public static let type = "TreatmentReceived"
    public var patientName: String
    public var department: String?
    public var symptom: String?

    public init(patientName: String, department: String?, symptom: String?) {
        self.patientName = patientName
        self.department = department
        self.symptom = symptom
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

    public init(diagnosisId: UUID, patientName: String, orders: [ExamOrder]) {
        self.diagnosisId = diagnosisId
        self.patientName = patientName
        self.orders = orders
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
