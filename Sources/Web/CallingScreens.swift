import Foundation
import ServiceKit
import SharedKernel
import Vapor

/// 호출 on the doctor's screen: the doctor says which room they work in (remembered by this
/// browser), sees their department's queue in calling order and calls, calls again, begins,
/// marks absent or takes back a wrong click, each a button on the patient's row.
extension WebScreens {
    /// The cookie that remembers the doctor's room on this browser.
    static let roomCookie = "room"

    /// The room this browser's doctor works in, if they chose one the clinic still has.
    func chosenRoom(_ req: Request) -> (room: String, department: ClinicLayout.Department)? {
        guard let raw = req.cookies[Self.roomCookie]?.string.removingPercentEncoding,
            let department = clinic.department(ofRoom: raw)
        else { return nil }
        return (raw, department)
    }

    /// 진료실 선택: POST /doctor/room `room`, remembered for a year; an empty choice forgets it.
    @Sendable func chooseRoom(_ req: Request) async throws -> Response {
        let room = req.formValue("room") ?? ""
        let response = req.redirect(to: "/doctor", redirectType: .normal)
        if room.isEmpty {
            response.cookies[Self.roomCookie] = HTTPCookies.Value(string: "", maxAge: 0, path: "/", isHTTPOnly: true, sameSite: .strict)
            return response
        }
        guard clinic.department(ofRoom: room) != nil else {
            return req.redirect(to: "/doctor?error=notFound", redirectType: .normal)
        }
        response.cookies[Self.roomCookie] = HTTPCookies.Value(
            string: room.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "", maxAge: 365 * 86_400,
            path: "/", isSecure: req.url.scheme == "https", isHTTPOnly: true, sameSite: .strict)
        return response
    }

    /// The room picker: every room, by department, the chosen one selected.
    func roomChoices(_ chosen: String?, _ screen: Screen) -> [[String: Any]] {
        clinic.departments.map { department in
            [
                "department": Catalogue.department(department.name, screen.language),
                "rooms": department.rooms.map { ["name": $0, "selected": $0 == chosen] as [String: Any] },
            ] as [String: Any]
        }
    }

    /// The department's queue (waiting, or back from exams, by priority then arrival), then its
    /// visits whose exams are under way; each row with the buttons its place allows.
    func queueRows(
        _ req: Request, _ screen: Screen, room: String, department: ClinicLayout.Department
    ) async throws -> [[String: Any]] {
        let queue: QueueDTO = try await api(req).get("/diagnoses/queue?department=\(Self.queryValue(department.name))")
        let charts = await chartNumbers(req, of: (queue.items + (queue.atExams ?? [])).map(\.patientId))
        return queueRowContexts(queue, charts: charts, screen)
    }

    static func queryValue(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }

    /// The doctor's worklist rows, live: GET /doctor/worklist/events, for the chosen room's
    /// department, or without a room every department's open consultations (see `liveRegion`).
    @Sendable func doctorWorklistEvents(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let charts = ChartNumberCache()
        guard let chosen = chosenRoom(req) else {
            return try await liveRegion(req, path: "/diagnoses/live") { json in
                let open = try APIJSON.decoder().decode(ListOf<DiagnosisDTO>.self, from: json).items
                let known = await charts.numbers(for: open.map(\.patientId)) { missing in
                    await self.chartNumbers(req, of: missing)
                }
                let context: [String: Any] = [
                    "diagnoses": self.openWorklistRows(open, charts: known, screen), "t": screen.language.strings,
                    "csrf": screen.csrf,
                ]
                return self.library.render(context, withTemplate: "worklistRows") ?? ""
            }
        }
        return try await liveRegion(req, path: "/diagnoses/queue/live?department=\(Self.queryValue(chosen.department.name))") { json in
            let queue = try APIJSON.decoder().decode(QueueDTO.self, from: json)
            let known = await charts.numbers(for: (queue.items + (queue.atExams ?? [])).map(\.patientId)) { missing in
                await self.chartNumbers(req, of: missing)
            }
            let context: [String: Any] = [
                "diagnoses": self.queueRowContexts(queue, charts: known, screen), "t": screen.language.strings,
                "csrf": screen.csrf, "room": chosen.room,
            ]
            return self.library.render(context, withTemplate: "worklistRows") ?? ""
        }
    }

    func queueRowContexts(_ queue: QueueDTO, charts: [UUID: String], _ screen: Screen) -> [[String: Any]] {
        let me = screen.user?.principal.username
        return (queue.items + (queue.atExams ?? [])).map { d in
            let state = d.status == "EXAM_ORDERED" ? nil : d.queueState
            var row: [String: Any] = [
                "id": d.id.uuidString, "patientName": d.patientName, "queueNumber": d.queueNumber ?? "",
                "sexAge": d.sex.map { _ in Self.sexAge(d.sex, d.age, screen) } ?? "",
                "symptom": d.symptom ?? "", "status": d.status,
                "statusLabel": Self.placeLabel(d, state, screen),
                "elapsed": screen.elapsed(since: d.queueSince ?? d.createdAt),
            ]
            // Absent rather than empty: a template section shows for an empty string.
            if let chart = d.patientId.flatMap({ charts[$0] }) { row["chartNumber"] = chart }
            if let state { row["queueState"] = state }
            if let priority = d.priority, priority != "NORMAL" {
                row["priority"] = priority
                row["priorityLabel"] = screen.t("priority.\(priority)")
            }
            switch state {
            case "WAITING", "NO_SHOW": row["canCall"] = true
            case "CALLED":
                row["canRecall"] = true
                row["canStart"] = true
                row["canMarkAbsent"] = (d.calls ?? 0) >= queue.callsBeforeNoShow
            case "IN_CONSULTATION": row["inConsultation"] = true
            default: break
            }
            if let undoable = d.undoable, undoable.by == me {
                row["canUndo"] = true
                row["undoLabel"] = String(format: screen.t("undoStep"), screen.t("step.\(undoable.transition)"))
            }
            return row
        }
    }

    /// 대기 · 호출 2회 (진료실 2, kim) · 진료 중 · 부재, or the visit's status while its exams run.
    static func placeLabel(_ d: DiagnosisDTO, _ state: String?, _ screen: Screen) -> String {
        let status = Strings.diagnosisStatus(d.status, screen.language)
        switch state {
        case "CALLED":
            return String(format: screen.t("place.called"), d.calls ?? 1, d.room ?? "", d.calledBy ?? "")
        case "IN_CONSULTATION":
            return String(format: screen.t("place.inConsultation"), d.room ?? "", d.calledBy ?? "")
        case "NO_SHOW":
            return screen.t("place.noShow")
        case "WAITING" where d.status == "EXAM_DONE":
            return status
        case "WAITING":
            return screen.t("place.waiting")
        default:
            return status
        }
    }

    // MARK: Commands

    /// 호출 / 재호출 to the chosen room.
    @Sendable func callPatient(_ req: Request) async throws -> Response {
        guard let chosen = chosenRoom(req) else { return req.redirect(to: "/doctor?error=chooseRoom", redirectType: .normal) }
        return await queueCommand(req, path: "call", body: ["room": chosen.room], notice: "called")
    }

    /// 진료 시작: in the chosen room; the visit's page opens.
    @Sendable func startConsultation(_ req: Request) async throws -> Response {
        guard let chosen = chosenRoom(req) else { return req.redirect(to: "/doctor?error=chooseRoom", redirectType: .normal) }
        return await queueCommand(req, path: "start", body: ["room": chosen.room], notice: "started", openVisit: true)
    }

    /// 부재.
    @Sendable func markAbsent(_ req: Request) async throws -> Response {
        await queueCommand(req, path: "no-show", body: [:], notice: "markedAbsent")
    }

    /// 되돌리기: the doctor's own last step, within the clinic's time.
    @Sendable func undoStep(_ req: Request) async throws -> Response {
        await queueCommand(req, path: "undo", body: [:], notice: "undone")
    }

    /// Sends a queue step; a refusal is said from the visit's fresh place (who called it, where),
    /// in the screen's words rather than the service's English.
    private func queueCommand(
        _ req: Request, path: String, body: [String: Any], notice: String, openVisit: Bool = false
    ) async -> Response {
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:))?.uuidString else {
            return req.redirect(to: "/doctor?error=notFound", redirectType: .normal)
        }
        let screen = Screen(req, timeZone: timeZone)
        do {
            let _: DiagnosisDTO = try await api(req).post("/diagnoses/\(id)/\(path)", body)
            let next = openVisit ? "/doctor/diagnoses/\(id)?notice=\(notice)" : "/doctor?notice=\(notice)"
            return req.redirect(to: next, redirectType: .normal)
        } catch API.Failure.problem(let problem) where problem.status == 409 {
            let fresh: DiagnosisDTO? = try? await api(req).get("/diagnoses/\(id)")
            let message = fresh.map { Self.refusalSentence(path, $0, screen) } ?? screen.sentence(for: API.Failure.problem(problem))
            return await doctorPage(req, screen, message: message, status: .conflict)
        } catch {
            if let refused = refusal(req, error, kind: "diagnosis", page: "/doctor", list: "/doctor") { return refused }
            return await doctorPage(req, screen, message: screen.sentence(for: error), status: .unprocessableEntity)
        }
    }

    /// Why a step was refused, from where the visit now stands.
    static func refusalSentence(_ step: String, _ d: DiagnosisDTO, _ screen: Screen) -> String {
        let who = d.calledBy ?? "", room = d.room ?? ""
        if !["WAITING", "EXAM_DONE"].contains(d.status) {
            return String(format: screen.t("error.conflict"), Strings.diagnosisStatus(d.status, screen.language))
        }
        switch (step, d.queueState) {
        case ("call", "CALLED"): return String(format: screen.t("refused.calledBy"), who, room)
        case (_, "IN_CONSULTATION"): return String(format: screen.t("refused.inConsultation"), who, room)
        case ("start", "CALLED"): return String(format: screen.t("refused.calledBy"), who, room)
        case ("no-show", "CALLED"): return String(format: screen.t("refused.tooFewCalls"), d.calls ?? 0)
        case ("undo", _): return screen.t("refused.undo")
        default: return screen.t("refused.moved")
        }
    }
}
