import FluentKit
import Foundation
import PatientManagementDomain
import ServiceKit
import SharedKernel
import Vapor

/// The waiting-room display (대기실 현황판) of a department: who is being called to which room
/// (진료실, or 검사실 for an exam), and the next numbers. Names are masked (홍*동); no chart number, birth date or resident
/// number is ever in it.
public struct DisplayResponse: Content, Equatable {
    public struct Called: Content, Equatable {
        public var queueNumber: String?
        /// Masked: 홍*동.
        public var name: String
        public var room: String?
        public var calls: Int
        public var since: Date
    }

    public struct Waiting: Content, Equatable {
        public var queueNumber: String?
        public var name: String
    }

    public var department: String
    /// Called and not yet in the room, the newest call first.
    public var calling: [Called]
    /// The next to be called, in calling order (at most five).
    public var next: [Waiting]
    /// How many wait in all.
    public var waiting: Int
}

extension PatientManagementService {
    public func serverStopping() async {
        streams.end()
        boardStreams.end()
    }

    /// The display: GET /displays/{department}.
    @Sendable func display(_ req: Request) async throws -> DisplayResponse {
        let department = try displayDepartment(req)
        let (display, visits) = try await displaySnapshot(of: department)
        req.auditVisits = visits
        return display
    }

    private func displayDepartment(_ req: Request) throws -> String {
        guard let department = req.parameters.get("department"), context.clinic.department(named: department) != nil
        else {
            throw AppError.notFound(resource: "department", id: req.parameters.get("department") ?? "")
        }
        return department
    }

    /// The display as the board has it now, and the visits it shows.
    func displaySnapshot(of department: String) async throws -> (DisplayResponse, [UUID]) {
        let now = context.now()
        let db = context.store.database
        let day = context.day(of: now)
        let start = try Self.dayStart(day, in: context.timeZone)
        let rows = try await PatientManagementModel.query(on: db)
            .filter(\.$receivedAt >= start)
            .filter(
                \.$status
                    ~~ [
                        PatientManagement.Status.received.rawValue, PatientManagement.Status.examDone.rawValue,
                        PatientManagement.Status.examOrdered.rawValue,
                    ]
            )
            .all()
        let visits = try rows.map { try $0.visit() }.filter { $0.department == department }
        let known = try await KnownPatients.current(visits.compactMap(\.patientId), on: db)
        func name(_ visit: PatientManagement) -> String {
            let current = visit.patientId.flatMap { known[$0]?.name }.flatMap { $0.isEmpty ? nil : $0 }
            return NameMask.masked(current ?? visit.patientName ?? "")
        }
        let layout = context.clinic
        func state(_ queue: PatientManagement.QueuePlace?) -> String {
            guard let queue else { return "WAITING" }
            if queue.state == "NO_SHOW", layout.noShowReturnMinutes > 0,
                now.timeIntervalSince(queue.since) >= Double(layout.noShowReturnMinutes * 60)
            {
                return "WAITING"
            }
            return queue.state
        }
        // Called to a consultation room (visits waiting for the doctor), or to an exam room (an
        // exam still to be performed); the newest call first.
        let forDoctor = visits.filter { $0.status != .examOrdered }
        let calls: [(visit: PatientManagement, place: PatientManagement.QueuePlace)] =
            forDoctor.compactMap { visit in visit.queue.flatMap { state($0) == "CALLED" ? (visit, $0) : nil } }
            + visits.filter { $0.status == .examOrdered }.flatMap { visit in
                visit.orders.compactMap { order in
                    order.place.flatMap { order.status == .requested && state($0) == "CALLED" ? (visit, $0) : nil }
                }
            }
        let calling = calls.sorted { $0.place.since > $1.place.since }
        let waiting = forDoctor.filter { state($0.queue) == "WAITING" }
            .sorted {
                (QueuePriority(rawValue: $0.priority ?? "")?.rank ?? 2, $0.receivedAt ?? .distantPast, $0.receptionId.uuidString)
                    < (QueuePriority(rawValue: $1.priority ?? "")?.rank ?? 2, $1.receivedAt ?? .distantPast, $1.receptionId.uuidString)
            }
        let display = DisplayResponse(
            department: department,
            calling: calling.map {
                DisplayResponse.Called(
                    queueNumber: $0.visit.queueNumber, name: name($0.visit), room: $0.place.room, calls: $0.place.calls,
                    since: $0.place.since)
            },
            next: waiting.prefix(5).map { DisplayResponse.Waiting(queueNumber: $0.queueNumber, name: name($0)) },
            waiting: waiting.count)
        var shown = calling.map(\.visit.receptionId) + waiting.prefix(5).map(\.receptionId)
        var seen = Set<UUID>()
        shown = shown.filter { seen.insert($0).inserted }
        return (display, shown)
    }

    static func dayStart(_ day: String, in zone: TimeZone) throws -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = day.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3,
            let date = calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2]))
        else { throw AppError.notReady("the hospital's date cannot be read: \(day)") }
        return date
    }

    /// The display, live: GET /displays/{department}/events, server-sent events. Each `display`
    /// event carries the whole display (JSON) and, as its id, a digest of it: a reconnect that
    /// sends the last id (`Last-Event-ID`) gets nothing until the display differs from it.
    /// A comment every 5 seconds keeps proxies from closing an idle stream.
    @Sendable func displayEvents(_ req: Request) async throws -> Response {
        let department = try displayDepartment(req)
        return try await LiveStream.response(req, streams: streams, event: "display", view: department) {
            let (display, visits) = try await self.displaySnapshot(of: department)
            return .init(body: try APIJSON.encoder().encode(display), visits: visits)
        }
    }

}
