import Contracts
import FluentKit
import Foundation
import Messaging
import ReceptionDomain
import ServiceKit
import SharedKernel
import Storage
import Vapor

/// The desk (원무과): registers visits, cancels them, and learns how each consultation ended.
public struct ReceptionService: HospitalService {
    public static let name = "reception"
    public static let defaultPort = 8082
    public static let routePrefixes = ["receptions"]
    public static let visitTables = ["receptions"]
    public static let needs: ServiceNeeds = [.residentNumberKeys]
    public static var migrations: [any Migration] {
        MessagingMigrations.all + [
            ReceptionMigrations.CreateReceptions(), ReceptionMigrations.CreateIdempotencyKeys(),
            // The desk's day (`date=`), newest first, whole or by status.
            CreateIndexes(
                name: "R003_ReceptionIndexes",
                [
                    .init("receptions_received", on: "receptions", ["received_at", "id"]),
                    .init("receptions_status_received", on: "receptions", ["status", "received_at", "id"]),
                ]),
            // The desk's search by chart number (POST /receptions/search), newest first.
            CreateIndexes(
                name: "R004_ReceptionPatientIndex",
                [.init("receptions_patient_received", on: "receptions", ["patient_id", "received_at", "id"])]),
            ReceptionMigrations.AddResidentNumber(),
            // Idempotency records that expire, found by age.
            CreateIndexes(
                name: "R006_IdempotencyAge", [.init("idempotency_keys_created", on: "idempotency_keys", ["created_at"])]),
            ReceptionMigrations.ForgetStoredAnswers(),
            ContactDisclosures.Create(),
        ]
    }

    let context: ServiceContext
    /// Seals and indexes resident registration numbers (nil without keys: such a number is
    /// then refused, never stored in clear).
    let pii: PIIProtector?

    public init(context: ServiceContext) {
        self.context = context
        pii = context.residentNumberKeys.map(PIIProtector.init)
    }

    public func registerRoutes(on routes: any RoutesBuilder) {
        let receptions = routes.grouped("receptions")
        receptions.post(use: register)
        receptions.get(use: list)
        receptions.post("search", use: search)
        receptions.get(":id", use: show)
        receptions.post(":id", "contact", use: contact)
        // The operators' side, on this service's port (as the dead letters).
        routes.get("admin", "contact-disclosures", use: disclosures)
        receptions.post(":id", "cancel", use: cancel)
    }

    // MARK: Commands

    struct RegisterBody: Decodable {
        var patientName: String?
        var patientId: String?
        var birthDate: String?
        var phone: String?
        var department: String?
        var symptom: String?
        var residentNumber: String?
    }

    /// 접수: POST /receptions. With an Idempotency-Key, a retry answers what the first call did.
    @Sendable func register(_ req: Request) async throws -> Response {
        let key = try idempotencyKey(req)
        let body = try req.body(RegisterBody.self)
        let now = context.now()
        var residentCheck = FieldValidation()
        let resident = ResidentNumber.validated(body.residentNumber, today: now, into: &residentCheck)
        let patient: Patient
        do {
            patient = try Patient.validated(
                name: body.patientName, patientId: body.patientId, birthDate: body.birthDate, phone: body.phone,
                department: body.department, symptom: body.symptom, today: now)
        } catch {
            throw ValidationFailure(error.fields + residentCheck.failures)
        }
        try residentCheck.check()
        let pii = try requirePII()
        // The number goes no further in clear: sealed, indexed by a keyed hash, and masked.
        let sealed = try resident.map { try pii.seal($0.digits) }
        let index = resident.map { pii.index($0.digits) }
        let masked = resident?.masked
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "desk"), trace: req.trace)
        let fingerprint = Self.fingerprint(patient, residentIndex: index)

        let attempt: @Sendable () async throws -> (UUID, String) = {
            try await context.command { db in
                if let key, let earlier = try await IdempotencyRecord.find(key, on: db) {
                    if earlier.createdAt < now.addingTimeInterval(-Self.idempotencyLifetime) {
                        try await earlier.delete(on: db)  // expired: the key is new again
                    } else {
                        guard earlier.request == fingerprint else { throw AppError.idempotencyKeyReused }
                        // The record keeps no copy of the patient: the answer is read again.
                        let visit = try await ReceptionModel.require(earlier.receptionId, on: db)
                        return (earlier.receptionId, try Self.encode(ReceptionResponse(visit)))
                    }
                }
                let (reception, events) = Reception.register(id: UUID(), patient: patient, at: now)
                let model = ReceptionModel(reception)
                model.residentNumberSealed = sealed
                model.residentNumberIndex = index
                model.residentNumberMasked = masked
                try await model.create(on: db)
                try await Outbox.append(stamp.envelopes(events, receptionId: reception.id, at: now), on: db)
                let response = try Self.encode(ReceptionResponse(reception, residentNumber: masked))
                if let key {
                    try await IdempotencyRecord(
                        key: key, request: fingerprint, receptionId: reception.id, response: "", createdAt: now
                    ).create(on: db)
                    // Records past their lifetime go as new ones come (through the index on created_at).
                    try await IdempotencyRecord.query(on: db)
                        .filter(\.$createdAt < now.addingTimeInterval(-Self.idempotencyLifetime)).delete()
                }
                return (reception.id, response)
            }
        }
        let (id, response): (UUID, String)
        do {
            (id, response) = try await attempt()
        } catch where key != nil && context.store.engine.isUniqueViolation(error) {
            // A concurrent request with the same key won the race: answer what it answered.
            (id, response) = try await attempt()
        }
        var headers = HTTPHeaders()
        headers.contentType = .json
        headers.replaceOrAdd(name: .location, value: "/receptions/\(id.uuidString)")
        return Response(status: .created, headers: headers, body: .init(string: response))
    }

    struct CancelBody: Decodable { var reason: String? }

    /// 접수 취소: POST /receptions/{id}/cancel, while the visit is open.
    @Sendable func cancel(_ req: Request) async throws -> ReceptionResponse {
        let id = try req.id(of: "reception")
        let reason = try CancelReason.validated(try req.body(CancelBody.self).reason)
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "desk"), trace: req.trace)
        let reception = try await context.change(ReceptionModel.self, id, stamp: stamp, receptionId: \.id) {
            reception, now in try reception.cancel(reason: reason, at: now)
        }
        let masked = try await ReceptionModel.find(id, on: context.store.database)?.residentNumberMasked
        return ReceptionResponse(reception, residentNumber: masked)
    }

    // MARK: Queries

    /// GET /receptions/{id}: the desk reads it whole; a doctor without the phone number unless
    /// the visit is in one of their departments (`contactWithheld`; see `ContactDisclosures`).
    @Sendable func show(_ req: Request) async throws -> ReceptionResponse {
        let id = try req.id(of: "reception")
        var response = try ReceptionResponse(try await ReceptionModel.require(id, on: context.store.database))
        if !ContactDisclosures.mayRead(
            role: req.callerRole, departments: req.callerDepartments, visitDepartment: response.department)
        {
            response.phone = nil
            response.contactWithheld = true
        }
        return response
    }

    /// GET /receptions?status=&date=: newest first.
    @Sendable func list(_ req: Request) async throws -> ListResponse<ReceptionResponse> {
        var query = QueryReader(req)
        let status = query.value("status", as: Reception.Status.self)
        let day = query.day("date", in: context.timeZone)
        let page = query.page()
        try query.check()

        let q = ReceptionModel.query(on: context.store.database)
        if let status { q.filter(\.$status == status.rawValue) }
        if let day { q.filter(\.$receivedAt >= day.lowerBound).filter(\.$receivedAt < day.upperBound) }
        let (models, total, next) = try await q.page(page, sortedBy: \.$receivedAt, descending: true, id: \.$id)
        return ListResponse(
            items: try models.map { try ReceptionResponse($0) }, total: total, page: page, next: next)
    }

    struct SearchBody: Decodable {
        var patientId: String?
        var residentNumber: String?
    }

    /// POST /receptions/search `{patientId}`: one patient's visits, newest first. The chart
    /// number travels in the body: a patient identifier never goes into a URL (nor the logs
    /// that record URLs). Paging (`limit`, `offset`, `after`) stays in the query.
    @Sendable func search(_ req: Request) async throws -> ListResponse<ReceptionResponse> {
        var query = QueryReader(req)
        let page = query.page()
        try query.check()
        let body = try req.body(SearchBody.self)
        let q = ReceptionModel.query(on: context.store.database)
        // By either, or both (then a visit must match both); a malformed one is refused.
        if body.patientId != nil || body.residentNumber == nil {
            q.filter(\.$patientId == (try Patient.validatedChartNumber(body.patientId)))
        }
        if body.residentNumber != nil {
            // Found by the keyed hash of the number, never by the number itself.
            let number = try ResidentNumber.validated(body.residentNumber, today: context.now())
            q.filter(\.$residentNumberIndex == (try requirePII()).index(number.digits))
        }
        let (models, total, next) = try await q.page(page, sortedBy: \.$receivedAt, descending: true, id: \.$id)
        return ListResponse(
            items: try models.map { try ReceptionResponse($0) }, total: total, page: page, next: next)
    }

    // MARK: Reactions

    public var handledEventTypes: Set<String> { [DiagnosisCompleted.type, DiagnosisRejected.type] }

    public func handle(_ envelope: EventEnvelope, on db: any Database) async throws {
        guard let model = try await ReceptionModel.find(envelope.receptionId, on: db) else {
            context.logger.warning("event for an unknown reception", metadata: ["eventId": "\(envelope.eventId)"])
            return
        }
        var reception = try model.aggregate()
        switch envelope.event {
        case .diagnosisCompleted: reception.diagnosisCompleted(at: envelope.occurredAt)
        case .diagnosisRejected(let e): reception.diagnosisRejected(reason: e.reason, at: envelope.occurredAt)
        default: return
        }
        if reception != (try model.aggregate()) { try await model.update(to: reception, on: db) }
    }

    // MARK: -

    private func idempotencyKey(_ req: Request) throws -> String? {
        guard let key = req.headers.first(name: "Idempotency-Key") else { return nil }
        guard (1...128).contains(key.count),
            key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) })
        else {
            throw AppError.invalidRequest([
                .init(
                    field: "Idempotency-Key", code: .invalidFormat,
                    message: "must be 1 to 128 letters, digits, '-', '_', '.' or ':'")
            ])
        }
        return key
    }

    /// How long an Idempotency-Key is remembered: a day.
    static let idempotencyLifetime: TimeInterval = 24 * 3600

    private func requirePII() throws -> PIIProtector {
        guard let pii else { throw AppError.notReady("resident numbers cannot be protected: no key") }
        return pii
    }

    /// A digest of the request as validated, to recognise a retry without keeping a second copy
    /// of the patient's details (the resident number only by its keyed hash).
    private static func fingerprint(_ p: Patient, residentIndex: String?) -> String {
        let canonical = [p.name, p.patientId, p.birthDate, p.phone, p.department, p.symptom, residentIndex]
            .map { $0.map { "\($0.utf8.count):\($0)" } ?? "-" }.joined(separator: "|")
        return SHA256.hash(data: Data(canonical.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    private static func encode(_ response: ReceptionResponse) throws -> String {
        String(decoding: try APIJSON.encoder().encode(response), as: UTF8.self)
    }
}

/// A reception as the API shows it.
public struct ReceptionResponse: Content, Equatable {
    public var id: UUID
    public var status: String
    public var patientName: String
    @Nullable public var patientId: String?
    @Nullable public var birthDate: String?
    @Nullable public var phone: String?
    @Nullable public var department: String?
    @Nullable public var symptom: String?
    public var receivedAt: Date
    @Nullable public var completedAt: Date?
    @Nullable public var canceledAt: Date?
    @Nullable public var cancelReason: String?
    /// 주민등록번호, masked: `850315-1******`.
    @Nullable public var residentNumber: String?
    /// Present (true) when the caller may not read the contact details as is: `phone` is null
    /// then, whatever the visit holds (POST /receptions/{id}/contact with a reason discloses it).
    public var contactWithheld: Bool?

    init(_ model: ReceptionModel) throws {
        self.init(try model.aggregate(), residentNumber: model.residentNumberMasked)
    }

    init(_ r: Reception, residentNumber: String? = nil) {
        self.residentNumber = residentNumber
        id = r.id
        status = r.status.rawValue
        patientName = r.patient.name
        patientId = r.patient.patientId
        birthDate = r.patient.birthDate
        phone = r.patient.phone
        department = r.patient.department
        symptom = r.patient.symptom
        receivedAt = r.receivedAt
        completedAt = r.completedAt
        canceledAt = r.canceledAt
        cancelReason = r.cancelReason
    }
}
