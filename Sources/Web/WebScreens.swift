import Foundation
import Identity
import Mustache
import ServiceKit
import SharedKernel
import Vapor

/// The screens of the desk (원무과), the doctor and the examiner: server-rendered HTML, served
/// through the gateway, driving the same public API as every other client.
public struct WebScreens: Sendable {
    /// A service behind the gateway, as the screens call it.
    public struct Upstream: Sendable {
        /// Its name, for messages (`service.reception` in the strings).
        public var service: String
        public var url: URL

        public init(service: String, url: URL) {
            self.service = service
            self.url = url
        }
    }

    /// Where each path prefix (`receptions`) is served: the gateway's routes.
    let upstreams: [String: Upstream]
    let timeZone: TimeZone
    let library: MustacheLibrary
    let sessions: ScreenSessions
    /// The clinic's departments and rooms: a waiting-room display each, the rooms a doctor
    /// calls to (as the process holds them now).
    let clinicSource: ClinicSource
    var clinic: ClinicLayout { clinicSource.layout }
    var departments: [String] { clinic.departments.map(\.name) }

    /// The paths the screens call, by their first component: a missing one is a wiring error
    /// found at start, not on a patient's page.
    static let calledPrefixes = ["receptions", "diagnoses", "examinations", "patientManagements"]

    public init(
        upstreams: [String: Upstream], timeZone: TimeZone, clinic: ClinicSource = ClinicSource(.standard),
        sessions: ScreenSessions
    ) throws {
        clinicSource = clinic
        if let missing = Self.calledPrefixes.first(where: { upstreams[$0] == nil }) {
            throw Abort(.internalServerError, reason: "no service serves /\(missing), which the screens call")
        }
        self.upstreams = upstreams
        self.timeZone = timeZone
        self.sessions = sessions
        library = try Self.templates()
    }

    public func register(on routes: any RoutesBuilder) {
        let screens = routes.grouped(CSRFCookie(tokens: sessions.csrf))
        screens.get(use: home)
        screens.get("lang", ":language", use: switchLanguage)
        routes.get("assets", ":file", use: asset)
        screens.get("login", use: loginForm)
        screens.post("login", use: login)
        screens.post("logout", use: logout)
        screens.get("login", "oidc", use: providerSignIn)
        screens.get("login", "oidc", "callback", use: providerCallback)

        let desk = screens.grouped(ScreenGuard(sessions: sessions, role: .desk))
        desk.get("desk", use: self.desk)
        desk.get("desk", "board", use: deskBoard)
        desk.get("desk", "board", "events", use: deskBoardEvents)
        desk.get("desk", "waits", use: deskWaits)
        desk.get("desk", "waits", "events", use: deskWaitsEvents)
        desk.post("desk", "receptions", use: register)
        desk.post("desk", "patient", use: patientSearch)
        desk.post("desk", "patients", "search", use: patientSearchResults)
        desk.post("desk", "patients", use: registerPatient)
        desk.get("desk", "patients", ":id", use: patientPage)
        desk.post("desk", "patients", ":id", use: correctPatient)
        desk.post("desk", "patients", ":id", "receptions", use: registerPatientVisit)
        desk.get("desk", "receptions", ":id", "cancel", use: cancelForm)
        desk.post("desk", "receptions", ":id", "cancel", use: cancel)
        desk.get("desk", "receptions", ":id", "priority", use: priorityForm)
        desk.post("desk", "receptions", ":id", "priority", use: changePriority)

        let doctor = screens.grouped(ScreenGuard(sessions: sessions, role: .doctor))
        doctor.get("doctor", use: self.doctor)
        doctor.get("doctor", "worklist", use: doctorWorklist)
        doctor.get("doctor", "worklist", "events", use: doctorWorklistEvents)
        doctor.get("doctor", "diagnoses", ":id", use: visit)
        doctor.get("doctor", "diagnoses", ":id", "orders", use: visitOrders)
        doctor.post("doctor", "diagnoses", ":id", "prescriptions", use: prescribe)
        doctor.post("doctor", "diagnoses", ":id", "complete", use: complete)
        doctor.post("doctor", "diagnoses", ":id", "reject", use: reject)
        doctor.post("doctor", "room", use: chooseRoom)
        doctor.post("doctor", "diagnoses", ":id", "call", use: callPatient)
        doctor.post("doctor", "diagnoses", ":id", "start", use: startConsultation)
        doctor.post("doctor", "diagnoses", ":id", "no-show", use: markAbsent)
        doctor.post("doctor", "diagnoses", ":id", "undo", use: undoStep)

        // A waiting-room TV is paired with the code of a display device an administrator issued.
        screens.get("display", "pair", use: pairForm)
        screens.post("display", "pair", use: pair)
        let display = screens.grouped(ScreenGuard(sessions: sessions, role: .display))
        display.get("display", use: displayChoice)
        display.get("display", ":department", use: self.display)
        display.get("display", ":department", "events", use: displayEvents)

        let examiner = screens.grouped(ScreenGuard(sessions: sessions, role: .examiner))
        examiner.get("examiner", use: self.examiner)
        examiner.get("examiner", "changes", use: examinerChanges)
        examiner.get("examiner", "changes", "events", use: examinerChangesEvents)
        examiner.post("examiner", "examinations", ":id", "perform", use: perform)
        examiner.post("examiner", "examinations", ":id", "cancel", use: cancelExam)
        examiner.post("examiner", "room", use: chooseExamRoom)
        examiner.post("examiner", "examinations", ":id", "call", use: callForExam)
        examiner.post("examiner", "examinations", ":id", "start", use: startExam)
        examiner.post("examiner", "examinations", ":id", "no-show", use: markExamAbsent)
        examiner.post("examiner", "examinations", ":id", "undo", use: undoExamStep)
        examiner.on(.POST, "examiner", "examinations", ":id", "attachments", body: .stream, use: attach)
        examiner.get("examiner", "examinations", ":id", "attachments", ":attachmentId", use: attachmentFile)
        doctor.get("doctor", "examinations", ":id", "attachments", ":attachmentId", use: attachmentFile)
    }

    // MARK: Home, sign-in and language

    /// A signed-in user goes to their screen; anyone else to the sign-in page.
    @Sendable func home(_ req: Request) async throws -> Response {
        guard let user = await sessions.user(req) else { return req.redirect(to: "/login", redirectType: .normal) }
        if let screen = Self.home(of: user.principal.role) { return req.redirect(to: screen, redirectType: .normal) }
        // The administrator has no screen of patients: their work is accounts, audit and operations.
        let screen = Screen(req, timeZone: timeZone, user: user)
        return render("home", screen.context(title: screen.t("role.admin")))
    }

    static func home(of role: Role) -> String? {
        switch role {
        case .desk: "/desk"
        case .doctor: "/doctor"
        case .examiner: "/examiner"
        case .admin: nil
        case .display: "/display"
        }
    }

    @Sendable func loginForm(_ req: Request) async throws -> Response {
        loginPage(req, next: req.query[String.self, at: "next"].flatMap(Screen.localPath) ?? "")
    }

    /// 로그인: the name and password checked as `POST /auth/token` checks them; a session cookie.
    @Sendable func login(_ req: Request) async throws -> Response {
        // With an identity provider there are no passwords here to check.
        guard sessions.provider == nil else { throw Abort(.notFound) }
        guard ScreenSessions.isGenuineForm(req) else {
            req.logger.notice("sign-in form refused: no CSRF token or another origin")
            return Response(status: .forbidden, body: .init(string: "Forbidden"))
        }
        let next = req.formValue("next").flatMap(Screen.localPath) ?? ""
        let username = req.formValue("username") ?? ""
        guard
            let account = try await sessions.signIn.check(
                username: username, password: req.formFields.last { $0.name == "password" }?.value ?? "",
                client: req.clientAddress ?? "unknown", logger: req.logger)
        else {
            return loginPage(req, next: next, username: username, failed: true)
        }
        let target = !next.isEmpty && next != "/" ? next : Self.home(of: account.role) ?? "/"
        let response = req.redirect(to: target, redirectType: .normal)
        guard try await sessions.start(account, on: response, for: req) else {
            return loginPage(req, next: next, username: username, failed: true)
        }
        return response
    }

    /// 로그아웃: the session ends (everywhere, within seconds) and its cookie is cleared.
    @Sendable func logout(_ req: Request) async throws -> Response {
        guard ScreenSessions.isGenuineForm(req) else {
            return Response(status: .forbidden, body: .init(string: "Forbidden"))
        }
        try await sessions.end(req)
        let response = req.redirect(to: "/login?notice=signedOut", redirectType: .normal)
        sessions.setSession(nil, on: response, for: req)
        return response
    }

    func loginPage(
        _ req: Request, next: String, username: String = "", failed: Bool = false, error: String? = nil
    ) -> Response {
        let screen = Screen(req, timeZone: timeZone)
        var extra: [String: Any] = ["next": next, "username": username, "hideNav": true]
        if failed { extra["error"] = screen.t(error ?? "error.signIn") }
        if sessions.provider != nil {
            extra["provider"] = true
            extra["providerLink"] = "/login/oidc" + (next.isEmpty ? "" : "?next=" + next)
        }
        return render(
            "login", screen.context(title: screen.t("signIn"), extra), status: failed ? .unauthorized : .ok)
    }

    @Sendable func pairForm(_ req: Request) async throws -> Response {
        pairPage(req)
    }

    /// 기기 연결: the code of a display device an administrator issued (`POST /admin/devices`),
    /// typed or pasted once on the TV; the browser is then that device until it is revoked.
    @Sendable func pair(_ req: Request) async throws -> Response {
        guard ScreenSessions.isGenuineForm(req) else {
            return Response(status: .forbidden, body: .init(string: "Forbidden"))
        }
        let code = (req.formValue("code") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let response = req.redirect(to: "/display", redirectType: .normal)
        guard (16...128).contains(code.utf8.count), try await sessions.pairDevice(code: code, on: response, for: req) else {
            req.logger.notice("display pairing refused: not a live device's code")
            return pairPage(req, failed: true)
        }
        return response
    }

    func pairPage(_ req: Request, failed: Bool = false) -> Response {
        let screen = Screen(req, timeZone: timeZone)
        var extra: [String: Any] = ["hideNav": true]
        if failed { extra["error"] = screen.t("error.pairing") }
        return render("pair", screen.context(title: screen.t("pairTitle"), extra), status: failed ? .unauthorized : .ok)
    }

    /// Switches the language and remembers it (a cookie for a year), then goes back.
    @Sendable func switchLanguage(_ req: Request) async throws -> Response {
        let language = Language(rawValue: req.parameters.get("language") ?? "") ?? .ko
        let back = req.query[String.self, at: "back"].flatMap(Screen.localPath) ?? "/"
        let response = req.redirect(to: back, redirectType: .normal)
        response.cookies["lang"] = HTTPCookies.Value(
            string: language.rawValue, maxAge: 365 * 24 * 3600, path: "/", isHTTPOnly: true, sameSite: .lax)
        return response
    }

    @Sendable func asset(_ req: Request) async throws -> Response {
        let (body, type): (String, HTTPMediaType)
        switch req.parameters.get("file") {
        case "app.css": (body, type) = (String(decoding: PackageResources.app_css, as: UTF8.self), .css)
        case "app.js":
            (body, type) = (
                String(decoding: PackageResources.app_js, as: UTF8.self),
                HTTPMediaType(type: "text", subType: "javascript", parameters: ["charset": "utf-8"])
            )
        case "display.js":
            (body, type) = (
                String(decoding: PackageResources.display_js, as: UTF8.self),
                HTTPMediaType(type: "text", subType: "javascript", parameters: ["charset": "utf-8"])
            )
        default: throw Abort(.notFound)
        }
        var headers = HTTPHeaders()
        headers.contentType = type
        headers.replaceOrAdd(name: .cacheControl, value: "public, max-age=300")
        return Response(status: .ok, headers: headers, body: .init(string: body))
    }

    // MARK: -

    /// The service that serves `path` (by its first component).
    static func upstream(of path: String, in upstreams: [String: Upstream]) throws -> Upstream {
        let prefix = path.split(separator: "/").first.map { String($0.prefix { $0 != "?" }) } ?? ""
        guard let upstream = upstreams[prefix] else { throw API.Failure.unavailable(prefix) }
        return upstream
    }

    /// The API, called as the signed-in user (their token, from the session).
    func api(_ req: Request) -> API {
        API(
            client: req.serviceClient, upstreams: upstreams, token: req.signedIn?.token,
            clientAddress: req.clientAddress)
    }

    /// After a command the API refused: a stale page (409) goes to `page` with a sentence and the
    /// fresh state; a record that is gone (404) goes back to `list`. Anything else is the caller's.
    func refusal(_ req: Request, _ error: any Error, kind: String, page: String, list: String) -> Response? {
        guard case API.Failure.problem(let problem) = error else { return nil }
        switch problem.status {
        case 409:
            return req.redirect(
                to: "\(page)?error=conflict&kind=\(kind)&state=\(problem.currentState ?? "")", redirectType: .normal)
        case 404:
            return req.redirect(to: "\(list)?error=notFound", redirectType: .normal)
        default:
            return nil
        }
    }

    func render(_ template: String, _ context: [String: Any], status: HTTPStatus = .ok) -> Response {
        var headers = HTTPHeaders()
        headers.contentType = .html
        headers.replaceOrAdd(name: .cacheControl, value: "no-store")
        return Response(
            status: status, headers: headers, body: .init(string: library.render(context, withTemplate: template) ?? "")
        )
    }

    static func templates() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        let sources: [(String, [UInt8])] = [
            ("layout", PackageResources.layout_mustache), ("home", PackageResources.home_mustache),
            ("desk", PackageResources.desk_mustache), ("boardRows", PackageResources.boardRows_mustache),
            ("cancel", PackageResources.cancel_mustache), ("doctor", PackageResources.doctor_mustache),
            ("worklistRows", PackageResources.worklistRows_mustache), ("visit", PackageResources.visit_mustache),
            ("orders", PackageResources.orders_mustache), ("waitsPanel", PackageResources.waitsPanel_mustache), ("examiner", PackageResources.examiner_mustache),
            ("patientVisits", PackageResources.patientVisits_mustache), ("login", PackageResources.login_mustache), ("pair", PackageResources.pair_mustache),
            ("patients", PackageResources.patients_mustache), ("patient", PackageResources.patient_mustache),
            ("display", PackageResources.display_mustache), ("priority", PackageResources.priority_mustache),
            (
                "examChanges",
                Array(#"{{#changed}}<a class="button primary" href="/examiner">{{t.examsChanged}}</a>{{/changed}}"#.utf8)
            ),
        ]
        for (name, bytes) in sources {
            try library.register(String(decoding: bytes, as: UTF8.self), named: name)
        }
        return library
    }
}

/// What every page needs to know about the request: its language, path and messages.
struct Screen {
    let language: Language
    let path: String
    let timeZone: TimeZone
    let notice: String?
    let error: String?
    /// The token every form of the page carries (see `ScreenSessions`).
    let csrf: String
    let user: SignedInUser?

    init(_ req: Request, timeZone: TimeZone, user: SignedInUser? = nil) {
        language = req.cookies["lang"].flatMap { Language(rawValue: $0.string) } ?? .ko
        path = req.url.path
        self.timeZone = timeZone
        csrf = ScreenSessions.formToken(req)
        self.user = user ?? req.signedIn
        let t = language
        notice = req.query[String.self, at: "notice"].flatMap { key in t.strings["notice.\(key)"] }
        switch req.query[String.self, at: "error"] {
        case "conflict":
            // Only a known state of the named kind of record: the URL is not a place for free text.
            let kind = req.query[String.self, at: "kind"] ?? ""
            let state = req.query[String.self, at: "state"] ?? ""
            error =
                Screen.stateLabel(state, kind: kind, t).map { String(format: t("error.conflict"), $0) }
                ?? t("error.failed")
        case "notFound": error = t("error.notFound")
        case "chooseRoom": error = t("error.chooseRoom")
        case "attachType": error = t("error.attachType")
        case "attachSize": error = t("error.attachSize")
        case "attachInvalid": error = t("error.attachInvalid")
        case "attachClosed": error = t("error.attachClosed")
        case "attach": error = t("error.attach")
        default: error = nil
        }
    }

    func t(_ key: String) -> String { language(key) }

    func context(title: String, _ extra: [String: Any] = [:]) -> [String: Any] {
        var context: [String: Any] = [
            "lang": language.rawValue, "otherLang": language.other.rawValue, "t": language.strings, "title": title,
            "path": path, "onDesk": path.hasPrefix("/desk"), "onDoctor": path.hasPrefix("/doctor"),
            "onExaminer": path.hasPrefix("/examiner"), "csrf": csrf,
        ]
        if let user {
            context["user"] = ["name": user.principal.username, "role": t("role.\(user.principal.role.rawValue)")]
            context["userHome"] = WebScreens.home(of: user.principal.role) ?? "/"
        }
        if let notice { context["notice"] = notice }
        if let error { context["error"] = error }
        return context.merging(extra) { $1 }
    }

    /// A sentence for a failed call, in this screen's language.
    func sentence(for failure: any Error) -> String {
        switch failure {
        case API.Failure.unavailable(let service):
            String(format: t("error.unavailable"), t("service.\(service)"))
        case API.Failure.problem(let problem) where problem.status == 409:
            String(format: t("error.conflict"), problem.currentState ?? "")
        case API.Failure.problem(let problem) where problem.status == 404:
            t("error.notFound")
        case API.Failure.problem(let problem) where problem.status == 422 || problem.status == 400:
            t("error.invalid")
        default:
            t("error.failed")
        }
    }

    /// The message for one field's broken rule, e.g. "환자명을(를) 입력해 주세요."
    func fieldMessage(_ field: String, code: String) -> String {
        let label = t(field)
        let template = language.strings["rule.\(code)"] ?? t("error.invalid")
        return template.contains("%@") ? String(format: template, label) : template
    }

    /// The words for `state` of a reception, diagnosis or exam; nil for anything unknown.
    static func stateLabel(_ state: String, kind: String, _ language: Language) -> String? {
        let label: String
        switch kind {
        case "reception": label = Strings.visitStatus(state, language)
        case "diagnosis": label = Strings.diagnosisStatus(state, language)
        case "exam": label = Strings.examStatus(state, language)
        default: return nil
        }
        return label == state ? nil : label
    }

    /// Only a path of this site's own screens is a place to go back to: letters, digits, `/`,
    /// `-` and `_` (no `//`, no escapes, no whitespace a browser would drop to make `//host`).
    static func localPath(_ raw: String) -> String? {
        guard raw.hasPrefix("/"), !raw.hasPrefix("//"), raw.count < 200,
            raw.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "/-_".contains($0)) })
        else { return nil }
        return raw
    }

    /// "09:41" in the hospital's time zone.
    func clock(_ date: Date?) -> String {
        guard let date else { return "" }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.hour, .minute], from: date)
        return String(format: "%02d:%02d", c.hour ?? 0, c.minute ?? 0)
    }

    /// "2026-11-30 09:41" in the hospital's time zone.
    func dateTime(_ date: Date?) -> String {
        guard let date else { return "" }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        return String(format: "%04d-%02d-%02d %02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!)
    }

    /// How long since `date`, e.g. "12분" or "1시간 5분".
    func elapsed(since date: Date?, now: Date = Date()) -> String {
        guard let date else { return "" }
        let minutes = max(0, Int(now.timeIntervalSince(date) / 60))
        if minutes < 1 { return t("justNow") }
        if minutes < 60 { return String(format: t("minutes"), minutes) }
        return String(format: t("hoursMinutes"), minutes / 60, minutes % 60)
    }

    /// Today in the hospital's time zone, as the API's `date` filter wants it.
    func today(now: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day], from: now)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }
}
