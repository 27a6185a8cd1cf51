import Foundation
import ServiceKit
import Vapor

/// The examiner: the exams waiting, each performed with a result or canceled with a reason.
extension WebScreens {
    @Sendable func examiner(_ req: Request) async throws -> Response {
        await examinerPage(req, Screen(req, timeZone: timeZone))
    }

    func examinerPage(
        _ req: Request, _ screen: Screen, message: String? = nil, status: HTTPStatus = .ok
    ) async
        -> Response
    {
        let room = chosenExamRoom(req)
        var extra: [String: Any] = [
            "resultRequired": screen.fieldMessage("examResult", code: "required"),
            "reasonRequired": screen.fieldMessage("cancelExamReason", code: "required"),
            "examRoomChoices": clinic.examRooms.map { ["name": $0.name, "selected": $0.name == room?.name] as [String: Any] },
        ]
        if let room { extra["examRoom"] = room.name }
        do {
            let (listed, callsBeforeNoShow) = try await examsListed(req)
            var exams: [[String: Any]] = []
            let charts = await chartNumbers(req, of: listed.map(\.patientId))
            for exam in listed {
                var row: [String: Any] = [
                    "id": exam.id.uuidString, "code": exam.code,
                    "name": Catalogue.exam(code: exam.code, name: exam.name, screen.language),
                    "patientName": exam.patientName, "requestedAt": screen.clock(exam.requestedAt),
                    "chartNumber": exam.patientId.flatMap { charts[$0] } ?? "",
                    "sexAge": exam.sex.map { _ in Self.sexAge(exam.sex, exam.age, screen) } ?? "",
                    "files": await attachmentRows(req, examination: exam.id, role: "examiner", screen: screen),
                ]
                if let callsBeforeNoShow { row["queue"] = examQueueContext(exam, callsBeforeNoShow: callsBeforeNoShow, screen) }
                exams.append(row)
            }
            extra["exams"] = exams
            extra["listed"] = Self.examsFingerprint(listed)
        } catch {
            extra["error"] = screen.sentence(for: error)
        }
        if let message { extra["error"] = message }
        return render("examiner", screen.context(title: screen.t("examWorklist"), extra), status: status)
    }

    /// The page's notice region, asked every few seconds: a link to reload the worklist once the
    /// exams waiting are no longer the ones the page lists (the page itself is not redrawn under
    /// an examiner typing a result). An unchanged answer is a 304 to its ETag.
    @Sendable func examinerChanges(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let changed = Self.examsFingerprint(try await examsListed(req).exams) != req.query[String.self, at: "listed"]
        let tag = "\"\(changed ? "changed" : "same")-\(screen.language.rawValue)\""
        if req.headers.first(name: .ifNoneMatch) == tag {
            return Response(status: .notModified, headers: ["ETag": tag])
        }
        let response = render("examChanges", ["changed": changed, "t": screen.language.strings])
        response.headers.replaceOrAdd(name: .eTag, value: tag)
        return response
    }

    /// The same notice, pushed: the examiners' live worklist (`GET /examinations/live`) turned
    /// into the notice's HTML as it changes, instead of a read every few seconds.
    @Sendable func examinerChangesEvents(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let listed = req.query[String.self, at: "listed"]
        let byRoom = chosenExamRoom(req) != nil
        return try await liveRegion(req, path: examsLivePath(req)) { json in
            let exams =
                byRoom
                ? try APIJSON.decoder().decode(ExamQueueDTO.self, from: json).items
                : try APIJSON.decoder().decode(ListOf<ExamDTO>.self, from: json).items
            let changed = Self.examsFingerprint(exams) != listed
            return self.library.render(["changed": changed, "t": screen.language.strings], withTemplate: "examChanges") ?? ""
        }
    }

    /// What a worklist shows, as a short deterministic fingerprint (the same on every gateway
    /// replica): FNV-1a over the sorted keys.
    static func fingerprint(of keys: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in keys.sorted().joined(separator: ",").utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    /// 검사 시행 with the result.
    @Sendable func perform(_ req: Request) async throws -> Response {
        try await examCommand(req, path: "perform", field: "result", label: "examResult", notice: "performed")
    }

    /// 검사 취소 with a reason.
    @Sendable func cancelExam(_ req: Request) async throws -> Response {
        try await examCommand(req, path: "cancel", field: "reason", label: "cancelExamReason", notice: "examCanceled")
    }

    private func examCommand(
        _ req: Request, path: String, field: String, label: String, notice: String
    ) async throws
        -> Response
    {
        let screen = Screen(req, timeZone: timeZone)
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            return req.redirect(to: "/examiner?error=notFound", redirectType: .normal)
        }
        guard let text = req.formValue(field) else {
            return await examinerPage(
                req, screen, message: screen.fieldMessage(label, code: "required"), status: .unprocessableEntity)
        }
        do {
            let _: ExamDTO = try await api(req).post(
                "/examinations/\(id.uuidString)/\(path)", [field: text])
            return req.redirect(to: "/examiner?notice=\(notice)", redirectType: .normal)
        } catch {
            if let refused = refusal(req, error, kind: "exam", page: "/examiner", list: "/examiner") { return refused }
            return await examinerPage(req, screen, message: screen.sentence(for: error), status: .serviceUnavailable)
        }
    }
}
