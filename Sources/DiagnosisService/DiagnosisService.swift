import Contracts
import DiagnosisDomain
import FluentKit
import Foundation
import Messaging
import ServiceKit
import SharedKernel
import SQLKit
import Storage
import Vapor

/// The doctor's side (진료): the worklist, exam orders, results, completion and rejection.
public struct DiagnosisService: HospitalService {
    public static let name = "diagnosis"
    public static let defaultPort = 8083
    public static let routePrefixes = ["diagnoses"]
    /// The doctor's live queue and worklist go through the gateway as they come.
    public static let streamedRoutes = [StreamedRoute(.GET, "diagnoses/queue/live"), StreamedRoute(.GET, "diagnoses/live")]
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
            KnownPatients.Create(name: "D003_KnownPatients"),
            DiagnosisMigrations.AddPatient(),
            DiagnosisMigrations.AddCalling(),
        ]
    }

    let context: ServiceContext
    /// The doctors' live queues (16 per user, 200 per process).
    let streams = LiveStreams(maxOpen: 200, maxPerUser: 16)

    public init(context: ServiceContext) { self.context = context }

    public func serverStopping() async { streams.end() }

    public func registerRoutes(on routes: any RoutesBuilder) {
        let diagnoses = routes.grouped("diagnoses")
        diagnoses.get(use: list)
        diagnoses.get("live", use: worklistLive)
        diagnoses.get(":id", use: show)
        diagnoses.get(":id", "history", use: history)
        diagnoses.post(":id", "prescriptions", use: prescribe)
        diagnoses.post(":id", "complete", use: complete)
        diagnoses.post(":id", "reject", use: reject)
        // 호출: the department's queue and its steps.
        diagnoses.get("queue", use: queue)
        diagnoses.get("queue", "live", use: queueLive)
        diagnoses.post(":id", "call", use: call)
        diagnoses.post(":id", "start", use: start)
        diagnoses.post(":id", "no-show", use: noShow)
        diagnoses.post(":id", "undo", use: undo)
    }

    // MARK: Calling

    /// The room named in the body: one of the clinic's (422 naming `room` otherwise).
    private func room(_ req: Request, required: Bool) throws -> String? {
        try req.room(
            required: required, isKnown: { context.clinic.department(ofRoom: $0) != nil },
            hint: "must be one of the clinic's rooms (GET /diagnoses/queue lists them)")
    }

    /// 호출 / 재호출: POST /diagnoses/{id}/call `{room}`.
    @Sendable func call(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        let room = try room(req, required: true)!
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "doctor"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { diagnosis, now in
            try diagnosis.call(room: room, in: layout, by: stamp.actor, at: now)
        }
    }

    /// 진료 시작: POST /diagnoses/{id}/start `{room?}`.
    @Sendable func start(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        let room = try room(req, required: false)
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "doctor"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { diagnosis, now in
            try diagnosis.start(room: room, in: layout, by: stamp.actor, at: now)
        }
    }

    /// 부재: POST /diagnoses/{id}/no-show, after the layout's number of calls.
    @Sendable func noShow(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "doctor"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { diagnosis, now in
            try diagnosis.markNoShow(in: layout, by: stamp.actor, at: now)
        }
    }

    /// 되돌리기: POST /diagnoses/{id}/undo, the last step by its maker within the layout's time.
    @Sendable func undo(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "doctor"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { diagnosis, now in
            try diagnosis.undoCalling(in: layout, by: stamp.actor, at: now)
        }
    }

    /// A department's queue: GET /diagnoses/queue?department=내과, every visit waiting for the
    /// doctor (registered, or back from its exams), by priority then arrival, each with its
    /// place (waiting, called, in consultation, absent); and the department's rooms.
    @Sendable func queue(_ req: Request) async throws -> QueueResponse {
        let department = try queueDepartment(req)
        let answer = try await queueSnapshot(department)
        req.auditVisits = answer.items.map(\.receptionId) + answer.atExams.map(\.receptionId)
        return answer
    }

    /// The queue, live: GET /diagnoses/queue/live?department=, server-sent events, a `queue`
    /// event with the whole queue on each change (see `LiveStream`).
    @Sendable func queueLive(_ req: Request) async throws -> Response {
        let department = try queueDepartment(req)
        return try await LiveStream.response(req, streams: streams, event: "queue", view: department) {
            let answer = try await self.queueSnapshot(department)
            return .init(
                body: try APIJSON.encoder().encode(answer),
                visits: answer.items.map(\.receptionId) + answer.atExams.map(\.receptionId))
        }
    }

    private func queueDepartment(_ req: Request) throws -> String {
        var query = QueryReader(req)
        let department = query.text("department", maxLength: 50)
        try query.check()
        guard let department else {
            throw ValidationFailure([.init(field: "department", code: .required, message: "say which department")])
        }
        return department
    }

    func queueSnapshot(_ department: String) async throws -> QueueResponse {
        let db = context.store.database
        // One statement: a patient who leaves for an exam (or comes back) while the queue is
        // read is in it once, never in both lists or in neither.
        let waiting = [Diagnosis.Status.waiting.rawValue, Diagnosis.Status.examDone.rawValue]
        let parts = try await DiagnosisModel.select(
            [
                Selection(
                    "department = \(bind: department) AND status IN \(list: waiting)",
                    orderedBy: "priority_rank, created_at, id", limit: 500),
                Selection(
                    "department = \(bind: department) AND status = \(bind: Diagnosis.Status.examOrdered.rawValue)",
                    orderedBy: "created_at, id", limit: 200),
            ], on: db)
        let (models, atExams) = (parts[0], parts[1])
        return QueueResponse(
            department: department, rooms: context.clinic.department(named: department)?.rooms ?? [],
            callsBeforeNoShow: context.clinic.callsBeforeNoShow, items: try await responses(models, on: db),
            atExams: try await responses(atExams, on: db))
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
        let now = context.now()
        let diagnosis = try await context.command { db in
            let record = try await DiagnosisModel.require(id, on: db)
            var diagnosis = try record.aggregate()
            var events = try diagnosis.prescribe(
                prescription, orderIds: prescription.examinations.map { _ in UUID() }, at: now)
            // The examiner's side learns who the patient is from the order itself.
            if let patientId = record.patientId, let known = try await KnownPatients.current([patientId], on: db)[patientId] {
                let facts = PatientFacts(
                    patientId: known.id, name: known.name, sex: known.sex, birthDate: known.birthDate,
                    version: known.version)
                events = events.map { event in
                    guard case .prescribed(var p) = event else { return event }
                    p.patient = facts
                    return .prescribed(p)
                }
            }
            try await record.update(to: diagnosis, on: db)
            try await Outbox.append(stamp.envelopes(events, receptionId: diagnosis.receptionId, at: now), on: db)
            return record
        }
        streams.changed()
        return try await responses([diagnosis], on: context.store.database)[0]
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
        _ = try await context.change(DiagnosisModel.self, id, stamp: stamp, receptionId: \.receptionId, decide)
        streams.changed()
        return try await responses([try await DiagnosisModel.require(id, on: context.store.database)], on: context.store.database)[0]
    }

    /// The answers for `models`, each with its patient as this service knows them (one query).
    func responses(_ models: [DiagnosisModel], on db: any Database) async throws -> [DiagnosisResponse] {
        let known = try await KnownPatients.current(models.compactMap(\.patientId), on: db)
        let today = context.today()
        let now = context.now()
        let layout = context.clinic
        return try models.map { model in
            DiagnosisResponse(
                try model.aggregate(), patient: model.patientId.flatMap { known[$0] }, today: today, now: now,
                layout: layout)
        }
    }

    // MARK: Queries

    @Sendable func show(_ req: Request) async throws -> DiagnosisResponse {
        let id = try req.id(of: "diagnosis")
        return try await responses([try await DiagnosisModel.require(id, on: context.store.database)], on: context.store.database)[0]
    }

    /// The patient's previous visits (이전 진료), newest first: every other diagnosis of the same
    /// patient (and of the records merged into theirs) with its orders, results and files, from
    /// this service's own data, so the doctor sees them while reception is down.
    @Sendable func history(_ req: Request) async throws -> ListResponse<DiagnosisResponse> {
        let id = try req.id(of: "diagnosis")
        var query = QueryReader(req)
        let page = query.page()
        try query.check()
        let db = context.store.database
        let current = try await DiagnosisModel.require(id, on: db)
        let q = DiagnosisModel.query(on: db).filter(\.$id != id)
        if let patientId = current.patientId {
            let survivor = try await KnownPatients.survivor(of: patientId, on: db)
            q.filter(\.$patientId ~~ (try await KnownPatients.identities(of: survivor, on: db)))
        } else {
            q.filter(\.$id == UUID())  // a visit from before the registry: no one to follow
        }
        let (models, total, next) = try await q.page(page, sortedBy: \.$createdAt, descending: true, id: \.$id)
        req.auditVisits = models.map(\.receptionId)
        return ListResponse(items: try await responses(models, on: db), total: total, page: page, next: next)
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
            items: try await responses(models, on: context.store.database), total: total, page: page, next: next)
    }

    /// The doctors' worklist, live: GET /diagnoses/live, server-sent events, a `worklist` event
    /// with every open consultation (WAITING, EXAM_DONE, EXAM_ORDERED; at most 200 of each,
    /// oldest first, as `GET /diagnoses?status=` answers them) on each change (see `LiveStream`).
    @Sendable func worklistLive(_ req: Request) async throws -> Response {
        try await LiveStream.response(req, streams: streams, event: "worklist", view: "open") {
            let db = self.context.store.database
            // One statement: a consultation that changes state while the view is read is in it once.
            let models = try await DiagnosisModel.select(
                [Diagnosis.Status.waiting, .examDone, .examOrdered].map {
                    Selection("status = \(bind: $0.rawValue)", orderedBy: "created_at, id", limit: 200)
                }, on: db
            ).flatMap { $0 }
            let answer = OpenWorklist(items: try await self.responses(models, on: db))
            return .init(body: try APIJSON.encoder().encode(answer), visits: models.map(\.receptionId))
        }
    }

    // MARK: Reactions

    public var handledEventTypes: Set<String> {
        Set([
            TreatmentReceived.type, TreatmentCanceled.type, ExaminationCompleted.type, ExaminationCanceled.type,
            PriorityChanged.type,
        ])
            .union(KnownPatients.eventTypes)
    }

    /// The live queues and worklists look again once what changed them is committed.
    public func eventsCommitted() { streams.changed() }

    public func handle(_ envelope: EventEnvelope, on db: any Database) async throws {
        let at = envelope.occurredAt
        switch envelope.event {
        case .treatmentReceived(let e):
            if let facts = e.patient { try await KnownPatients.learn(facts, on: db) }
            guard try await find(receptionId: envelope.receptionId, on: db) == nil else { return }
            let diagnosis = Diagnosis.open(receptionId: envelope.receptionId, from: e, at: at)
            let model = try DiagnosisModel(diagnosis)
            model.patientId = e.patient?.patientId
            try await model.insert(on: db)
        case .treatmentCanceled(let e):
            guard let model = try await find(receptionId: envelope.receptionId, on: db) else { return }
            var diagnosis = try model.aggregate()
            let events = diagnosis.receptionCanceled(reason: e.reason, at: at)
            try await save(model, diagnosis, events, causedBy: envelope, on: db)
        case .examinationCompleted(let e):
            guard let model = try await DiagnosisModel.byID(e.diagnosisId, on: db) else { return }
            var diagnosis = try model.aggregate()
            diagnosis.examinationCompleted(
                orderId: e.orderId, result: e.result, examinationId: e.examinationId, attachments: e.attachments, at: at)
            try await save(model, diagnosis, [], causedBy: envelope, on: db)
        case .examinationCanceled(let e):
            guard let model = try await DiagnosisModel.byID(e.diagnosisId, on: db) else { return }
            var diagnosis = try model.aggregate()
            diagnosis.examinationCanceled(orderId: e.orderId, reason: e.reason, at: at)
            try await save(model, diagnosis, [], causedBy: envelope, on: db)
        case .priorityChanged(let e):
            guard let model = try await find(receptionId: envelope.receptionId, on: db),
                let priority = QueuePriority(rawValue: e.priority)
            else { return }
            var diagnosis = try model.aggregate()
            diagnosis.prioritize(priority)
            try await save(model, diagnosis, [], causedBy: envelope, on: db)
        case .patientRegistered, .patientUpdated, .patientMerged:
            try await KnownPatients.apply(envelope, on: db)
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
    /// The registry's patient (null for a visit from before the registry).
    @Nullable public var patientId: UUID?
    /// The patient's name as the registry has it now.
    public var patientName: String
    @Nullable public var sex: String?
    /// 만 나이 today.
    @Nullable public var age: Int?
    @Nullable public var birthDate: String?
    @Nullable public var department: String?
    @Nullable public var symptom: String?
    public var status: String
    public var orders: [Order]
    public var createdAt: Date
    @Nullable public var closedAt: Date?
    @Nullable public var closingNote: String?
    /// 대기 번호 (`A-012`) and the desk's priority (`EMERGENCY`, `CARE`, `NORMAL`).
    @Nullable public var queueNumber: String?
    public var priority: String
    /// 호출: `WAITING`, `CALLED`, `IN_CONSULTATION` or `NO_SHOW` (an absent patient reads as
    /// waiting again once the clinic's return time has passed), the room, who, how many calls
    /// and since when.
    public var queueState: String
    @Nullable public var room: String?
    @Nullable public var calledBy: String?
    public var calls: Int
    @Nullable public var queueSince: Date?
    /// The last step (`CALL`, `RECALL`, `START`, `NO_SHOW`), who can take it back and until when.
    @Nullable public var undoable: UndoableStep?

    init(_ d: Diagnosis, patient: KnownPatients.Patient?, today: String, now: Date, layout: ClinicLayout) {
        id = d.id
        receptionId = d.receptionId
        patientId = patient?.id
        patientName = (patient?.name).flatMap { $0.isEmpty ? nil : $0 } ?? d.patientName
        sex = patient?.sex
        age = patient?.age(on: today)
        birthDate = patient?.birthDate
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
        queueNumber = d.queueNumber
        priority = d.priority.rawValue
        let place = d.calling.current(at: now, returnMinutes: layout.noShowReturnMinutes)
        queueState = place.state.rawValue
        room = place.room
        calledBy = place.by
        calls = place.calls
        queueSince = place.since ?? (d.status == .examDone ? d.orders.compactMap(\.resolvedAt).max() : d.createdAt)
        undoable = UndoableStep(d.calling, layout: layout, now: now, open: !d.status.isClosed)
    }
}

/// Every open consultation: waiting, back from exams, at exams.
public struct OpenWorklist: Content, Equatable {
    public var items: [DiagnosisResponse]
}

/// A department's queue: its rooms and the visits waiting for a doctor, in calling order.
public struct QueueResponse: Content, Equatable {
    public var department: String
    public var rooms: [String]
    /// How many calls before a patient may be marked absent.
    public var callsBeforeNoShow: Int
    public var items: [DiagnosisResponse]
    /// The department's visits whose exams are under way (not waiting for a doctor), oldest first.
    public var atExams: [DiagnosisResponse]
}
