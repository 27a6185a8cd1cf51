import Contracts
import DiagnosisDomain
import FluentKit
import Foundation
import Messaging
import ServiceKit
import SharedKernel
import Vapor

/// The doctor's side (진료): the worklist, exam orders, results, completion and rejection.
public struct DiagnosisService: HospitalService {
    public static let name = "diagnosis"
    public static let defaultPort = 8083
    public static let routePrefixes = ["diagnoses"]
    public static let visitTables = ["diagnoses"]
    public static var migrations: [any Migration] {
        MessagingMigrations.all + [
            DiagnosisMigrations.CreateDiagnoses(),
            // The worklist: newest-first pages, whole or by status.
            CreateIndexes(
                name: "D002_DiagnosisIndexes",
                [
                    .init("diagnoses_created", on: "diagnoses", ["created_at", "id"]),
                    .init("diagnoses_status_created", on: "diagnoses", ["status", "created_at", "id"]),
                ]),
        ]
    }

    let context: ServiceContext

    public init(context: ServiceContext) { self.context = context }

    public func registerRoutes(on routes: any RoutesBuilder) {
        let diagnoses = routes.grouped("diagnoses")
        diagnoses.get(use: list)
        diagnoses.get(":id", use: show)
        diagnoses.post(":id", "prescriptions", use: prescribe)
        diagnoses.post(":id", "complete", use: complete)
        diagnoses.post(":id", "reject", use: reject)
    }

    // MARK: Commands

    struct PrescriptionBody: Decodable {
        struct Exam: Decodable {
            var code: String?
            var name: String?
        }

        var examinations: [Exam]?
    }

    /// 검사 처방: POST /diagnoses/{id}/prescriptions.
    @Sendable func prescribe(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        let body = try req.body(PrescriptionBody.self)
        let prescription = try Prescription.validated(body.examinations?.map { ($0.code, $0.name) })
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "doctor"), trace: req.trace)
        return try await change(id, stamp: stamp) { diagnosis, now in
            try diagnosis.prescribe(prescription, orderIds: prescription.examinations.map { _ in UUID() }, at: now)
        }
    }

    struct CompleteBody: Decodable { var note: String? }

    /// 진료 완료: POST /diagnoses/{id}/complete, when no exam is pending.
    @Sendable func complete(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        let note = try ClosingNote.validated(
            try req.optionalBody(CompleteBody.self, default: CompleteBody()).note, field: "note", required: false)
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "doctor"), trace: req.trace)
        return try await change(id, stamp: stamp) { diagnosis, now in
            try diagnosis.complete(note: note, at: now)
        }
    }

    struct RejectBody: Decodable { var reason: String? }

    /// 진료 거부: POST /diagnoses/{id}/reject.
    @Sendable func reject(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        let reason = try ClosingNote.validated(try req.body(RejectBody.self).reason, field: "reason", required: true)
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "doctor"), trace: req.trace)
        return try await change(id, stamp: stamp) { diagnosis, now in
            try diagnosis.reject(reason: reason, at: now)
        }
    }

    private func change(
        _ id: UUID, stamp: EventStamp, _ decide: @escaping @Sendable (inout Diagnosis, Date) throws -> [VisitEvent]
    ) async throws -> DiagnosisResponse {
        DiagnosisResponse(
            try await context.change(DiagnosisModel.self, id, stamp: stamp, receptionId: \.receptionId, decide))
    }

    // MARK: Queries

    @Sendable func show(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        return DiagnosisResponse(try await DiagnosisModel.require(id, on: context.store.database).aggregate())
    }

    /// The doctor's worklist: GET /diagnoses?status=&receptionId=, oldest first.
    @Sendable func list(_ req: Request) async throws -> ListResponse<DiagnosisResponse> {
        var query = QueryReader(req)
        let status = query.value("status", as: Diagnosis.Status.self)
        let receptionId = query.uuid("receptionId")
        let page = query.page()
        try query.check()

        let q = DiagnosisModel.query(on: context.store.database)
        if let status { q.filter(\.$status == status.rawValue) }
        if let receptionId { q.filter(\.$receptionId == receptionId) }
        let (models, total, next) = try await q.page(page, sortedBy: \.$createdAt, descending: false, id: \.$id)
        return ListResponse(
            items: try models.map { DiagnosisResponse(try $0.aggregate()) }, total: total, page: page, next: next)
    }

    // MARK: Reactions

    public var handledEventTypes: Set<String> {
        [TreatmentReceived.type, TreatmentCanceled.type, ExaminationCompleted.type, ExaminationCanceled.type]
    }

    public func handle(_ envelope: EventEnvelope, on db: any Database) async throws {
        let at = envelope.occurredAt
        switch envelope.event {
        case .treatmentReceived(let e):
            guard try await find(receptionId: envelope.receptionId, on: db) == nil else { return }
            let diagnosis = Diagnosis.open(receptionId: envelope.receptionId, from: e, at: at)
            try await DiagnosisModel(diagnosis).create(on: db)
        case .treatmentCanceled(let e):
            guard let model = try await find(receptionId: envelope.receptionId, on: db) else { return }
            var diagnosis = try model.aggregate()
            let events = diagnosis.receptionCanceled(reason: e.reason, at: at)
            try await save(model, diagnosis, events, causedBy: envelope, on: db)
        case .examinationCompleted(let e):
            guard let model = try await DiagnosisModel.find(e.diagnosisId, on: db) else { return }
            var diagnosis = try model.aggregate()
            diagnosis.examinationCompleted(
                orderId: e.orderId, result: e.result, examinationId: e.examinationId, attachments: e.attachments, at: at)
            try await save(model, diagnosis, [], causedBy: envelope, on: db)
        case .examinationCanceled(let e):
            guard let model = try await DiagnosisModel.find(e.diagnosisId, on: db) else { return }
            var diagnosis = try model.aggregate()
            diagnosis.examinationCanceled(orderId: e.orderId, reason: e.reason, at: at)
            try await save(model, diagnosis, [], causedBy: envelope, on: db)
        default:
            return
        }
    }

    private func find(receptionId: UUID, on db: any Database) async throws -> DiagnosisModel? {
        try await DiagnosisModel.query(on: db).filter(\.$receptionId == receptionId).first()
    }

    private func save(
        _ model: DiagnosisModel, _ diagnosis: Diagnosis, _ events: [VisitEvent], causedBy cause: EventEnvelope,
        on db: any Database
    ) async throws {
        guard try diagnosis != model.aggregate() else { return }
        try await model.update(to: diagnosis, on: db)
        let stamp = EventStamp.reacting(to: cause, producer: Self.name)
        try await Outbox.append(stamp.envelopes(events, receptionId: diagnosis.receptionId, at: context.now()), on: db)
    }
}

/// A diagnosis as the API shows it, with its orders and their results.
public struct DiagnosisResponse: Content, Equatable {
    public struct Order: Content, Equatable {
        public var orderId: UUID
        public var code: String
        public var name: String
        public var status: String
        @Nullable public var result: String?
        @Nullable public var cancelReason: String?
        public var orderedAt: Date
        @Nullable public var resolvedAt: Date?
        @Nullable public var examinationId: UUID?
        /// The result files the examiner attached (fetch them from the examination service).
        public var attachments: [AttachmentReference]
    }

    public var id: UUID
    public var receptionId: UUID
    public var patientName: String
    @Nullable public var department: String?
    @Nullable public var symptom: String?
    public var status: String
    public var orders: [Order]
    public var createdAt: Date
    @Nullable public var closedAt: Date?
    @Nullable public var closingNote: String?

    init(_ d: Diagnosis) {
        id = d.id
        receptionId = d.receptionId
        patientName = d.patientName
        department = d.department
        symptom = d.symptom
        status = d.status.rawValue
        orders = d.orders.map {
            Order(
                orderId: $0.orderId, code: $0.code, name: $0.name, status: $0.status.rawValue, result: $0.result,
                cancelReason: $0.cancelReason, orderedAt: $0.orderedAt, resolvedAt: $0.resolvedAt,
                examinationId: $0.examinationId, attachments: $0.attachments ?? [])
        }
        createdAt = d.createdAt
        closedAt = d.closedAt
        closingNote = d.closingNote
    }
}
