import Foundation
import ServiceKit
import SharedKernel
import Vapor

/// 검사실 호출 on the examiner's screen: the examiner says which exam room they work in
/// (remembered by this browser), sees the exams that room performs in calling order, and calls,
/// calls again, begins, marks absent or takes back a wrong click, as the doctor does.
extension WebScreens {
    /// The cookie that remembers the examiner's exam room on this browser.
    static let examRoomCookie = "examRoom"

    /// The exam room this browser's examiner works in, if they chose one the clinic still has.
    func chosenExamRoom(_ req: Request) -> ClinicLayout.ExamRoom? {
        guard let raw = req.cookies[Self.examRoomCookie]?.string.removingPercentEncoding else { return nil }
        return clinic.examRoom(named: raw)
    }

    /// 검사실 선택: POST /examiner/room `room`, remembered for a year; an empty choice forgets it.
    @Sendable func chooseExamRoom(_ req: Request) async throws -> Response {
        let room = req.formValue("room") ?? ""
        let response = req.redirect(to: "/examiner", redirectType: .normal)
        if room.isEmpty {
            response.cookies[Self.examRoomCookie] = HTTPCookies.Value(
                string: "", maxAge: 0, path: "/", isHTTPOnly: true, sameSite: .strict)
            return response
        }
        guard clinic.examRoom(named: room) != nil else {
            return req.redirect(to: "/examiner?error=notFound", redirectType: .normal)
        }
        response.cookies[Self.examRoomCookie] = HTTPCookies.Value(
            string: Self.queryValue(room), maxAge: 365 * 86_400, path: "/", isSecure: req.url.scheme == "https",
            isHTTPOnly: true, sameSite: .strict)
        return response
    }

    /// The exams the page lists: the chosen room's queue, or every exam waiting.
    func examsListed(_ req: Request) async throws -> (exams: [ExamDTO], callsBeforeNoShow: Int?) {
        if let room = chosenExamRoom(req) {
            let queue: ExamQueueDTO = try await api(req).get("/examinations/queue?room=\(Self.queryValue(room.name))")
            return (queue.items, queue.callsBeforeNoShow)
        }
        let waiting: ListOf<ExamDTO> = try await api(req).get("/examinations?status=REQUESTED&limit=200")
        return (waiting.items, nil)
    }

    /// The live view the page's notice follows: the chosen room's queue, or every exam waiting.
    func examsLivePath(_ req: Request) -> String {
        chosenExamRoom(req).map { "/examinations/live?room=\(Self.queryValue($0.name))" } ?? "/examinations/live"
    }

    /// What the page shows of its exams, for the notice: which, and where each stands.
    static func examsFingerprint(_ exams: [ExamDTO]) -> String {
        fingerprint(of: exams.map { "\($0.id.uuidString) \($0.queueState ?? "") \($0.calls ?? 0)" })
    }

    /// An exam card's queue line: number, priority, place, and the buttons its place allows.
    func examQueueContext(_ exam: ExamDTO, callsBeforeNoShow: Int, _ screen: Screen) -> [String: Any] {
        var queue: [String: Any] = ["placeLabel": Self.examPlaceLabel(exam, screen)]
        if let number = exam.queueNumber { queue["queueNumber"] = number }
        if let priority = exam.priority, priority != "NORMAL" {
            queue["priority"] = priority
            queue["priorityLabel"] = screen.t("priority.\(priority)")
        }
        switch exam.queueState {
        case "WAITING", "NO_SHOW", nil: queue["canCall"] = true
        case "CALLED":
            queue["canRecall"] = true
            queue["canStart"] = true
            queue["canMarkAbsent"] = (exam.calls ?? 0) >= callsBeforeNoShow
        default: break
        }
        if let undoable = exam.undoable, undoable.by == screen.user?.principal.username {
            queue["canUndo"] = true
            let step = undoable.transition == "START" ? screen.t("startExam") : screen.t("step.\(undoable.transition)")
            queue["undoLabel"] = String(format: screen.t("undoStep"), step)
        }
        return queue
    }

    /// 대기 · 호출 2회 · 검사실 1 · lee · 검사 중 · 부재.
    static func examPlaceLabel(_ exam: ExamDTO, _ screen: Screen) -> String {
        switch exam.queueState {
        case "CALLED": String(format: screen.t("place.called"), exam.calls ?? 1, exam.room ?? "", exam.calledBy ?? "")
        case "IN_EXAM": String(format: screen.t("place.inExam"), exam.room ?? "", exam.calledBy ?? "")
        case "NO_SHOW": screen.t("place.noShow")
        default: screen.t("place.waiting")
        }
    }

    // MARK: Commands

    /// 호출 / 재호출 to the chosen exam room.
    @Sendable func callForExam(_ req: Request) async throws -> Response {
        guard let room = chosenExamRoom(req) else {
            return req.redirect(to: "/examiner?error=chooseExamRoom", redirectType: .normal)
        }
        return await examQueueCommand(req, path: "call", body: ["room": room.name], notice: "called")
    }

    /// 검사 시작 in the chosen exam room.
    @Sendable func startExam(_ req: Request) async throws -> Response {
        guard let room = chosenExamRoom(req) else {
            return req.redirect(to: "/examiner?error=chooseExamRoom", redirectType: .normal)
        }
        return await examQueueCommand(req, path: "start", body: ["room": room.name], notice: "examStarted")
    }

    /// 부재.
    @Sendable func markExamAbsent(_ req: Request) async throws -> Response {
        await examQueueCommand(req, path: "no-show", body: [:], notice: "markedAbsent")
    }

    /// 되돌리기: the examiner's own last step, within the clinic's time.
    @Sendable func undoExamStep(_ req: Request) async throws -> Response {
        await examQueueCommand(req, path: "undo", body: [:], notice: "undone")
    }

    /// Sends a queue step; a refusal is said from the exam's fresh place, in the screen's words.
    private func examQueueCommand(_ req: Request, path: String, body: [String: Any], notice: String) async -> Response {
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:))?.uuidString else {
            return req.redirect(to: "/examiner?error=notFound", redirectType: .normal)
        }
        let screen = Screen(req, timeZone: timeZone)
        do {
            let _: ExamDTO = try await api(req).post("/examinations/\(id)/\(path)", body)
            return req.redirect(to: "/examiner?notice=\(notice)#exam-\(id)", redirectType: .normal)
        } catch API.Failure.problem(let problem) where problem.status == 409 {
            let fresh: ExamDTO? = try? await api(req).get("/examinations/\(id)")
            let message = fresh.map { Self.examRefusalSentence(path, $0, screen) } ?? screen.sentence(for: API.Failure.problem(problem))
            return await examinerPage(req, screen, message: message, status: .conflict)
        } catch {
            if let refused = refusal(req, error, kind: "exam", page: "/examiner", list: "/examiner") { return refused }
            return await examinerPage(req, screen, message: screen.sentence(for: error), status: .unprocessableEntity)
        }
    }

    /// Why a step was refused, from where the exam now stands.
    static func examRefusalSentence(_ step: String, _ exam: ExamDTO, _ screen: Screen) -> String {
        let who = exam.calledBy ?? "", room = exam.room ?? ""
        if exam.status != "REQUESTED" {
            return String(format: screen.t("error.conflict"), Strings.examStatus(exam.status, screen.language))
        }
        switch (step, exam.queueState) {
        case ("call", "CALLED"), ("start", "CALLED"): return String(format: screen.t("refused.calledBy"), who, room)
        case (_, "IN_EXAM"): return String(format: screen.t("refused.inExam"), who, room)
        case ("no-show", "CALLED"): return String(format: screen.t("refused.tooFewCalls"), exam.calls ?? 0)
        case ("undo", _): return screen.t("refused.undo")
        default: return screen.t("refused.moved")
        }
    }
}
