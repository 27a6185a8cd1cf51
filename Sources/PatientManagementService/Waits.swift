import FluentKit
import Foundation
import PatientManagementDomain
import Prometheus
import ServiceKit
import SharedKernel
import Vapor

/// Waits that raise a hand (GET /patientManagements/waits): each department's open visits
/// against the clinic's alert times (amber, red), the longest wait in each stage, today's wait
/// from 접수 to the first call (average, 90th percentile), and the visits waiting too long.
public struct WaitsResponse: Content, Equatable {
    public struct Longest: Content, Equatable {
        public var stage: String
        public var minutes: Double
    }

    public struct Today: Content, Equatable {
        /// Visits of today a doctor has called.
        public var called: Int
        @Nullable public var averageMinutes: Double?
        @Nullable public var p90Minutes: Double?
    }

    public struct Department: Content, Equatable {
        public var department: String
        /// Visits open now (waiting, called, with the doctor or at exams).
        public var open: Int
        public var amber: Int
        public var red: Int
        public var longest: [Longest]
        public var today: Today
    }

    public struct TooLong: Content, Equatable {
        public var receptionId: UUID
        @Nullable public var queueNumber: String?
        @Nullable public var patientName: String?
        @Nullable public var department: String?
        public var stage: String
        public var minutes: Double
        /// `amber` or `red`.
        public var level: String
    }

    public var asOf: Date
    public var departments: [Department]
    /// Red first, then amber; the longest first.
    public var tooLong: [TooLong]
}

extension WaitsResponse {
    /// The same waits with whole minutes (and the time to the minute): what a live view pushes,
    /// so it changes when a minute passes, not with every second.
    func settled() -> WaitsResponse {
        var settled = self
        settled.asOf = Date(timeIntervalSince1970: (asOf.timeIntervalSince1970 / 60).rounded(.down) * 60)
        settled.tooLong = tooLong.map { var wait = $0; wait.minutes = wait.minutes.rounded(.down); return wait }
        settled.departments = departments.map { department in
            var department = department
            department.longest = department.longest.map { var longest = $0; longest.minutes = longest.minutes.rounded(.down); return longest }
            return department
        }
        return settled
    }
}

/// Where an open visit waits now and since when, as the board has it.
struct OpenWait {
    var visit: PatientManagement
    var stage: WaitStage
    var since: Date
}

extension PatientManagementService {
    /// GET /patientManagements/waits (the desk): audited as a read of the visits it names.
    @Sendable func waits(_ req: Request) async throws -> WaitsResponse {
        let query = QueryReader(req)
        try query.check()
        let (response, named) = try await waitsNow()
        req.auditVisits = named
        return response
    }

    /// The waits, live: GET /patientManagements/waits/live, server-sent events, a `waits` event
    /// with the waits (as `GET /patientManagements/waits` answers them, minutes whole) whenever
    /// they change (see `LiveStream`): a visit crossing an alert time, a minute passing, a call.
    @Sendable func waitsLive(_ req: Request) async throws -> Response {
        let query = QueryReader(req)
        try query.check()
        return try await LiveStream.response(req, streams: boardStreams, event: "waits", view: "waits") {
            let (response, named) = try await self.waitsNow()
            return .init(body: try APIJSON.encoder().encode(response.settled()), visits: named)
        }
    }

    /// Today's visits of the board, each open one with its stage.
    func todaysVisits() async throws -> (all: [PatientManagement], open: [OpenWait], now: Date) {
        let now = context.now()
        let start = try Self.dayStart(context.day(of: now), in: context.timeZone)
        let rows = try await PatientManagementModel.query(on: context.store.database)
            .filter(\.$receivedAt >= start).all()
        let visits = try rows.map { try $0.visit() }
        return (visits, visits.compactMap { Self.openWait($0, layout: context.clinic, now: now) }, now)
    }

    static func openWait(_ visit: PatientManagement, layout: ClinicLayout, now: Date) -> OpenWait? {
        switch visit.status {
        case .received, .examDone:
            let queue = visit.queue.flatMap { $0.stage == "diagnosis" ? $0 : nil }
            switch queue?.state {
            case "CALLED": return OpenWait(visit: visit, stage: .called, since: queue!.since)
            case "IN_CONSULTATION": return OpenWait(visit: visit, stage: .inConsultation, since: queue!.since)
            case "NO_SHOW":
                // Absent: waiting again from when they were marked (or from their return).
                let back = layout.noShowReturnMinutes > 0 ? Double(layout.noShowReturnMinutes * 60) : 0
                return OpenWait(visit: visit, stage: .waiting, since: queue!.since.addingTimeInterval(back))
            default:
                return OpenWait(visit: visit, stage: .waiting, since: visit.statusSince ?? visit.receivedAt ?? now)
            }
        case .examOrdered:
            return OpenWait(visit: visit, stage: .exams, since: visit.examOrderedAt ?? visit.statusSince ?? now)
        default:
            return nil
        }
    }

    func waitsNow() async throws -> (WaitsResponse, [UUID]) {
        let (all, open, now) = try await todaysVisits()
        let layout = context.clinic
        let known = try await KnownPatients.current(open.compactMap(\.visit.patientId), on: context.store.database)
        var tooLong: [WaitsResponse.TooLong] = []
        var departments: [WaitsResponse.Department] = []
        let names = layout.departments.map(\.name)
        let others = Set(all.compactMap(\.department)).subtracting(names).sorted()
        for department in names + others {
            let here = open.filter { $0.visit.department == department }
            var amber = 0, red = 0
            for wait in here {
                let minutes = max(0, now.timeIntervalSince(wait.since) / 60)
                let level = layout.waitLevel(wait.stage, department: department, minutes: minutes)
                guard level != .normal else { continue }
                if level == .red { red += 1 } else { amber += 1 }
                let current = wait.visit.patientId.flatMap { known[$0]?.name }.flatMap { $0.isEmpty ? nil : $0 }
                tooLong.append(
                    .init(
                        receptionId: wait.visit.receptionId, queueNumber: wait.visit.queueNumber,
                        patientName: current ?? wait.visit.patientName, department: department,
                        stage: wait.stage.rawValue, minutes: minutes.rounded(toPlaces: 1), level: level.rawValue))
            }
            let longest = WaitStage.allCases.compactMap { stage -> WaitsResponse.Longest? in
                let oldest = here.filter { $0.stage == stage }.map(\.since).min()
                return oldest.map { .init(stage: stage.rawValue, minutes: max(0, now.timeIntervalSince($0) / 60).rounded(toPlaces: 1)) }
            }
            let waited = all.filter { $0.department == department }.compactMap { visit -> Double? in
                guard let received = visit.receivedAt, let called = visit.firstCalledAt, called >= received else { return nil }
                return called.timeIntervalSince(received) / 60
            }
            departments.append(
                .init(
                    department: department, open: here.count, amber: amber, red: red, longest: longest,
                    today: Self.today(waited)))
        }
        tooLong.sort { ($0.level == "red" ? 0 : 1, -$0.minutes) < ($1.level == "red" ? 0 : 1, -$1.minutes) }
        let response = WaitsResponse(asOf: now, departments: departments, tooLong: tooLong)
        return (response, tooLong.map(\.receptionId))
    }

    /// Average and 90th percentile (nearest rank) of today's waits, in minutes.
    static func today(_ waits: [Double]) -> WaitsResponse.Today {
        guard !waits.isEmpty else { return .init(called: 0, averageMinutes: nil, p90Minutes: nil) }
        let sorted = waits.sorted()
        let rank = Int((0.9 * Double(sorted.count)).rounded(.up)) - 1
        return .init(
            called: sorted.count, averageMinutes: (sorted.reduce(0, +) / Double(sorted.count)).rounded(toPlaces: 1),
            p90Minutes: sorted[max(0, rank)].rounded(toPlaces: 1))
    }
}

/// The longest current wait per department and stage, set when Prometheus scrapes.
struct WaitGauges: Sendable {
    let gauges: [String: [WaitStage: Gauge]]

    init(_ metrics: ServiceMetrics, layout: ClinicLayout) {
        var gauges: [String: [WaitStage: Gauge]] = [:]
        for department in layout.departments {
            for stage in WaitStage.allCases {
                gauges[department.name, default: [:]][stage] = metrics.gauge(
                    "hospital_queue_longest_wait_seconds",
                    help: "The longest current wait of an open visit, by department and stage (0 with none).",
                    labels: [("department", department.name), ("stage", stage.rawValue)])
            }
        }
        self.gauges = gauges
    }

    func set(_ open: [OpenWait], now: Date) {
        for (department, stages) in gauges {
            for (stage, gauge) in stages {
                let oldest = open.filter { $0.visit.department == department && $0.stage == stage }.map(\.since).min()
                gauge.set(oldest.map { max(0, now.timeIntervalSince($0)) } ?? 0)
            }
        }
    }
}

extension Double {
    fileprivate func rounded(toPlaces places: Int) -> Double {
        let scale = (0..<places).reduce(1.0) { value, _ in value * 10 }
        return (self * scale).rounded() / scale
    }
}
