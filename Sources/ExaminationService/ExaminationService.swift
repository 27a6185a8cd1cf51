import Contracts
import ExaminationDomain
import FluentKit
import Foundation
import Messaging
import ServiceKit
import SharedKernel
import Vapor

/// The examiner's side (검사): the worklist of ordered exams, performing and canceling them.
public struct ExaminationService: HospitalService {
    public static let name = "examination"
    public static let defaultPort = 8084
    public static let routePrefixes = ["examinations"]
    public static let visitTables = ["examinations"]
    public static let storedFilesQuery: String? = "SELECT DISTINCT sha256 FROM \(AttachmentModel.schema)"
    public static let needs: ServiceNeeds = [.attachmentStore]
    public static let streamedRoutes = [
        StreamedRoute(.POST, "examinations/:id/attachments"),
        StreamedRoute(.GET, "examinations/:id/attachments/:attachmentId"),
        // The examiners' live worklist goes through the gateway as it comes.
        StreamedRoute(.GET, "examinations/live"),
    ]
    public static var migrations: [any Migration] {
        MessagingMigrations.all + [
            ExaminationMigrations.CreateExaminations(),
            AttachmentMigrations.CreateAttachments(),
            CreateIndexes(
                name: "E002_ExaminationIndexes",
                [
                    .init("examinations_requested", on: "examinations", ["requested_at", "id"]),
                    .init("examinations_status_requested", on: "examinations", ["status", "requested_at", "id"]),
                    .init("examinations_diagnosis", on: "examinations", ["diagnosis_id", "status"]),
                ]),
            KnownPatients.Create(name: "E003_KnownPatients"),
            ExaminationMigrations.AddPatient(),
            ExaminationMigrations.AddCalling(),
        ]
    }

    let context: ServiceContext
    let attachmentStore: AttachmentStore?
    /// The examiners' live worklists (16 per user, 200 per process).
    let streams = LiveStreams(maxOpen: 200, maxPerUser: 16)

    public init(context: ServiceContext) {
        self.context = context
        var store: AttachmentStore?
        if let settings = context.attachments {
            do {
                store = try AttachmentStore(
                    directory: settings.directory, maxBytes: settings.maxBytes, grace: settings.grace,
                    logger: context.logger)
            } catch {
                context.logger.error(
                    "the attachments directory cannot be used; attaching files is off",
                    metadata: ["directory": "\(settings.directory.path)", "error": "\(error)"])
            }
        }
        attachmentStore = store
    }

    /// Sweeps the attachments directory now and every ten minutes.
    public var maintenance: (@Sendable () async -> Void)? {
        {
            while !Task.isCancelled {
                await sweepAttachments()
                try? await Task.sleep(for: .seconds(600))
            }
        }
    }

    public func serverStopping() async { streams.end() }

    public func registerRoutes(on routes: any RoutesBuilder) {
        let examinations = routes.grouped("examinations")
        examinations.get(use: list)
        examinations.get("live", use: live)
        examinations.get("queue", use: queue)
        examinations.get(":id", use: show)
        examinations.post(":id", "perform", use: perform)
        examinations.post(":id", "cancel", use: cancel)
        examinations.post(":id", "call", use: call)
        examinations.post(":id", "start", use: start)
        examinations.post(":id", "no-show", use: noShow)
        examinations.post(":id", "undo", use: undo)
        registerAttachmentRoutes(on: examinations)
    }

    // MARK: Commands

    struct PerformBody: Decodable { var result: String? }

    /// 검사 시행: POST /examinations/{id}/perform with the result.
    @Sendable func perform(_ req: Request) async throws -> ExaminationResponse {
        let id = try req.id(of: "examination")
        let result = try ExamNote.validated(try req.body(PerformBody.self).result, field: "result")
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "examiner"), trace: req.trace)
        // The completion names the files attached by then.
        let attachments = try await references(of: id)
        return try await change(id, stamp: stamp) { exam, now in
            try exam.perform(result: result, attachments: attachments, at: now)
        }
    }

    struct CancelBody: Decodable { var reason: String? }

    /// 검사 취소: POST /examinations/{id}/cancel with a reason.
    @Sendable func cancel(_ req: Request) async throws -> ExaminationResponse {
        let id = try req.id(of: "examination")
        let reason = try ExamNote.validated(try req.body(CancelBody.self).reason, field: "reason")
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "examiner"), trace: req.trace)
        return try await change(id, stamp: stamp) { exam, now in
            try exam.cancel(reason: reason, at: now)
        }
    }

    // MARK: Calling (검사실 호출)

    /// The room named in the body: one of the clinic's (422 naming `room` otherwise).
    private func room(_ req: Request, required: Bool) throws -> String? {
        try req.room(
            required: required, isKnown: { context.clinic.examRoom(named: $0) != nil },
            hint: "must be one of the clinic's exam rooms (GET /examinations/queue lists them)")
    }

    /// 호출 / 재호출: POST /examinations/{id}/call `{room}`.
    @Sendable func call(_ req: Request) async throws -> ExaminationResponse {
        let id = try req.id(of: "examination")
        let room = try room(req, required: true)!
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "examiner"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { exam, now in try exam.call(room: room, in: layout, by: stamp.actor, at: now) }
    }

    /// 검사 시작: POST /examinations/{id}/start `{room?}`.
    @Sendable func start(_ req: Request) async throws -> ExaminationResponse {
        let id = try req.id(of: "examination")
        let room = try room(req, required: false)
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "examiner"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { exam, now in try exam.start(room: room, in: layout, by: stamp.actor, at: now) }
    }

    /// 부재: POST /examinations/{id}/no-show, after the layout's number of calls.
    @Sendable func noShow(_ req: Request) async throws -> ExaminationResponse {
        let id = try req.id(of: "examination")
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "examiner"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { exam, now in try exam.markNoShow(in: layout, by: stamp.actor, at: now) }
    }

    /// 되돌리기: POST /examinations/{id}/undo, the last step by its maker within the layout's time.
    @Sendable func undo(_ req: Request) async throws -> ExaminationResponse {
        let id = try req.id(of: "examination")
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "examiner"), trace: req.trace)
        let layout = context.clinic
        return try await change(id, stamp: stamp) { exam, now in try exam.undoCalling(in: layout, by: stamp.actor, at: now) }
    }

    /// The exam rooms' queue: GET /examinations/queue?room=검사실 1, the exams waiting to be
    /// performed (those `room` performs, when one is named), by priority then arrival, each with
    /// its place; and the clinic's exam rooms.
    @Sendable func queue(_ req: Request) async throws -> ExamQueueResponse {
        let room = try queueRoom(req)
        let answer = try await queueSnapshot(room)
        req.auditVisits = answer.items.map(\.receptionId)
        return answer
    }

    private func queueRoom(_ req: Request) throws -> ClinicLayout.ExamRoom? {
        var query = QueryReader(req)
        let name = query.text("room", maxLength: 30)
        try query.check()
        guard let name else { return nil }
        guard let room = context.clinic.examRoom(named: name) else {
            throw ValidationFailure([.init(field: "room", code: .invalidFormat, message: "must be one of the clinic's exam rooms")])
        }
        return room
    }

    func queueSnapshot(_ room: ClinicLayout.ExamRoom?) async throws -> ExamQueueResponse {
        let q = ExaminationModel.query(on: context.store.database)
            .filter(\.$status == Examination.Status.requested.rawValue)
        if let room, !room.exams.isEmpty { q.filter(\.$code ~~ room.exams) }
        let models = try await q.sort(\.$priorityRank).sort(\.$requestedAt).sort(\.$id).limit(500).all()
        let layout = context.clinic
        return ExamQueueResponse(
            room: room?.name, rooms: layout.examRooms.map(\.name), callsBeforeNoShow: layout.callsBeforeNoShow,
            items: try await responses(models))
    }

    private func change(
        _ id: UUID, stamp: EventStamp, _ decide: @escaping @Sendable (inout Examination, Date) throws -> [VisitEvent]
    ) async throws -> ExaminationResponse {
        _ = try await context.change(ExaminationModel.self, id, stamp: stamp, receptionId: \.receptionId, decide)
        streams.changed()
        return try await responses([try await ExaminationModel.require(id, on: context.store.database)])[0]
    }

    /// The answers for `models`, each with its patient's name, age and sex as this service knows them.
    func responses(_ models: [ExaminationModel]) async throws -> [ExaminationResponse] {
        let known = try await KnownPatients.current(models.compactMap(\.patientId), on: context.store.database)
        let today = context.today()
        let now = context.now()
        let layout = context.clinic
        return try models.map { model in
            ExaminationResponse(
                try model.aggregate(), patient: model.patientId.flatMap { known[$0] }, today: today, now: now, layout: layout)
        }
    }

    // MARK: Queries

    @Sendable func show(_ req: Request) async throws -> ExaminationResponse {
        let id = try req.id(of: "examination")
        return try await responses([try await ExaminationModel.require(id, on: context.store.database)])[0]
    }

    /// The examiner's worklist: GET /examinations?status=&diagnosisId=, oldest first.
    @Sendable func list(_ req: Request) async throws -> ListResponse<ExaminationResponse> {
        var query = QueryReader(req)
        let status = query.value("status", as: Examination.Status.self)
        let diagnosisId = query.uuid("diagnosisId")
        let page = query.page()
        try query.check()

        let q = ExaminationModel.query(on: context.store.database)
        if let status { q.filter(\.$status == status.rawValue) }
        if let diagnosisId { q.filter(\.$diagnosisId == diagnosisId) }
        let (models, total, next) = try await q.page(page, sortedBy: \.$requestedAt, descending: false, id: \.$id)
        return ListResponse(
            items: try await responses(models), total: total, page: page, next: next)
    }

    /// The worklist, live: GET /examinations/live, server-sent events, a `worklist` event with
    /// the exams waiting to be performed (as `GET /examinations?status=REQUESTED&limit=200`
    /// answers them) on each change (see `LiveStream`).
    /// With `room`, a `queue` event with that exam room's queue (as `GET /examinations/queue`
    /// answers it) instead.
    @Sendable func live(_ req: Request) async throws -> Response {
        if let room = try queueRoom(req) {
            // The room's exams in the key too: a layout changed meanwhile is another view.
            let view = ([room.name] + room.exams).joined(separator: "\u{1}")
            return try await LiveStream.response(req, streams: streams, event: "queue", view: view) {
                let answer = try await self.queueSnapshot(room)
                return .init(body: try APIJSON.encoder().encode(answer), visits: answer.items.map(\.receptionId))
            }
        }
        return try await LiveStream.response(req, streams: streams, event: "worklist", view: "requested") {
            let page = Page(limit: 200, offset: 0, after: nil)
            let (models, total, next) = try await ExaminationModel.query(on: self.context.store.database)
                .filter(\.$status == Examination.Status.requested.rawValue)
                .page(page, sortedBy: \.$requestedAt, descending: false, id: \.$id)
            let answer = ListResponse(items: try await self.responses(models), total: total, page: page, next: next)
            return .init(body: try APIJSON.encoder().encode(answer), visits: models.map(\.receptionId))
        }
    }

    // MARK: Reactions

    public var handledEventTypes: Set<String> {
        Set([Prescribed.type, DiagnosisRejected.type, DiagnosisCanceled.type, PriorityChanged.type])
            .union(KnownPatients.eventTypes)
    }

    /// The live worklists look again once what changed them is committed.
    public func eventsCommitted() { streams.changed() }

    public func handle(_ envelope: EventEnvelope, on db: any Database) async throws {
        switch envelope.event {
        case .prescribed(let prescription):
            if let facts = prescription.patient { try await KnownPatients.learn(facts, on: db) }
            for order in prescription.orders {
                let exists = try await ExaminationModel.query(on: db).filter(\.$orderId == order.orderId).first() != nil
                guard !exists else { continue }
                let exam = Examination.requested(
                    id: UUID(), order: order, of: prescription, receptionId: envelope.receptionId,
                    at: envelope.occurredAt)
                let model = try ExaminationModel(exam)
                model.patientId = prescription.patient?.patientId
                try await model.insert(on: db)
            }
        case .diagnosisRejected(let e):
            try await cancelPending(of: e.diagnosisId, reason: e.reason, causedBy: envelope, on: db)
        case .diagnosisCanceled(let e):
            try await cancelPending(of: e.diagnosisId, reason: e.reason, causedBy: envelope, on: db)
        case .priorityChanged(let e):
            // The exams still to be performed move in the exam rooms' queue.
            guard let priority = QueuePriority(rawValue: e.priority) else { return }
            let pending = try await ExaminationModel.query(on: db)
                .filter(\.$receptionId == envelope.receptionId)
                .filter(\.$status == Examination.Status.requested.rawValue)
                .all()
            for model in pending {
                var exam = try model.aggregate()
                exam.prioritize(priority)
                guard exam != (try model.aggregate()) else { continue }
                try await model.update(to: exam, on: db)
            }
        case .patientRegistered, .patientUpdated, .patientMerged:
            try await KnownPatients.apply(envelope, on: db)
        default:
            return
        }
    }

    /// Compensation: the consultation closed, so its pending exams are canceled.
    private func cancelPending(
        of diagnosisId: UUID, reason: String, causedBy cause: EventEnvelope, on db: any Database
    )
        async throws
    {
        let pending = try await ExaminationModel.query(on: db)
            .filter(\.$diagnosisId == diagnosisId)
            .filter(\.$status == Examination.Status.requested.rawValue)
            .all()
        let stamp = EventStamp.reacting(to: cause, producer: Self.name)
        let now = context.now()
        for model in pending {
            var exam = try model.aggregate()
            let events = exam.consultationClosed(reason: reason, at: now)
            try await model.update(to: exam, on: db)
            try await Outbox.append(stamp.envelopes(events, receptionId: exam.receptionId, at: now), on: db)
        }
    }
}

/// An examination as the API shows it.
public struct ExaminationResponse: Content, Equatable {
    public var id: UUID
    public var orderId: UUID
    public var diagnosisId: UUID
    public var receptionId: UUID
    /// The registry's patient.
    @Nullable public var patientId: UUID?
    /// The patient's name as the registry has it now; with the age and sex, all the examiner sees of them.
    public var patientName: String
    @Nullable public var sex: String?
    /// 만 나이 today.
    @Nullable public var age: Int?
    public var code: String
    public var name: String
    public var status: String
    @Nullable public var result: String?
    @Nullable public var cancelReason: String?
    public var requestedAt: Date
    @Nullable public var resolvedAt: Date?
    /// The visit's department, 대기 번호 and priority (null for exams ordered before calling).
    @Nullable public var department: String?
    @Nullable public var queueNumber: String?
    public var priority: String
    /// 호출: `WAITING`, `CALLED`, `IN_EXAM` or `NO_SHOW` (an absent patient reads as waiting again
    /// once the clinic's return time has passed), the room, who, how many calls and since when.
    public var queueState: String
    @Nullable public var room: String?
    @Nullable public var calledBy: String?
    public var calls: Int
    @Nullable public var queueSince: Date?
    /// The last step (`CALL`, `RECALL`, `START`, `NO_SHOW`), who can take it back and until when.
    @Nullable public var undoable: UndoableStep?

    init(_ e: Examination, patient: KnownPatients.Patient?, today: String, now: Date, layout: ClinicLayout) {
        id = e.id
        orderId = e.orderId
        diagnosisId = e.diagnosisId
        receptionId = e.receptionId
        patientId = patient?.id
        patientName = (patient?.name).flatMap { $0.isEmpty ? nil : $0 } ?? e.patientName
        sex = patient?.sex
        age = patient?.age(on: today)
        code = e.code
        name = e.name
        status = e.status.rawValue
        result = e.result
        cancelReason = e.cancelReason
        requestedAt = e.requestedAt
        resolvedAt = e.resolvedAt
        department = e.department
        queueNumber = e.queueNumber
        priority = e.priority.rawValue
        let place = e.calling.current(at: now, returnMinutes: layout.noShowReturnMinutes)
        queueState = place.state.rawValue
        room = place.room
        calledBy = place.by
        calls = place.calls
        queueSince = place.since ?? e.requestedAt
        undoable = UndoableStep(e.calling, layout: layout, now: now, open: e.status == .requested)
    }
}

/// The exam rooms' queue: the exams waiting to be performed, in calling order.
public struct ExamQueueResponse: Content, Equatable {
    /// The room asked about (null: every exam room's).
    @Nullable public var room: String?
    /// The clinic's exam rooms.
    public var rooms: [String]
    /// How many calls before a patient may be marked absent.
    public var callsBeforeNoShow: Int
    public var items: [ExaminationResponse]
}
