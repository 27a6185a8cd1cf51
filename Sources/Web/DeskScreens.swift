import Foundation
import ServiceKit
import Vapor

/// 원무과: registration and today's board.
extension WebScreens {
    private static let registrationFields:
        [(name: String, kind: String, inputType: String, required: Bool, maxLength: Int)] = [
            ("patientName", "input", "text", true, 100), ("patientId", "input", "text", false, 20),
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

    /// Today's visits from the read model, newest first: one page of what the desk searched for.
    private func boardRows(
        _ req: Request, _ screen: Screen
    ) async throws -> (rows: [[String: Any]], board: [String: Any]) {
        let query = BoardQuery(req)
        var api = URLComponents()
        api.queryItems =
            [
                URLQueryItem(name: "date", value: screen.today()),
                URLQueryItem(name: "limit", value: String(BoardQuery.pageSize)),
                URLQueryItem(name: "offset", value: String((query.page - 1) * BoardQuery.pageSize)),
            ] + (query.name.isEmpty ? [] : [URLQueryItem(name: "name", value: query.name)])
            + (query.status.isEmpty ? [] : [URLQueryItem(name: "status", value: query.status)])
        let board: ListOf<VisitDTO> = try await self.api(req).get(
            "/patientManagements?" + (api.percentEncodedQuery ?? ""))
        let rows = board.items.map { visit in
            [
                "receptionId": visit.receptionId.uuidString, "patientName": visit.patientName ?? "",
                "department": Catalogue.department(visit.department, screen.language), "status": visit.status,
                "statusLabel": Strings.visitStatus(visit.status, screen.language),
                "receivedAt": screen.clock(visit.receivedAt), "elapsed": screen.elapsed(since: visit.statusSince),
                "cancelable": ["RECEIVED", "EXAM_ORDERED", "EXAM_DONE"].contains(visit.status),
            ] as [String: Any]
        }
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
                "/receptions/search?limit=\(BoardQuery.pageSize)", ["patientId": patientId])
            extra["visits"] = found.items.map { visit in
                [
                    "receptionId": visit.id.uuidString, "receivedAt": screen.dateTime(visit.receivedAt),
                    "department": Catalogue.department(visit.department, screen.language), "status": visit.status,
                    "statusLabel": Strings.visitStatus(visit.status, screen.language),
                    "cancelable": visit.status == "RECEIVED",
                ] as [String: Any]
            }
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
}
