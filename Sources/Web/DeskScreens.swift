import Foundation
import ServiceKit
import Vapor

/// 원무과: registration and today's board.
extension WebScreens {
    private static let registrationFields:
        [(name: String, kind: String, inputType: String, required: Bool, maxLength: Int)] = [
            ("patientName", "input", "text", true, 100),
            ("birthDate", "input", "date", false, 10), ("phone", "input", "tel", false, 20),
            ("department", "select", "", false, 50), ("symptom", "textarea", "", false, 1000),
        ]

    @Sendable func desk(_ req: Request) async throws -> Response {
        await deskPage(req, Screen(req, timeZone: timeZone))
    }

    /// The board's rows alone, for the page's live refresh.
    @Sendable func deskBoard(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let (visits, _) = try await boardRows(req, screen)
        return render("boardRows", ["visits": visits, "t": screen.language.strings])
    }

    /// The "waiting too long" panel alone, for the page's live refresh.
    @Sendable func deskWaits(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        return render("waitsPanel", ["waits": try await waitsPanel(req, screen), "t": screen.language.strings])
    }

    /// 대기 시간 경고: the visits past the clinic's alert times (red first), and each department's
    /// count and today's wait from 접수 to the first call.
    func waitsPanel(_ req: Request, _ screen: Screen) async throws -> [String: Any] {
        waitsPanelContext(try await api(req).get("/patientManagements/waits"), screen)
    }

    /// The same panel, pushed: the board's live waits (`GET /patientManagements/waits/live`) as
    /// the panel's HTML whenever they change, instead of a read every 30 s.
    @Sendable func deskWaitsEvents(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        return try await liveRegion(req, path: "/patientManagements/waits/live") { json in
            let waits = try APIJSON.decoder().decode(WaitsDTO.self, from: json)
            let context: [String: Any] = ["waits": self.waitsPanelContext(waits, screen), "t": screen.language.strings]
            return self.library.render(context, withTemplate: "waitsPanel") ?? ""
        }
    }

    func waitsPanelContext(_ waits: WaitsDTO, _ screen: Screen) -> [String: Any] {
        // Whole minutes waited so far, as the live panel has them (never a minute ahead).
        func minutes(_ value: Double?) -> String { value.map { String(format: screen.t("minutes"), Int($0.rounded(.down))) } ?? "–" }
        let rows = waits.tooLong.map { wait in
            [
                "queueNumber": wait.queueNumber ?? "", "patientName": wait.patientName ?? "",
                "department": Catalogue.department(wait.department, screen.language),
                "stage": screen.t("stage.\(wait.stage)"), "minutes": minutes(wait.minutes), "level": wait.level,
            ] as [String: Any]
        }
        let departments = waits.departments.filter { $0.open > 0 || $0.today.called > 0 }.map { d in
            [
                "department": Catalogue.department(d.department, screen.language), "open": d.open, "amber": d.amber,
                "red": d.red, "called": d.today.called, "average": minutes(d.today.averageMinutes),
                "p90": minutes(d.today.p90Minutes),
            ] as [String: Any]
        }
        return [
            "tooLong": rows, "hasTooLong": !rows.isEmpty, "count": rows.count, "departments": departments,
            "hasDepartments": !departments.isEmpty,
        ]
    }

    /// Where a visit waiting for the doctor is in the queue: 호출 2회 · 진료실 2, 진료 중, 부재.
    static func boardPlace(_ visit: VisitDTO, _ screen: Screen) -> String {
        guard ["RECEIVED", "EXAM_DONE"].contains(visit.status) else { return "" }
        switch visit.queueState {
        case "CALLED": return String(format: screen.t("place.calledShort"), visit.calls ?? 1, visit.room ?? "")
        case "IN_CONSULTATION": return String(format: screen.t("place.inRoom"), visit.room ?? "")
        case "NO_SHOW": return screen.t("place.noShow")
        default: return ""
        }
    }

    /// 접수: registers through the API with the form's Idempotency-Key, so a double click
    /// registers one visit.
    @Sendable func register(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        var values: [String: String] = [:]
        for field in Self.registrationFields { values[field.name] = req.formValue(field.name) }
        let key = req.formValue("idempotencyKey").flatMap(UUID.init(uuidString:))?.uuidString ?? UUID().uuidString
        do {
            let _: ReceptionDTO = try await api(req).post(
                "/receptions", values, headers: ["Idempotency-Key": "screen-\(key)"])
            return req.redirect(to: "/desk?notice=registered", redirectType: .normal)
        } catch API.Failure.problem(let problem) where problem.status == 422 {
            var errors: [String: String] = [:]
            for error in problem.errors ?? [] where errors[error.field] == nil {
                errors[error.field] = screen.fieldMessage(error.field, code: error.code)
            }
            return await deskPage(
                req, screen, values: values, errors: errors, message: screen.t("error.invalid"),
                status: .unprocessableEntity)
        } catch API.Failure.problem(let problem) where problem.status == 409 {
            // A patient already registered (the same resident number, or name and birth date).
            return await deskPage(req, screen, values: values, message: problem.detail, status: .conflict)
        } catch {
            return await deskPage(
                req, screen, values: values, message: screen.sentence(for: error), status: .serviceUnavailable)
        }
    }

    private func deskPage(
        _ req: Request, _ screen: Screen, values: [String: String] = [:], errors: [String: String] = [:],
        message: String? = nil, status: HTTPStatus = .ok
    ) async -> Response {
        var extra: [String: Any] = [:]
        do {
            (extra["visits"], extra["board"]) = try await boardRows(req, screen)
        } catch {
            extra["error"] = screen.sentence(for: error)
        }
        extra["waits"] = try? await waitsPanel(req, screen)
        if let message { extra["error"] = message }
        let fields: [[String: Any]] = Self.registrationFields.map { field in
            var context: [String: Any] = [
                "name": field.name, "label": screen.t(field.name), "required": field.required,
                "maxLength": field.maxLength, "inputType": field.inputType, "value": values[field.name] ?? "",
                "isInput": field.kind == "input", "isSelect": field.kind == "select",
                "isTextarea": field.kind == "textarea",
                "requiredMessage": screen.fieldMessage(field.name, code: "required"),
            ]
            // Always set: Mustache would otherwise find the page's own error for a field without one.
            context["fieldError"] = errors[field.name] ?? ""
            context["hasError"] = errors[field.name] != nil
            if field.kind == "select" {
                context["options"] = Catalogue.departments.map { department in
                    [
                        "value": department.ko, "label": screen.language == .ko ? department.ko : department.en,
                        "selected": values[field.name] == department.ko,
                    ] as [String: Any]
                }
            }
            return context
        }
        extra["form"] = ["idempotencyKey": UUID().uuidString, "fields": fields] as [String: Any]
        return render("desk", screen.context(title: screen.t("desk"), extra), status: status)
    }

    /// What the desk asked of the board: a name prefix, a status and a page (50 rows each).
    struct BoardQuery {
        static let pageSize = 50
        static let statuses = ["RECEIVED", "EXAM_ORDERED", "EXAM_DONE", "COMPLETED", "REJECTED", "CANCELED"]

        var name: String
        var status: String
        var page: Int

        init(_ req: Request) {
            name = String((req.query[String.self, at: "name"] ?? "").trimmingCharacters(in: .whitespaces).prefix(100))
            let status = req.query[String.self, at: "status"] ?? ""
            self.status = Self.statuses.contains(status) ? status : ""
            page = max(1, min(req.query[Int.self, at: "page"] ?? 1, 20_000))
        }

        /// This query as URL parameters, at `page`.
        func parameters(page: Int? = nil) -> String {
            var items: [URLQueryItem] = []
            if !name.isEmpty { items.append(URLQueryItem(name: "name", value: name)) }
            if !status.isEmpty { items.append(URLQueryItem(name: "status", value: status)) }
            let page = page ?? self.page
            if page > 1 { items.append(URLQueryItem(name: "page", value: String(page))) }
            var components = URLComponents()
            components.queryItems = items
            return components.percentEncodedQuery ?? ""
        }
    }

    /// The board API's path for what the desk searched for (today's visits, one page).
    func boardPath(_ req: Request, _ screen: Screen, live: Bool = false) -> String {
        let query = BoardQuery(req)
        var api = URLComponents()
        api.queryItems =
            [
                URLQueryItem(name: "date", value: screen.today()),
                URLQueryItem(name: "limit", value: String(BoardQuery.pageSize)),
                URLQueryItem(name: "offset", value: String((query.page - 1) * BoardQuery.pageSize)),
            ] + (query.name.isEmpty ? [] : [URLQueryItem(name: "name", value: query.name)])
            + (query.status.isEmpty ? [] : [URLQueryItem(name: "status", value: query.status)])
        return (live ? "/patientManagements/live?" : "/patientManagements?") + (api.percentEncodedQuery ?? "")
    }

    /// Each visit of a board page as its row shows it.
    func boardRowContexts(_ board: ListOf<VisitDTO>, charts: [UUID: String], _ screen: Screen) -> [[String: Any]] {
        board.items.map { visit in
            var row: [String: Any] = [
                "receptionId": visit.receptionId.uuidString, "patientName": visit.patientName ?? "",
                "chartNumber": visit.patientId.flatMap { charts[$0] } ?? "",
                "sexAge": visit.sex.map { _ in Self.sexAge(visit.sex, visit.age, screen) } ?? "",
                "department": Catalogue.department(visit.department, screen.language), "status": visit.status,
                "statusLabel": Strings.visitStatus(visit.status, screen.language),
                "receivedAt": screen.clock(visit.receivedAt), "elapsed": screen.elapsed(since: visit.statusSince),
                "cancelable": ["RECEIVED", "EXAM_ORDERED", "EXAM_DONE"].contains(visit.status),
                "prioritizable": ["RECEIVED", "EXAM_ORDERED", "EXAM_DONE"].contains(visit.status),
                // The row's colour from the clinic's alerts; the time in the current stage.
                "waitLevel": visit.wait?.level ?? "normal",
                "stageElapsed": visit.wait.map { screen.elapsed(since: $0.since) } ?? screen.elapsed(since: visit.statusSince),
            ]
            // Absent rather than empty: a template section shows for an empty string.
            if let number = visit.queueNumber { row["queueNumber"] = number }
            if let priority = visit.priority, priority != "NORMAL" {
                row["priority"] = priority
                row["priorityLabel"] = screen.t("priority.\(priority)")
            }
            let place = Self.boardPlace(visit, screen)
            if !place.isEmpty { row["place"] = place }
            if let wait = visit.wait {
                row["sinceReceived"] = screen.elapsed(since: visit.receivedAt)
                if wait.level != "normal" { row["waitLabel"] = screen.t("waitLevel.\(wait.level)") }
            }
            return row
        }
    }

    /// Today's visits from the read model, newest first: one page of what the desk searched for.
    private func boardRows(
        _ req: Request, _ screen: Screen
    ) async throws -> (rows: [[String: Any]], board: [String: Any]) {
        let query = BoardQuery(req)
        let board: ListOf<VisitDTO> = try await self.api(req).get(boardPath(req, screen))
        let charts = await chartNumbers(req, of: board.items.map(\.patientId))
        let rows = boardRowContexts(board, charts: charts, screen)
        let total = board.total ?? rows.count
        let first = (query.page - 1) * BoardQuery.pageSize
        let range = screen.t("boardRange")
            .replacingOccurrences(of: "{total}", with: board.totalCapped == true ? "\(total)+" : String(total))
            .replacingOccurrences(of: "{from}", with: String(rows.isEmpty ? 0 : first + 1))
            .replacingOccurrences(of: "{to}", with: String(first + rows.count))
        let context: [String: Any] = [
            "name": query.name, "query": query.parameters(),
            "statusOptions": BoardQuery.statuses.map { status in
                [
                    "value": status, "label": Strings.visitStatus(status, screen.language),
                    "selected": status == query.status,
                ] as [String: Any]
            },
            "range": range,
            // Flags beside the links: an empty string is not false to Mustache.
            "hasPrevious": query.page > 1, "previous": "/desk?" + query.parameters(page: query.page - 1),
            "hasNext": board.next != nil, "next": "/desk?" + query.parameters(page: query.page + 1),
        ]
        return (rows, context)
    }

    // MARK: 환자번호 검색

    /// A patient's visits by chart number, any day. A form POST, so the number stays out of the
    /// URL (and of the history, logs and Referer headers that keep URLs).
    @Sendable func patientSearch(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let patientId = (req.formValue("patientId") ?? "").trimmingCharacters(in: .whitespaces)
        var extra: [String: Any] = ["patientId": patientId]
        var status = HTTPStatus.ok
        do {
            let found: ListOf<ReceptionDTO> = try await api(req).post(
                "/receptions/search?limit=\(BoardQuery.pageSize)", ["chartNumber": patientId])
            extra["visits"] = found.items.map { Self.visitRow($0, screen) }
        } catch {
            extra["error"] = screen.sentence(for: error)
            if case API.Failure.problem(let problem) = error, problem.status == 422 {
                extra["error"] = screen.fieldMessage("patientId", code: problem.errors?.first?.code ?? "invalidFormat")
                status = .unprocessableEntity
            } else {
                status = .serviceUnavailable
            }
        }
        let title = String(format: screen.t("patientVisits"), patientId)
        return render("patientVisits", screen.context(title: title, extra), status: status)
    }

    /// One row of a patient's visits (any day): when, where, its status, and 접수 취소 while open.
    static func visitRow(_ visit: ReceptionDTO, _ screen: Screen) -> [String: Any] {
        [
            "receptionId": visit.id.uuidString, "receivedAt": screen.dateTime(visit.receivedAt),
            "department": Catalogue.department(visit.department, screen.language), "status": visit.status,
            "statusLabel": Strings.visitStatus(visit.status, screen.language), "cancelable": visit.status == "RECEIVED",
        ]
    }

    // MARK: 접수 취소

    @Sendable func cancelForm(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        return await cancelPage(req, screen)
    }

    @Sendable func cancel(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else { throw Abort(.notFound) }
        guard let reason = req.formValue("reason") else {
            return await cancelPage(req, screen, reasonError: screen.fieldMessage("cancelReason", code: "required"))
        }
        do {
            let _: ReceptionDTO = try await api(req).post(
                "/receptions/\(id.uuidString)/cancel", ["reason": reason])
            return req.redirect(to: "/desk?notice=canceled", redirectType: .normal)
        } catch {
            if let refused = refusal(req, error, kind: "reception", page: "/desk", list: "/desk") { return refused }
            return await cancelPage(req, screen, reason: reason, message: screen.sentence(for: error))
        }
    }

    private func cancelPage(
        _ req: Request, _ screen: Screen, reason: String = "", reasonError: String? = nil, message: String? = nil
    ) async -> Response {
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            return req.redirect(to: "/desk?error=notFound", redirectType: .normal)
        }
        var extra: [String: Any] = [
            "receptionId": id.uuidString, "reason": reason,
            "reasonRequired": screen.fieldMessage("cancelReason", code: "required"),
        ]
        if let reasonError { extra["reasonError"] = reasonError }
        if let message { extra["error"] = message }
        if let visit: VisitDTO = try? await api(req).get("/patientManagements/\(id.uuidString)") {
            extra["patientName"] = visit.patientName ?? ""
            extra["statusLabel"] = Strings.visitStatus(visit.status, screen.language)
        }
        return render(
            "cancel", screen.context(title: screen.t("cancelTitle"), extra),
            status: reasonError == nil && message == nil ? .ok : .unprocessableEntity)
    }

    /// 우선순위 변경: the desk's page for a waiting visit (일반, 배려, 응급).
    @Sendable func priorityForm(_ req: Request) async throws -> Response {
        await priorityPage(req, Screen(req, timeZone: timeZone))
    }

    @Sendable func changePriority(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else { throw Abort(.notFound) }
        do {
            let _: ReceptionDTO = try await api(req).post(
                "/receptions/\(id.uuidString)/priority", ["priority": req.formValue("priority") ?? ""])
            return req.redirect(to: "/desk?notice=prioritized", redirectType: .normal)
        } catch {
            if let refused = refusal(req, error, kind: "reception", page: "/desk", list: "/desk") { return refused }
            return await priorityPage(req, screen, message: screen.sentence(for: error))
        }
    }

    private func priorityPage(_ req: Request, _ screen: Screen, message: String? = nil) async -> Response {
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            return req.redirect(to: "/desk?error=notFound", redirectType: .normal)
        }
        var extra: [String: Any] = ["receptionId": id.uuidString]
        // The desk's own record holds the priority as it stands (the board may not have heard
        // yet). Unread, nothing is checked: a click must not quietly lower an 응급 to 일반.
        var current: String?
        do {
            let visit: ReceptionDTO = try await api(req).get("/receptions/\(id.uuidString)")
            extra["patientName"] = visit.patientName
            extra["statusLabel"] = Strings.visitStatus(visit.status, screen.language)
            if let number = visit.queueNumber { extra["queueNumber"] = number }
            current = visit.priority
        } catch {
            extra["error"] = screen.sentence(for: error)
        }
        extra["choices"] = [("NORMAL", "priorityNormal"), ("CARE", "priorityCareLong"), ("EMERGENCY", "priorityEmergency")]
            .map { value, label -> [String: Any] in
                var choice: [String: Any] = ["value": value, "label": screen.t(label)]
                if value == current { choice["checked"] = true }
                return choice
            }
        if let message { extra["error"] = message }
        return render(
            "priority", screen.context(title: screen.t("priorityTitle"), extra), status: message == nil ? .ok : .unprocessableEntity)
    }
}
