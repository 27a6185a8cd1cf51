import Contracts
import FluentKit
import Foundation
import Messaging
import PatientManagementDomain
import Prometheus
import SQLKit
import ServiceKit
import SharedKernel
import Storage
import Vapor

/// The desk's board (CQRS read model): every visit's current status and step times, built from
/// the events alone, never from the other services' databases.
public struct PatientManagementService: HospitalService {
    public static let name = "patient-management"
    public static let defaultPort = 8085
    public static let routePrefixes = ["patientManagements", "displays"]
    /// The waiting-room display's live stream goes through the gateway as it comes.
    public static let streamedRoutes = [
        StreamedRoute(.GET, "displays/:department/events"), StreamedRoute(.GET, "patientManagements/live"),
        StreamedRoute(.GET, "patientManagements/waits/live"),
    ]
    public static let visitTables = ["patient_managements"]
    public static var migrations: [any Migration] {
        MessagingMigrations.all + [
            PatientManagementMigrations.CreatePatientManagements(),
            PatientManagementMigrations.AddPatientName(),
            CreateIndexes(
                name: "P002_BoardIndexes",
                [
                    .init("patient_managements_received", on: "patient_managements", ["received_at", "reception_id"]),
                    .init(
                        "patient_managements_status_received", on: "patient_managements",
                        ["status", "received_at", "reception_id"]),
                    .init("patient_managements_name", on: "patient_managements", ["patient_name", "received_at"]),
                ]),
            KnownPatients.Create(name: "P004_KnownPatients"),
            PatientManagementMigrations.AddPatient(),
        ]
    }

    let context: ServiceContext
    let visits: VisitMetrics?
    /// The open waiting-room displays (4 per display account) and live boards (16 per user: a
    /// desk account may be shared by a few receptionists' screens).
    let streams = LiveStreams(maxOpen: 200, maxPerUser: 4)
    let boardStreams = LiveStreams(maxOpen: 200, maxPerUser: 16)

    public init(context: ServiceContext) {
        self.context = context
        visits = context.metrics.map { VisitMetrics($0, layout: context.clinic) }
        if let metrics = context.metrics {
            let gauges = WaitGauges(metrics, layout: context.clinic)
            let board = self
            metrics.onScrape { _ in
                guard let (_, open, now) = try? await board.todaysVisits() else { return }
                gauges.set(open, now: now)
            }
        }
    }

    public func registerRoutes(on routes: any RoutesBuilder) {
        let board = routes.grouped("patientManagements")
        board.get(use: list)
        board.get("waits", use: waits)
        board.get("waits", "live", use: waitsLive)
        board.get("live", use: live)
        board.get(":receptionId", use: show)
        routes.post("admin", "patientManagements", "rebuild", use: rebuildRoute)
        routes.get("displays", ":department", use: display)
        routes.get("displays", ":department", "events", use: displayEvents)
    }

    // MARK: Queries

    @Sendable func show(_ req: Request) async throws -> PatientManagementResponse {
        let id = try req.id("receptionId", of: "visit")
        guard let model = try await PatientManagementModel.byID(id, on: context.store.database) else {
            throw AppError.notFound(resource: "visit", id: id.uuidString)
        }
        return try await responses([model])[0]
    }

    /// The answers for `models`, each with its patient as this service knows them now.
    func responses(_ models: [PatientManagementModel]) async throws -> [PatientManagementResponse] {
        let visits = try models.map { try $0.visit() }
        let known = try await KnownPatients.current(visits.compactMap(\.patientId), on: context.store.database)
        let today = context.today()
        let now = context.now()
        let layout = context.clinic
        return visits.map { visit in
            var response = PatientManagementResponse(visit, patient: visit.patientId.flatMap { known[$0] }, today: today)
            if let wait = Self.openWait(visit, layout: layout, now: now) {
                let minutes = max(0, now.timeIntervalSince(wait.since) / 60)
                response.wait = .init(
                    stage: wait.stage.rawValue, since: wait.since,
                    level: layout.waitLevel(wait.stage, department: visit.department, minutes: minutes).rawValue)
            }
            return response
        }
    }

    /// The board: GET /patientManagements?status=&date=&name=, newest first; `name` matches the
    /// start of the patient's name (김 finds 김민수).
    @Sendable func list(_ req: Request) async throws -> ListResponse<PatientManagementResponse> {
        try await boardPage(try BoardFilter(req, timeZone: context.timeZone))
    }

    /// The board, live: GET /patientManagements/live with the list's parameters, server-sent
    /// events, a `board` event with the whole page on each change (see `LiveStream`).
    @Sendable func live(_ req: Request) async throws -> Response {
        let filter = try BoardFilter(req, timeZone: context.timeZone)
        return try await LiveStream.response(req, streams: boardStreams, event: "board", view: filter.view) {
            let page = try await self.boardPage(filter)
            return .init(body: try APIJSON.encoder().encode(page), visits: page.items.map(\.receptionId))
        }
    }

    struct BoardFilter: Sendable {
        var status: PatientManagement.Status?
        var day: Range<Date>?
        var name: String?
        var page: ServiceKit.Page

        init(_ req: Request, timeZone: TimeZone) throws {
            var query = QueryReader(req)
            status = query.value("status", as: PatientManagement.Status.self)
            day = query.day("date", in: timeZone)
            name = query.text("name", maxLength: 100)
            page = query.page()
            try query.check()
        }

        /// What it shows, as a key: boards with the same filter share their frames.
        var view: String {
            [
                status?.rawValue ?? "", day.map { "\($0.lowerBound.timeIntervalSinceReferenceDate)" } ?? "", name ?? "",
                "\(page.limit)", "\(page.offset)", page.after?.token ?? "",
            ].joined(separator: "\u{1}")
        }
    }

    func boardPage(_ filter: BoardFilter) async throws -> ListResponse<PatientManagementResponse> {
        let q = PatientManagementModel.query(on: context.store.database)
        if let status = filter.status { q.filter(\.$status == status.rawValue) }
        if let day = filter.day { q.filter(\.$receivedAt >= day.lowerBound).filter(\.$receivedAt < day.upperBound) }
        // A prefix as a range, so the index serves it and no character of the input is a wildcard.
        if let name = filter.name { q.filter(\.$patientName >= name).filter(\.$patientName < name + "\u{10FFFF}") }
        let (models, total, next) = try await q.page(filter.page, sortedBy: \.$receivedAt, descending: true, id: \.$id)
        return ListResponse(
            items: try await responses(models), total: total, page: filter.page, next: next)
    }

    // MARK: Projection

    /// Every visit's event, and the registry's corrections and merges (for the names it shows).
    public var handledEventTypes: Set<String> { Set(VisitEvent.allTypes).subtracting([PatientRegistered.type]) }

    public func handle(_ envelope: EventEnvelope, on db: any Database) async throws {
        // The registry's events name a patient, not a visit: they update what the board shows.
        if try await KnownPatients.apply(envelope, on: db) {
            if case .patientUpdated(let e) = envelope.event {
                // The name column the desk searches by follows the registry.
                try await db.sql.raw(
                    "UPDATE patient_managements SET patient_name = \(bind: e.patient.name) WHERE patient_id = \(bind: e.patient.patientId)"
                ).run()
            }
            return
        }
        if case .treatmentReceived(let e) = envelope.event, let facts = e.patient {
            try await KnownPatients.learn(facts, on: db)
        }
        if context.store.engine.kind == .postgresql {
            // Two applies to one visit (a dead-letter replay beside the consumer) must not
            // overwrite each other: the second waits for the first's row.
            try await db.sql.raw(
                "SELECT reception_id FROM patient_managements WHERE reception_id = \(bind: envelope.receptionId) FOR UPDATE"
            ).run()
        }
        let visit: PatientManagement
        if let model = try await PatientManagementModel.byID(envelope.receptionId, on: db) {
            var known = try model.visit()
            known.apply(envelope)
            try model.copy(known)
            try await model.saveChanges(on: db)
            visit = known
        } else {
            var new = PatientManagement(receptionId: envelope.receptionId, firstEventAt: envelope.occurredAt)
            new.apply(envelope)
            try await PatientManagementModel(new).insert(on: db)
            visit = new
        }
        visits?.observe(envelope, visit)
    }

    /// The live displays and boards look again once what changed them is committed.
    public func eventsCommitted() {
        streams.changed()
        boardStreams.changed()
    }

    // MARK: Rebuild

    public struct RebuildReport: Content, Equatable {
        public var events: Int
        public var visits: Int
    }

    @Sendable func rebuildRoute(_ req: Request) async throws -> RebuildReport {
        try await rebuild()
    }

    /// Rebuilds the board from the whole event history, in one transaction that first takes the
    /// database's write lock (the DELETE) and only then reads the history: an event the consumer
    /// applied before is in the history; one it applies after finds the new inbox. Nothing is
    /// lost or applied twice while the system keeps running.
    ///
    /// The history streams through a chunk at a time (`chunkSize` events): memory holds one chunk
    /// and the visits it touches, whatever the length of the history.
    public func rebuild(chunkSize: Int = 1000) async throws -> RebuildReport {
        guard let history = context.history else {
            throw AppError.notReady("This service has no event history to rebuild from.")
        }
        let report = try await context.store.write { db in
            if context.store.engine.kind == .postgresql {
                // Readers go on; writers (the consumer) wait until the new rows are committed, then
                // see them. Without it, a consumer's update to a row deleted here would do nothing.
                try await db.sql.raw("LOCK TABLE inbox, patient_managements IN EXCLUSIVE MODE").run()
            }
            try await PatientManagementModel.query(on: db).delete()
            try await InboxEntry.query(on: db).delete()
            let fold = StreamingFold(db: db, chunkSize: max(1, chunkSize))
            try await history.replay(topic: Topics.visitEvents) { message in
                // Undecodable messages are the consumer's dead letters; a rebuild skips them too.
                guard let envelope = try? EventCoding.decode(message.value) else { return }
                try await fold.add(envelope)
            }
            try await fold.flush()
            return fold.report
        }
        context.logger.notice(
            "read model rebuilt", metadata: ["events": "\(report.events)", "visits": "\(report.visits)"])
        return report
    }
}

/// Folds the history into the board's rows a chunk of events at a time, inside the rebuild's
/// transaction. Each event id counts once, within a chunk and across chunks (the inbox written so
/// far remembers the earlier ones).
private final class StreamingFold: @unchecked Sendable {
    private let db: any Database
    private let chunkSize: Int
    private var chunk: [EventEnvelope] = []
    private(set) var report = PatientManagementService.RebuildReport(events: 0, visits: 0)

    init(db: any Database, chunkSize: Int) {
        self.db = db
        self.chunkSize = chunkSize
        chunk.reserveCapacity(chunkSize)
    }

    // Called serially by the history replay.
    func add(_ envelope: EventEnvelope) async throws {
        guard !envelope.event.isRegistryEvent else { return }  // a patient's, not a visit's
        chunk.append(envelope)
        if chunk.count >= chunkSize { try await flush() }
    }

    func flush() async throws {
        guard !chunk.isEmpty else { return }
        defer { chunk.removeAll(keepingCapacity: true) }
        var ids = Set<UUID>()
        let unique = chunk.filter { ids.insert($0.eventId).inserted }
        let applied = try await InboxEntry.query(on: db).filter(\.$id ~~ Array(ids)).all(\.$id)
        let seenBefore = Set(applied)
        let fresh = unique.filter { !seenBefore.contains($0.eventId) }
        guard !fresh.isEmpty else { return }

        let visitIds = Array(Set(fresh.map(\.receptionId)))
        var rows: [UUID: PatientManagementModel] = [:]
        var visits: [UUID: PatientManagement] = [:]
        for row in try await PatientManagementModel.query(on: db).filter(\.$id ~~ visitIds).all() {
            rows[row.id!] = row
            visits[row.id!] = try row.visit()
        }
        for envelope in fresh {
            visits[
                envelope.receptionId,
                default: PatientManagement(receptionId: envelope.receptionId, firstEventAt: envelope.occurredAt)
            ]
            .apply(envelope)
        }

        var created: [PatientManagementModel] = []
        for (id, visit) in visits {
            if let row = rows[id] {
                try row.copy(visit)
                try await row.saveChanges(on: db)
            } else {
                created.append(try PatientManagementModel(visit))
            }
        }
        try await created.insert(on: db)
        let now = Date()
        try await fresh.map { InboxEntry(eventId: $0.eventId, eventType: $0.type, handledAt: now) }.insert(on: db)
        report.events += fresh.count
        report.visits += created.count
    }
}

/// A visit on the desk's board, as the API shows it.
public struct PatientManagementResponse: Content, Equatable {
    public struct Order: Content, Equatable {
        public var orderId: UUID
        @Nullable public var code: String?
        @Nullable public var name: String?
        public var status: String
        @Nullable public var orderedAt: Date?
        @Nullable public var resolvedAt: Date?
        /// The exam rooms' queue (`WAITING`, `CALLED`, `IN_EXAM`, `NO_SHOW`; null before any
        /// call) and the exam room.
        @Nullable public var queueState: String?
        @Nullable public var room: String?
    }

    public var receptionId: UUID
    /// The registry's patient.
    @Nullable public var patientId: UUID?
    /// As the registry has it now.
    @Nullable public var patientName: String?
    @Nullable public var sex: String?
    /// 만 나이 today.
    @Nullable public var age: Int?
    @Nullable public var department: String?
    @Nullable public var diagnosisId: UUID?
    public var status: String
    @Nullable public var statusSince: Date?
    @Nullable public var receivedAt: Date?
    @Nullable public var examOrderedAt: Date?
    @Nullable public var examDoneAt: Date?
    @Nullable public var completedAt: Date?
    @Nullable public var rejectedAt: Date?
    @Nullable public var canceledAt: Date?
    @Nullable public var closingReason: String?
    public var orders: [Order]
    public var updatedAt: Date
    /// 대기 번호 (`A-012`) and the desk's priority (`EMERGENCY`, `CARE`, `NORMAL`).
    @Nullable public var queueNumber: String?
    @Nullable public var priority: String?
    /// 호출: `WAITING`, `CALLED`, `IN_CONSULTATION` or `NO_SHOW` in the doctor's queue (null
    /// until a doctor first acts on it), the room, how many calls, and since when.
    @Nullable public var queueState: String?
    @Nullable public var room: String?
    @Nullable public var calls: Int?
    @Nullable public var queueSince: Date?
    /// An open visit's wait: its stage, since when, and how that stands against the clinic's
    /// alerts (`normal`, `amber`, `red`); null once the visit is closed.
    @Nullable public var wait: Wait?

    public struct Wait: Content, Equatable {
        public var stage: String
        public var since: Date
        public var level: String
    }

    init(_ v: PatientManagement, patient: KnownPatients.Patient?, today: String) {
        receptionId = v.receptionId
        patientId = v.patientId
        patientName = (patient?.name).flatMap { $0.isEmpty ? nil : $0 } ?? v.patientName
        sex = patient?.sex
        age = patient?.age(on: today)
        department = v.department
        queueNumber = v.queueNumber
        priority = v.priority
        queueState = v.queue?.state
        room = v.queue?.room
        calls = v.queue?.calls
        queueSince = v.queue?.since
        diagnosisId = v.diagnosisId
        status = v.status.rawValue
        statusSince = v.statusSince
        receivedAt = v.receivedAt
        examOrderedAt = v.examOrderedAt
        examDoneAt = v.examDoneAt
        completedAt = v.completedAt
        rejectedAt = v.rejectedAt
        // A desk cancellation the doctor's service overruled is not part of the visit's story.
        canceledAt = v.status == .canceled ? v.canceledAt : nil
        closingReason = v.closingReason
        orders = v.orders.map {
            Order(
                orderId: $0.orderId, code: $0.code, name: $0.name, status: $0.status.rawValue, orderedAt: $0.orderedAt,
                resolvedAt: $0.resolvedAt, queueState: $0.place?.state, room: $0.place?.room)
        }
        updatedAt = v.lastEventAt
    }
}

/// The visit funnel and how long patients wait, as the board sees the events: visits
/// registered, completed, rejected and canceled, and the time between steps. Counted when the
/// board applies an event (a batch retried after a failure may count its events again).
struct VisitMetrics: Sendable {
    let registered: Counter
    let completed: Counter
    let rejected: Counter
    let canceled: Counter
    let toPrescription: DurationHistogram
    let toExam: DurationHistogram
    let examToOutcome: DurationHistogram
    let toOutcome: DurationHistogram
    /// 접수 to the first call, by department (the clinic's; others are not labelled).
    let toCall: [String: DurationHistogram]

    init(_ metrics: ServiceMetrics, layout: ClinicLayout) {
        func visits(_ event: String) -> Counter {
            metrics.counter(
                "hospital_visits_total", help: "Visits by what happened to them: registered, completed, rejected, canceled.",
                labels: [("event", event)])
        }
        func wait(_ step: String) -> DurationHistogram {
            metrics.histogram(
                "hospital_visit_wait_seconds", help: "How long a patient waited between two steps of the visit.",
                labels: [("step", step)])
        }
        registered = visits("registered")
        completed = visits("completed")
        rejected = visits("rejected")
        canceled = visits("canceled")
        toPrescription = wait("registration_to_prescription")
        toExam = wait("prescription_to_exam")
        examToOutcome = wait("exam_to_outcome")
        toOutcome = wait("registration_to_outcome")
        toCall = Dictionary(
            uniqueKeysWithValues: layout.departments.map { department in
                (
                    department.name,
                    metrics.histogram(
                        "hospital_queue_wait_seconds", help: "How long a patient waited from 접수 to the doctor's first call.",
                        labels: [("department", department.name)])
                )
            })
    }

    func observe(_ envelope: EventEnvelope, _ visit: PatientManagement) {
        let at = envelope.occurredAt
        func record(_ histogram: DurationHistogram, since start: Date?) {
            guard let start, at >= start else { return }
            histogram.recordNanoseconds(Int64(at.timeIntervalSince(start) * 1e9))
        }
        switch envelope.event {
        case .treatmentReceived:
            registered.increment()
        case .prescribed:
            record(toPrescription, since: visit.receivedAt)
        case .examinationCompleted(let e):
            record(toExam, since: visit.orders.first { $0.orderId == e.orderId }?.orderedAt)
        case .diagnosisCompleted:
            completed.increment()
            record(examToOutcome, since: visit.orders.compactMap(\.resolvedAt).max())
            record(toOutcome, since: visit.receivedAt)
        case .diagnosisRejected:
            rejected.increment()
            record(toOutcome, since: visit.receivedAt)
        case .treatmentCanceled:
            canceled.increment()
        case .queueUpdated:
            // The first call (this event set it): the wait the clinic measures.
            if visit.firstCalledAt == at, let department = visit.department, let histogram = toCall[department] {
                record(histogram, since: visit.receivedAt)
            }
        case .examinationCanceled, .diagnosisCanceled, .patientRegistered, .patientUpdated, .patientMerged,
            .priorityChanged:
            break
        }
    }
}
