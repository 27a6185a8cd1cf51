import Foundation
import ServiceKit
import Vapor

/// The doctor: the worklist, a visit with its exam orders and results, completion and rejection.
extension WebScreens {
    @Sendable func doctor(_ req: Request) async throws -> Response {
        await doctorPage(req, Screen(req, timeZone: timeZone))
    }

    /// The worklist, with the room picker; with a room chosen, the department's queue with its
    /// 호출 buttons.
    func doctorPage(_ req: Request, _ screen: Screen, message: String? = nil, status: HTTPStatus = .ok) async -> Response {
        let chosen = chosenRoom(req)
        var extra: [String: Any] = ["roomChoices": roomChoices(chosen?.room, screen)]
        if let chosen {
            extra["room"] = chosen.room
            extra["roomDepartment"] = Catalogue.department(chosen.department.name, screen.language)
        }
        do {
            extra["diagnoses"] = try await worklistRows(req, screen)
        } catch {
            extra["error"] = screen.sentence(for: error)
        }
        if let message { extra["error"] = message }
        return render("doctor", screen.context(title: screen.t("worklist"), extra), status: status)
    }

    @Sendable func doctorWorklist(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        var context: [String: Any] = [
            "diagnoses": try await worklistRows(req, screen), "t": screen.language.strings, "csrf": screen.csrf,
        ]
        if let chosen = chosenRoom(req) { context["room"] = chosen.room }
        return render("worklistRows", context)
    }

    /// With a room: its department's queue (see `queueRows`). Without: every department's
    /// WAITING and EXAM_DONE first (someone needs the doctor), then EXAM_ORDERED; oldest first.
    private func worklistRows(_ req: Request, _ screen: Screen) async throws -> [[String: Any]] {
        if let chosen = chosenRoom(req) {
            return try await queueRows(req, screen, room: chosen.room, department: chosen.department)
        }
        let api = api(req)
        async let waiting: ListOf<DiagnosisDTO> = api.get("/diagnoses?status=WAITING&limit=200")
        async let done: ListOf<DiagnosisDTO> = api.get("/diagnoses?status=EXAM_DONE&limit=200")
        async let ordered: ListOf<DiagnosisDTO> = api.get("/diagnoses?status=EXAM_ORDERED&limit=200")
        let open = try await waiting.items + done.items + ordered.items
        return openWorklistRows(open, charts: await chartNumbers(req, of: open.map(\.patientId)), screen)
    }

    /// Every department's open consultations: WAITING and EXAM_DONE first (someone needs the
    /// doctor), oldest first, then EXAM_ORDERED.
    func openWorklistRows(_ open: [DiagnosisDTO], charts: [UUID: String], _ screen: Screen) -> [[String: Any]] {
        let first = open.filter { $0.status != "EXAM_ORDERED" }.sorted { $0.createdAt < $1.createdAt }
        let rows = first + open.filter { $0.status == "EXAM_ORDERED" }
        return rows.map { d in
            [
                "id": d.id.uuidString, "patientName": d.patientName,
                "chartNumber": d.patientId.flatMap { charts[$0] } ?? "",
                "sexAge": d.sex.map { _ in Self.sexAge(d.sex, d.age, screen) } ?? "",
                "department": Catalogue.department(d.department, screen.language), "symptom": d.symptom ?? "",
                "status": d.status, "statusLabel": Strings.diagnosisStatus(d.status, screen.language),
                "createdAt": screen.clock(d.createdAt), "elapsed": screen.elapsed(since: d.createdAt),
            ] as [String: Any]
        }
    }

    @Sendable func visit(_ req: Request) async throws -> Response {
        await visitPage(req, Screen(req, timeZone: timeZone))
    }

    /// The visit's orders region, asked for again every two seconds by the page. Unchanged since
    /// the page last had it (its ETag), it answers 304 without listing the result files again:
    /// each listing is an audited read of the visit, and the refresh must not fill the trail.
    @Sendable func visitOrders(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let diagnosis: DiagnosisDTO = try await api(req).get("/diagnoses/\(try diagnosisId(req))")
        let tag = Self.ordersTag(diagnosis, screen.language)
        if req.headers.first(name: .ifNoneMatch) == tag {
            return Response(status: .notModified, headers: ["ETag": tag])
        }
        let context = await ordersContext(req, diagnosis, screen)
        let response = render("orders", context.merging(["t": screen.language.strings]) { $1 })
        response.headers.replaceOrAdd(name: .eTag, value: tag)
        return response
    }

    /// What the orders region shows, as a strong ETag: the diagnosis's status and each order's
    /// state, result and files (a file set is fixed once the exam's result is recorded), and the
    /// language. The same on every gateway replica.
    static func ordersTag(_ diagnosis: DiagnosisDTO, _ language: Language) -> String {
        var text = "\(language.rawValue)|\(diagnosis.status)"
        for order in diagnosis.orders {
            let files = (order.attachments ?? []).map(\.id.uuidString).joined(separator: ",")
            text += "|\(order.orderId)|\(order.status)|\(order.result ?? "")|\(order.cancelReason ?? "")|\(files)"
        }
        let digest = SHA256.hash(data: Data(text.utf8))
        return "\"" + digest.prefix(16).map { String(format: "%02x", $0) }.joined() + "\""
    }

    private func visitPage(
        _ req: Request, _ screen: Screen, examsError: String? = nil, message: String? = nil,
        status: HTTPStatus = .ok
    ) async -> Response {
        let diagnosis: DiagnosisDTO
        do {
            diagnosis = try await api(req).get("/diagnoses/\(try diagnosisId(req))")
        } catch API.Failure.problem(let problem) where problem.status == 404 {
            return req.redirect(to: "/doctor?error=notFound", redirectType: .normal)
        } catch {
            return render(
                "doctor", screen.context(title: screen.t("worklist"), ["error": screen.sentence(for: error)]),
                status: .serviceUnavailable)
        }
        // The chart number stays in reception; the doctor's screen asks for it (and shows the
        // rest, from the doctor's own service, when reception does not answer).
        let reception: ReceptionDTO? = try? await api(req).get(
            "/receptions/\(diagnosis.receptionId.uuidString)")
        var extra = await ordersContext(req, diagnosis, screen)
        extra["id"] = diagnosis.id.uuidString
        extra["patientName"] = diagnosis.patientName
        extra["patientId"] = reception?.chartNumber
        extra["birthDate"] = diagnosis.birthDate ?? reception?.birthDate
        extra["sexAge"] = diagnosis.sex.map { _ in Self.sexAge(diagnosis.sex, diagnosis.age, screen) } ?? ""
        // 이전 진료: the patient's previous visits, from the doctor's own service.
        if let history: ListOf<DiagnosisDTO> = try? await api(req).get("/diagnoses/\(diagnosis.id.uuidString)/history?limit=10") {
            extra["previousVisits"] = history.items.map { visit in
                [
                    "date": screen.dateTime(visit.createdAt),
                    "department": Catalogue.department(visit.department, screen.language),
                    "statusLabel": Strings.diagnosisStatus(visit.status, screen.language), "status": visit.status,
                    "note": visit.closingNote ?? "",
                    "results": visit.orders.map { order in
                        ["name": order.name, "result": order.result ?? order.cancelReason ?? ""]
                    },
                ] as [String: Any]
            }
            extra["historyLoaded"] = true
        }
        extra["department"] = Catalogue.department(diagnosis.department, screen.language)
        extra["symptom"] = diagnosis.symptom ?? ""
        extra["open"] = ["WAITING", "EXAM_ORDERED", "EXAM_DONE"].contains(diagnosis.status)
        extra["closingNote"] = diagnosis.closingNote ?? ""
        extra["catalogue"] = Catalogue.exams.map { exam in
            ["code": exam.code, "label": screen.language == .ko ? exam.ko : exam.en]
        }
        extra["chooseExamMessage"] = screen.t("error.chooseExam")
        extra["reasonRequired"] = screen.fieldMessage("reason", code: "required")
        if let examsError { extra["examsError"] = examsError }
        if let message { extra["error"] = message }
        return render("visit", screen.context(title: diagnosis.patientName, extra), status: status)
    }

    private func ordersContext(_ req: Request, _ diagnosis: DiagnosisDTO, _ screen: Screen) async -> [String: Any] {
        var orders: [[String: Any]] = []
        for order in diagnosis.orders {
            var row: [String: Any] = [
                "orderId": order.orderId.uuidString, "code": order.code,
                "name": Catalogue.exam(code: order.code, name: order.name, screen.language), "status": order.status,
                "statusLabel": Strings.examStatus(order.status, screen.language),
            ]
            // Absent, not nil: a template shows a boxed nil as the text "nil".
            row["result"] = order.result
            row["cancelReason"] = order.cancelReason
            // The result files the completion named: their names and where to see them.
            if let examination = order.examinationId, !(order.attachments ?? []).isEmpty {
                let files = await attachmentRows(req, examination: examination, role: "doctor", screen: screen)
                row["files"] = files
                row["hasFiles"] = !files.isEmpty
            }
            orders.append(row)
        }
        return [
            "status": diagnosis.status, "statusLabel": Strings.diagnosisStatus(diagnosis.status, screen.language),
            "orders": orders,
        ]
    }

    private func diagnosisId(_ req: Request) throws -> String {
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            throw API.Failure.problem(WireProblem(type: "", status: 404, detail: "", currentState: nil, errors: nil))
        }
        return id.uuidString
    }

    // MARK: Commands

    /// 검사 처방: the checked exams of the catalogue.
    @Sendable func prescribe(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let codes = Set(req.formFields.filter { $0.name == "exam" }.map(\.value))
        let exams = Catalogue.exams.filter { codes.contains($0.code) }.map { ["code": $0.code, "name": $0.ko] }
        guard !exams.isEmpty else {
            return await visitPage(req, screen, examsError: screen.t("error.chooseExam"), status: .unprocessableEntity)
        }
        return await command(
            req, screen, path: "prescriptions", body: ["examinations": exams], notice: "prescribed", stay: true)
    }

    /// 진료 완료 with an optional note.
    @Sendable func complete(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        return await command(
            req, screen, path: "complete", body: ["note": req.formValue("note") ?? ""], notice: "completed")
    }

    /// 진료 거부 with a reason.
    @Sendable func reject(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        guard let reason = req.formValue("reason") else {
            return await visitPage(
                req, screen, message: screen.fieldMessage("reason", code: "required"), status: .unprocessableEntity)
        }
        return await command(req, screen, path: "reject", body: ["reason": reason], notice: "rejected")
    }

    /// Sends a command on this visit; a refusal comes back as a sentence with the fresh state.
    private func command(
        _ req: Request, _ screen: Screen, path: String, body: [String: Any], notice: String, stay: Bool = false
    ) async -> Response {
        guard let id = try? diagnosisId(req) else {
            return req.redirect(to: "/doctor?error=notFound", redirectType: .normal)
        }
        do {
            let _: DiagnosisDTO = try await api(req).post("/diagnoses/\(id)/\(path)", body)
            let next = stay ? "/doctor/diagnoses/\(id)?notice=\(notice)" : "/doctor?notice=\(notice)"
            return req.redirect(to: next, redirectType: .normal)
        } catch {
            if let refused = refusal(req, error, kind: "diagnosis", page: "/doctor/diagnoses/\(id)", list: "/doctor") {
                return refused
            }
            return await visitPage(req, screen, message: screen.sentence(for: error), status: .unprocessableEntity)
        }
    }
}
