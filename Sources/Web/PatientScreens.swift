import Foundation
import ServiceKit
import Vapor

/// 원무과's patient registry screens: search first (환자 검색); a hit opens the patient (their
/// visits, 접수 for today, 환자 정보 수정); no hit offers 신환 등록, with the possible duplicates
/// said in words. Every identifier travels in a form body, never in a URL, but the registry's id.
extension WebScreens {
    struct PatientDTO: Decodable, Sendable {
        var id: UUID
        var chartNumber: String
        var name: String
        var sex: String
        var age: Int?
        var birthDate: String?
        var phone: String?
        var address: String?
        var residentNumber: String?
        var version: Int
        var mergedInto: UUID?
        var mergedIntoChartNumber: String?
    }

    static let searchFields = ["name", "birthDate", "chartNumber", "phone"]
    static let newPatientFields = ["name", "birthDate", "sex", "phone", "address"]

    /// POST /desk/patients/search: the registry's answer to what the desk typed.
    @Sendable func patientSearchResults(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        var query: [String: String] = [:]
        for field in Self.searchFields {
            if let value = req.formValue(field)?.trimmingCharacters(in: .whitespaces), !value.isEmpty {
                query[field] = value
            }
        }
        guard !query.isEmpty else {
            return await patientsPage(req, screen, query: query, message: screen.t("error.searchEmpty"), status: .unprocessableEntity)
        }
        do {
            let found: ListOf<PatientDTO> = try await api(req).post("/patients/search?limit=20", query)
            return await patientsPage(req, screen, query: query, found: found.items)
        } catch API.Failure.problem(let problem) where problem.status == 422 {
            var errors: [String: String] = [:]
            for error in problem.errors ?? [] { errors[error.field] = screen.fieldMessage(error.field, code: error.code) }
            return await patientsPage(
                req, screen, query: query, errors: errors, message: screen.t("error.invalid"),
                status: .unprocessableEntity)
        } catch {
            return await patientsPage(
                req, screen, query: query, message: screen.sentence(for: error), status: .serviceUnavailable)
        }
    }

    /// POST /desk/patients: 신환 등록. A possible duplicate comes back as a warning in words with
    /// the records it matches and a box to tick when it is someone else.
    @Sendable func registerPatient(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        var values: [String: String] = [:]
        for field in Self.newPatientFields { values[field] = req.formValue(field) ?? "" }
        var body: [String: Any] = values.filter { !$0.value.trimmingCharacters(in: .whitespaces).isEmpty }
        if req.formValue("confirmDistinct") == "on" { body["confirmDistinct"] = true }
        do {
            let created: PatientDTO = try await api(req).post("/patients", body)
            return req.redirect(to: "/desk/patients/\(created.id.uuidString)?notice=patientRegistered", redirectType: .normal)
        } catch API.Failure.problem(let problem) where problem.status == 422 {
            var errors: [String: String] = [:]
            for error in problem.errors ?? [] where errors[error.field] == nil {
                errors[error.field] = screen.fieldMessage(error.field, code: error.code)
            }
            return await patientsPage(
                req, screen, query: [:], newPatient: values, errors: errors, message: screen.t("error.invalid"),
                status: .unprocessableEntity)
        } catch API.Failure.problem(let problem) where problem.status == 409 {
            let duplicateOfNumber = problem.type == "/problems/duplicate-patient"
            return await patientsPage(
                req, screen, query: [:], newPatient: values, duplicates: problem.candidates ?? [],
                duplicateOfNumber: duplicateOfNumber, status: .conflict)
        } catch {
            return await patientsPage(
                req, screen, query: [:], newPatient: values, message: screen.sentence(for: error),
                status: .serviceUnavailable)
        }
    }

    private func patientsPage(
        _ req: Request, _ screen: Screen, query: [String: String], found: [PatientDTO]? = nil,
        newPatient: [String: String]? = nil, duplicates: [WireProblem.Candidate] = [], duplicateOfNumber: Bool = false,
        errors: [String: String] = [:], message: String? = nil, status: HTTPStatus = .ok
    ) async -> Response {
        var extra: [String: Any] = [:]
        if let message { extra["error"] = message }
        extra["query"] = Self.searchFields.map { field in
            ["name": field, "label": screen.t(field), "value": query[field] ?? "", "inputType": field == "birthDate" ? "date" : "search"]
        }
        extra["searched"] = found != nil
        extra["patients"] = (found ?? []).map { patient in Self.patientRow(patient, screen) }
        // 신환 등록, prefilled with what was searched for when nothing was found.
        let values = newPatient ?? ["name": query["name"] ?? "", "birthDate": query["birthDate"] ?? "", "phone": query["phone"] ?? ""]
        extra["showNewPatient"] = newPatient != nil || found?.isEmpty == true
        extra["newPatient"] = patientFormFields(values, errors: errors, screen)
        if !duplicates.isEmpty {
            extra["duplicates"] = duplicates.map { candidate in
                [
                    "id": candidate.id.uuidString, "chartNumber": candidate.chartNumber, "name": candidate.name,
                    "birthDate": candidate.birthDate ?? "", "sexAge": Self.sexAge(candidate.sex, candidate.age, screen),
                ] as [String: Any]
            }
            extra["duplicateMessage"] = screen.t(duplicateOfNumber ? "duplicateResident" : "possibleDuplicate")
            extra["mayConfirm"] = !duplicateOfNumber
            extra["hasDuplicates"] = true
        }
        return render("patients", screen.context(title: screen.t("patientSearch"), extra), status: status)
    }

    func patientFormFields(_ values: [String: String], errors: [String: String], _ screen: Screen) -> [[String: Any]] {
        Self.newPatientFields.map { field in
            var context: [String: Any] = [
                "name": field, "label": screen.t(field), "value": values[field] ?? "",
                "required": ["name", "birthDate", "sex"].contains(field), "isSex": field == "sex",
                "inputType": field == "birthDate" ? "date" : (field == "phone" ? "tel" : "text"),
                "maxLength": field == "address" ? 200 : (field == "name" ? 100 : 20),
                "fieldError": errors[field] ?? "", "hasError": errors[field] != nil,
                "requiredMessage": screen.fieldMessage(field, code: "required"),
            ]
            if field == "sex" {
                context["options"] = (["M", "F", "U"] as [String]).map { (sex: String) -> [String: Any] in
                    ["value": sex, "label": screen.t("sex.\(sex)"), "selected": values[field] == .some(sex)]
                }
            }
            return context
        }
    }

    static func patientRow(_ patient: PatientDTO, _ screen: Screen) -> [String: Any] {
        [
            "id": patient.id.uuidString, "chartNumber": patient.chartNumber, "name": patient.name,
            "birthDate": patient.birthDate ?? "", "sexAge": sexAge(patient.sex, patient.age, screen),
            "phone": patient.phone ?? "",
        ]
    }

    /// The chart numbers of `ids` from the desk's registry, for a list that shows its patients by
    /// what its own service knows; none when reception does not answer (the list still shows).
    func chartNumbers(_ req: Request, of ids: [UUID?]) async -> [UUID: String] {
        let wanted = Array(Set(ids.compactMap { $0 })).prefix(200)
        guard !wanted.isEmpty,
            let found: ChartNumbersDTO = try? await api(req).post(
                "/patients/lookup", ["ids": wanted.map(\.uuidString)])
        else { return [:] }
        return Dictionary(found.items.map { ($0.id, $0.chartNumber) }, uniquingKeysWith: { first, _ in first })
    }

    /// "남 · 41세" / "M · 41".
    static func sexAge(_ sex: String?, _ age: Int?, _ screen: Screen) -> String {
        let sexLabel = sex.map { screen.t("sex.\($0)") } ?? ""
        guard let age else { return sexLabel }
        return sexLabel + " · " + String(format: screen.t("ageYears"), age)
    }

    /// GET /desk/patients/{id}: the patient, their visits, 접수 for today and the correction form.
    @Sendable func patientPage(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            return req.redirect(to: "/desk?error=notFound", redirectType: .normal)
        }
        return await patientScreen(req, screen, id: id)
    }

    private func patientScreen(
        _ req: Request, _ screen: Screen, id: UUID, correction: [String: String]? = nil, errors: [String: String] = [:],
        message: String? = nil, status: HTTPStatus = .ok
    ) async -> Response {
        var extra: [String: Any] = [:]
        let patient: PatientDTO
        do {
            patient = try await api(req).get("/patients/\(id.uuidString)")
        } catch {
            return render(
                "patient", screen.context(title: screen.t("patient"), ["error": screen.sentence(for: error)]),
                status: .serviceUnavailable)
        }
        if let into = patient.mergedInto {
            extra["mergedInto"] = into.uuidString
            extra["mergedMessage"] = String(format: screen.t("mergedInto"), patient.mergedIntoChartNumber ?? "?")
        }
        extra["patient"] = Self.patientRow(patient, screen).merging([
            "address": patient.address ?? "", "residentNumber": patient.residentNumber ?? "",
            "version": patient.version,
        ]) { $1 }
        do {
            let visits: ListOf<ReceptionDTO> = try await api(req).post(
                "/receptions/search?limit=\(BoardQuery.pageSize)", ["patientId": id.uuidString])
            extra["visits"] = visits.items.map { Self.visitRow($0, screen) }
        } catch {
            extra["error"] = screen.sentence(for: error)
        }
        extra["departments"] = Catalogue.departments.map { department in
            ["value": department.ko, "label": screen.language == .ko ? department.ko : department.en]
        }
        extra["idempotencyKey"] = UUID().uuidString
        let values =
            correction ?? [
                "name": patient.name, "birthDate": patient.birthDate ?? "", "sex": patient.sex,
                "phone": patient.phone ?? "", "address": patient.address ?? "",
            ]
        extra["correction"] = patientFormFields(values, errors: errors, screen)
        if let message { extra["error"] = message }
        let title = "\(patient.name) (\(patient.chartNumber))"
        return render("patient", screen.context(title: title, extra), status: status)
    }

    /// POST /desk/patients/{id}/receptions: 접수 of a registered patient, nothing retyped.
    @Sendable func registerPatientVisit(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            return req.redirect(to: "/desk?error=notFound", redirectType: .normal)
        }
        var body: [String: Any] = ["patientId": id.uuidString]
        for field in ["department", "symptom", "priority"] {
            if let value = req.formValue(field), !value.trimmingCharacters(in: .whitespaces).isEmpty { body[field] = value }
        }
        let key = req.formValue("idempotencyKey").flatMap(UUID.init(uuidString:))?.uuidString ?? UUID().uuidString
        do {
            let _: ReceptionDTO = try await api(req).post(
                "/receptions", body, headers: ["Idempotency-Key": "screen-\(key)"])
            return req.redirect(to: "/desk/patients/\(id.uuidString)?notice=registered", redirectType: .normal)
        } catch API.Failure.problem(let problem) where problem.status == 422 {
            let field = problem.errors?.first?.field ?? "department"
            return await patientScreen(
                req, screen, id: id,
                message: screen.fieldMessage(field, code: problem.errors?.first?.code ?? "invalidFormat"),
                status: .unprocessableEntity)
        } catch {
            return await patientScreen(req, screen, id: id, message: screen.sentence(for: error), status: .serviceUnavailable)
        }
    }

    /// POST /desk/patients/{id}: 환자 정보 수정 with the version the page showed.
    @Sendable func correctPatient(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            return req.redirect(to: "/desk?error=notFound", redirectType: .normal)
        }
        var values: [String: String] = [:]
        for field in Self.newPatientFields { values[field] = req.formValue(field) ?? "" }
        var body: [String: Any] = ["version": Int(req.formValue("version") ?? "") ?? 0]
        for (field, value) in values {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            // An emptied optional field clears it; a required one left empty is refused by the API.
            body[field] = trimmed.isEmpty && ["phone", "address"].contains(field) ? NSNull() : trimmed
        }
        do {
            try await api(req).patch("/patients/\(id.uuidString)", body)
            return req.redirect(to: "/desk/patients/\(id.uuidString)?notice=corrected", redirectType: .normal)
        } catch API.Failure.problem(let problem) where problem.status == 422 {
            var errors: [String: String] = [:]
            for error in problem.errors ?? [] where errors[error.field] == nil {
                errors[error.field] = screen.fieldMessage(error.field, code: error.code)
            }
            return await patientScreen(
                req, screen, id: id, correction: values, errors: errors, message: screen.t("error.invalid"),
                status: .unprocessableEntity)
        } catch API.Failure.problem(let problem) where problem.status == 409 {
            return await patientScreen(req, screen, id: id, message: screen.t("error.stale"), status: .conflict)
        } catch {
            return await patientScreen(
                req, screen, id: id, correction: values, message: screen.sentence(for: error),
                status: .serviceUnavailable)
        }
    }
}
