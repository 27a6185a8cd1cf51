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
    public static let routePrefixes = ["receptions", "patients"]
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
            PatientMigrations.CreatePatients(),
            PatientMigrations.MigrateVisits(logger: Logger(label: "hospital.reception")),
            ReceptionMigrations.AddQueueNumbers(),
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
        receptions.post(":id", "priority", use: changePriority)
        registerPatientRoutes(on: routes)
    }

    // MARK: Commands

    struct RegisterBody: Decodable {
        /// The registry's patient (a UUID from POST /patients or a search).
        var patientId: String?
        var department: String?
        var symptom: String?
        // The walk-in shortcut: no patientId, the patient's details instead; the patient is
        // registered in the same transaction, under the registry's rules.
        var patientName: String?
        var birthDate: String?
        var sex: String?
        var phone: String?
        var residentNumber: String?
        var confirmDistinct: Bool?
        /// `EMERGENCY` (응급), `CARE` (고령/장애 배려) or `NORMAL` (the default).
        var priority: String?
    }

    /// 접수: POST /receptions `{patientId, department, symptom?}`, or a walk-in's details instead
    /// of `patientId` (see `RegisterBody`). With an Idempotency-Key, a retry answers what the
    /// first call did.
    @Sendable func register(_ req: Request) async throws -> Response {
        let key = try idempotencyKey(req)
        let body = try req.body(RegisterBody.self)
        let now = context.now()
        var v = FieldValidation()
        let department = v.optional(body.department, "department", maxLength: 50)
        let symptom = v.optional(body.symptom, "symptom", maxLength: 1000, multiline: true)
        let priority = body.priority.map { QueuePriority(rawValue: $0) } ?? .normal
        if priority == nil { v.fail("priority", .invalidFormat, "must be EMERGENCY, CARE or NORMAL") }
        let registered: UUID?
        var walkIn: (Demographics, ResidentNumber?)?
        if let raw = body.patientId {
            registered = UUID(uuidString: raw.trimmingCharacters(in: .whitespaces))
            if registered == nil {
                v.fail(
                    "patientId", .invalidFormat,
                    "must be a registered patient's id; find a chart number with POST /patients/search")
            }
            for (field, value) in [
                ("patientName", body.patientName), ("birthDate", body.birthDate), ("sex", body.sex),
                ("phone", body.phone), ("residentNumber", body.residentNumber),
            ] where value != nil {
                v.fail(field, .invalidFormat, "must not be sent with patientId: the registry holds the patient's details")
            }
        } else {
            registered = nil
            do {
                walkIn = try Demographics.validatedWalkIn(
                    name: body.patientName, birthDate: body.birthDate, sex: body.sex, phone: body.phone,
                    residentNumber: body.residentNumber, today: now)
            } catch {
                for failure in error.fields { v.fail(failure.field, failure.code, failure.message) }
            }
        }
        try v.check()
        let residentIndex = try walkIn?.1.map { try requirePII().index($0.digits) }
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "desk"), trace: req.trace)
        let fingerprint = Self.fingerprint(
            [
                registered?.uuidString, department, symptom, walkIn?.0.name, walkIn?.0.birthDate, walkIn?.0.sex.rawValue,
                walkIn?.0.phone, residentIndex, (body.confirmDistinct ?? false) ? "1" : nil,
                priority == .normal ? nil : priority?.rawValue,
            ])
        let confirmDistinct = body.confirmDistinct ?? false
        let newPatient = walkIn
        let rank = priority ?? .normal

        // 대기 번호. On PostgreSQL in a statement of its own before the registration: its row lock
        // then lasts one statement, not the whole registration, which would line every 접수 of the
        // department up behind the slowest (a registration that then fails leaves a gap in the
        // day's numbers, never a number twice). SQLite writes one at a time anyway: there it is
        // taken inside the registration, costing no commit of its own.
        let day = today(now)
        let earlyNumber: Int? =
            context.store.engine.kind == .postgresql
            ? try await QueueNumbers.issue(department: department, day: day, on: context.store.database) : nil
        let chartNumber = newPatient == nil ? nil : try await preissuedChartNumber()
        let attempt: @Sendable () async throws -> (UUID, String) = {
            try await context.command { db in
                if let key, let earlier = try await IdempotencyRecord.find(key, on: db) {
                    if earlier.createdAt < now.addingTimeInterval(-Self.idempotencyLifetime) {
                        try await earlier.delete(on: db)  // expired: the key is new again
                    } else {
                        guard earlier.request == fingerprint else { throw AppError.idempotencyKeyReused }
                        // The record keeps no copy of the patient: the answer is read again.
                        let visit = try await ReceptionModel.require(earlier.receptionId, on: db)
                        return (earlier.receptionId, try Self.encode(try await self.responses([visit], on: db)[0]))
                    }
                }
                let patient: PatientModel
                if let registered {
                    patient = try await self.claimPatient(registered, on: db)
                } else {
                    let (demographics, resident) = newPatient!
                    patient = try await self.createPatient(
                        demographics, resident: resident, confirmDistinct: confirmDistinct, stamp: stamp, at: now,
                        chartNumber: chartNumber, on: db)
                }
                let visitor = Patient(
                    name: patient.name, patientId: patient.chartNumber, birthDate: patient.birthDate, phone: nil,
                    department: department, symptom: symptom)
                let number: Int
                if let earlyNumber { number = earlyNumber } else {
                    number = try await QueueNumbers.issue(department: department, day: day, on: db)
                }
                let queueNumber = QueueNumber.format(
                    prefix: self.context.clinic.department(named: department)?.prefix, number: number)
                let (reception, events) = Reception.register(
                    id: UUID(), patient: visitor, registryFacts: patient.facts,
                    queue: (queueNumber, rank.rawValue), at: now)
                let model = ReceptionModel(reception)
                model.patientRef = patient.id
                model.queueNumber = queueNumber
                model.priority = rank.rawValue
                try await model.insert(on: db)
                try await Outbox.append(stamp.envelopes(events, receptionId: reception.id, at: now), on: db)
                let response = try Self.encode(ReceptionResponse(model: model, patient: patient, today: self.today(now)))
                if let key {
                    try await IdempotencyRecord(
                        key: key, request: fingerprint, receptionId: reception.id, response: "", createdAt: now
                    ).insert(on: db)
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
        _ = reception
        let model = try await ReceptionModel.require(id, on: context.store.database)
        return try await responses([model], on: context.store.database)[0]
    }

    struct PriorityBody: Decodable { var priority: String? }

    /// 우선순위 변경: POST /receptions/{id}/priority `{priority}`, while the visit is open. The
    /// department's queue reorders when the doctor's side hears of it; the request is audited
    /// as every other.
    @Sendable func changePriority(_ req: Request) async throws -> ReceptionResponse {
        let id = try req.id(of: "reception")
        let raw = try req.body(PriorityBody.self).priority
        guard let raw, let priority = QueuePriority(rawValue: raw) else {
            throw ValidationFailure([
                .init(
                    field: "priority", code: raw == nil ? .required : .invalidFormat,
                    message: "must be EMERGENCY, CARE or NORMAL")
            ])
        }
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "desk"), trace: req.trace)
        let now = context.now()
        try await context.command { db in
            let model = try await ReceptionModel.require(id, on: db)
            let current = model.priority.flatMap(QueuePriority.init(rawValue:)) ?? .normal
            let reception = try model.aggregate()
            let events = try reception.changePriority(from: current, to: priority)
            guard !events.isEmpty else { return }
            model.priority = priority.rawValue
            try await model.update(to: reception, on: db)
            try await Outbox.append(stamp.envelopes(events, receptionId: id, at: now), on: db)
        }
        let model = try await ReceptionModel.require(id, on: context.store.database)
        return try await responses([model], on: context.store.database)[0]
    }

    // MARK: Queries

    /// GET /receptions/{id}: the desk reads it whole; a doctor without the phone number unless
    /// the visit is in one of their departments (`contactWithheld`; see `ContactDisclosures`).
    @Sendable func show(_ req: Request) async throws -> ReceptionResponse {
        let id = try req.id(of: "reception")
        let model = try await ReceptionModel.require(id, on: context.store.database)
        var response = try await responses([model], on: context.store.database)[0]
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
            items: try await responses(models, on: context.store.database), total: total, page: page, next: next)
    }

    struct SearchBody: Decodable {
        var patientId: String?
        var chartNumber: String?
        var residentNumber: String?
    }

    /// POST /receptions/search `{patientId | chartNumber | residentNumber}`: one patient's
    /// visits, newest first (a merged record's visits are the survivor's now). The identifiers
    /// travel in the body: a patient identifier never goes into a URL (nor the logs that
    /// record URLs). Paging (`limit`, `offset`, `after`) stays in the query.
    @Sendable func search(_ req: Request) async throws -> ListResponse<ReceptionResponse> {
        var query = QueryReader(req)
        let page = query.page()
        try query.check()
        let body = try req.body(SearchBody.self)
        var v = FieldValidation()
        let patientId = body.patientId.flatMap { UUID(uuidString: $0.trimmingCharacters(in: .whitespaces)) }
        if body.patientId != nil, patientId == nil {
            v.fail("patientId", .invalidFormat, "must be a registered patient's id")
        }
        let chartNumber = ChartNumber.validated(body.chartNumber, field: "chartNumber", into: &v)
        let resident = ResidentNumber.validated(body.residentNumber, today: context.now(), into: &v)
        if body.patientId == nil, chartNumber == nil, body.residentNumber == nil {
            v.fail("patientId", .required, "give patientId, chartNumber or residentNumber")
        }
        try v.check()
        // The patient first (by any of them; all given must agree), then their visits.
        let patients = PatientModel.query(on: context.store.database)
        if let patientId { patients.filter(\.$id == patientId) }
        if let chartNumber { patients.filter(\.$chartNumber == chartNumber) }
        if let resident { patients.filter(\.$residentNumberIndex == (try requirePII()).index(resident.digits)) }
        let found = try await patients.limit(2).all()
        let q = ReceptionModel.query(on: context.store.database)
        if let patient = found.first, found.count == 1 {
            q.filter(\.$patientRef == patient.mergedInto ?? patient.id!)
            req.auditChartNumbers = [patient.chartNumber]
        } else {
            q.filter(\.$id == UUID())  // nobody: an empty page, the same shape
        }
        let (models, total, next) = try await q.page(page, sortedBy: \.$receivedAt, descending: true, id: \.$id)
        return ListResponse(
            items: try await responses(models, on: context.store.database), total: total, page: page, next: next)
    }

    // MARK: Reactions

    public var handledEventTypes: Set<String> { [DiagnosisCompleted.type, DiagnosisRejected.type] }

    public func handle(_ envelope: EventEnvelope, on db: any Database) async throws {
        guard let model = try await ReceptionModel.byID(envelope.receptionId, on: db) else {
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

    func requirePII() throws -> PIIProtector {
        guard let pii else { throw AppError.notReady("resident numbers cannot be protected: no key") }
        return pii
    }

    /// A digest of the request as validated, to recognise a retry without keeping a second copy
    /// of the patient's details (the resident number only by its keyed hash).
    private static func fingerprint(_ parts: [String?]) -> String {
        let canonical = parts.map { $0.map { "\($0.utf8.count):\($0)" } ?? "-" }.joined(separator: "|")
        return SHA256.hash(data: Data(canonical.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The answers for `models`, each with its patient as the registry has them now (read in one query).
    func responses(_ models: [ReceptionModel], on db: any Database) async throws -> [ReceptionResponse] {
        let ids = Set(models.compactMap(\.patientRef))
        let patients =
            ids.isEmpty ? [] : try await PatientModel.query(on: db).filter(\.$id ~~ Array(ids)).all()
        let byId = Dictionary(uniqueKeysWithValues: patients.map { ($0.id!, $0) })
        let day = today(context.now())
        return try models.map { model in
            try ReceptionResponse(model: model, patient: model.patientRef.flatMap { byId[$0] }, today: day)
        }
    }

    private static func encode(_ response: ReceptionResponse) throws -> String {
        String(decoding: try APIJSON.encoder().encode(response), as: UTF8.self)
    }
}

/// A reception as the API shows it, with its patient as the registry has them now.
public struct ReceptionResponse: Content, Equatable {
    public var id: UUID
    public var status: String
    /// The registry's patient (null only for a visit the migration could not place).
    @Nullable public var patientId: UUID?
    /// 환자번호.
    @Nullable public var chartNumber: String?
    public var patientName: String
    @Nullable public var sex: String?
    /// 만 나이 today.
    @Nullable public var age: Int?
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
    /// 대기 번호 of the day in its department (`A-012`); null for visits from before calling.
    @Nullable public var queueNumber: String?
    /// `EMERGENCY`, `CARE` or `NORMAL`.
    public var priority: String

    init(model: ReceptionModel, patient: PatientModel?, today: String) throws {
        let r = try model.aggregate()
        id = r.id
        status = r.status.rawValue
        patientId = patient?.id ?? model.patientRef
        chartNumber = patient?.chartNumber ?? r.patient.patientId
        patientName = patient?.name ?? r.patient.name
        sex = patient?.sex
        let birthDate = patient.map(\.birthDate) ?? r.patient.birthDate
        self.birthDate = birthDate
        age = birthDate.flatMap { Demographics.age(birthDate: $0, on: today) }
        phone = patient?.phone ?? r.patient.phone
        residentNumber = patient?.residentNumberMasked ?? model.residentNumberMasked
        department = r.patient.department
        symptom = r.patient.symptom
        receivedAt = r.receivedAt
        completedAt = r.completedAt
        canceledAt = r.canceledAt
        cancelReason = r.cancelReason
        queueNumber = model.queueNumber
        priority = model.priority ?? QueuePriority.normal.rawValue
    }
}
