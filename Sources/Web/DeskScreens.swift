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
        let visits = try await boardRows(req, screen)
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
                .reception, "/receptions", values, headers: ["Idempotency-Key": "screen-\(key)"])
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
            extra["visits"] = try await boardRows(req, screen)
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

    /// Today's visits from the read model, newest first.
    private func boardRows(_ req: Request, _ screen: Screen) async throws -> [[String: Any]] {
        let board: ListOf<VisitDTO> = try await api(req).get(
            .patientManagement, "/patientManagements?date=\(screen.today())&limit=200")
        return board.items.map { visit in
            [
                "receptionId": visit.receptionId.uuidString, "patientName": visit.patientName ?? "",
                "department": Catalogue.department(visit.department, screen.language), "status": visit.status,
                "statusLabel": Strings.visitStatus(visit.status, screen.language),
                "receivedAt": screen.clock(visit.receivedAt), "elapsed": screen.elapsed(since: visit.statusSince),
                "cancelable": ["RECEIVED", "EXAM_ORDERED", "EXAM_DONE"].contains(visit.status),
            ] as [String: Any]
        }
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
                .reception, "/receptions/\(id.uuidString)/cancel", ["reason": reason])
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
        if let visit: VisitDTO = try? await api(req).get(.patientManagement, "/patientManagements/\(id.uuidString)") {
            extra["patientName"] = visit.patientName ?? ""
            extra["statusLabel"] = Strings.visitStatus(visit.status, screen.language)
        }
        return render(
            "cancel", screen.context(title: screen.t("cancelTitle"), extra),
            status: reasonError == nil && message == nil ? .ok : .unprocessableEntity)
    }
}
