import Foundation
import Runtime
import TestSupport
import Testing

/// One outcome per visit: commands of different services fired at the same instant.
///
/// The diagnosis service decides (README, "One outcome per visit"): it applies the desk's
/// cancellation and the doctor's commands one after another, and reception, examination and the
/// board follow what it decided. Each crossing is fired many times at once, each visit's two
/// requests released together, so every interleaving the machine produces is tried; afterwards
/// every service and the board must tell the same story.
@Suite("One outcome per visit")
struct CrossingTests {
    @Test("Every crossing of commands ends with reception, diagnosis, exams and the board agreeing")
    func crossingsInOneProcess() async throws {
        try await withTestSystem { system in
            let client = Client(base: system.url())
            try await Crossing.fireAll(rounds: 8, client: client)
        }
    }

    @Test("The same crossings across one process per service")
    func crossingsAcrossProcesses() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var services: [HospitalProcess] = []
        var upstreams: [String: String] = [:]
        for service in [ServiceName.reception, .diagnosis, .examination, .patientManagement] {
            let process = try await HospitalProcess.serve([service], dataDirectory: directory)
            services.append(process)
            upstreams["HOSPITAL_\(service.rawValue.uppercased().replacingOccurrences(of: "-", with: "_"))_URL"] =
                try #require(process.url(service)).absoluteString
        }
        let gateway = try await HospitalProcess.serve([.gateway], dataDirectory: directory, environment: upstreams)
        try await Crossing.fireAll(rounds: 4, client: Client(base: try #require(gateway.url(.gateway))))
        withExtendedLifetime(services) {}
    }
}

/// Two commands of different services racing on one visit.
enum Crossing: String, CaseIterable, Sendable {
    case cancelComplete = "desk cancel × doctor complete"
    case cancelReject = "desk cancel × doctor reject"
    case cancelPrescribe = "desk cancel × doctor prescribe"
    case cancelPerform = "desk cancel × exam performed"
    case rejectPerform = "doctor reject × exam performed"
    case rejectExamCancel = "doctor reject × exam canceled"
    case completeCancelAfterExam = "desk cancel × doctor complete after an exam"

    static let deskReason = "환자 귀가"
    static let rejectReason = "타 병원 전원"

    /// Fires every crossing `rounds` times, all visits at once, then checks each visit's story.
    static func fireAll(rounds: Int, client: Client) async throws {
        // Prepare every visit first, so the racing requests are released together. Eight at a
        // time: what is under test is the crossing, not a burst of 56 registrations on one
        // writer, which on two cores shared with every other suite passed a request's 30 s
        // deadline (CI, on SQLite and on PostgreSQL).
        var visits: [(Crossing, Visit, round: Int)] = []
        let plan = allCases.flatMap { crossing in (0..<rounds).map { (crossing, $0) } }
        try await withThrowingTaskGroup(of: (Crossing, Visit, Int).self) { group in
            var next = plan.makeIterator()
            func startOne() {
                guard let (crossing, round) = next.next() else { return }
                group.addTask { (crossing, try await crossing.prepare(client), round) }
            }
            for _ in 0..<8 { startOne() }
            for try await visit in group {
                visits.append(visit)
                startOne()
            }
        }
        let gate = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (crossing, visit, round) in visits {
                for (index, command) in crossing.commands(visit).enumerated() {
                    let (path, body) = (command.path, try JSONSerialization.data(withJSONObject: command.body))
                    // Round 0 releases both at once; later rounds hold the second command back a
                    // little longer each time, across the time an event takes between services,
                    // so both sides get to win.
                    let lag = Duration.milliseconds(index == 0 ? 0 : round * 25)
                    group.addTask {
                        await gate.wait()
                        try await Task.sleep(for: lag)
                        let response = try await HTTPResult.send(.POST, client.base, path, body: body)
                        // Each side either wins (200) or finds the visit already closed (409).
                        #expect([200, 409].contains(response.status), "\(crossing.rawValue): \(path) \(response.text)")
                    }
                }
            }
            await gate.open()
            try await group.waitForAll()
        }
        var outcomes: [Crossing: [String: Int]] = [:]
        for (crossing, visit, _) in visits {
            let story = try await client.settledStory(of: visit, crossing: crossing)
            outcomes[crossing, default: [:]][story, default: 0] += 1
        }
        // Which side won is the machine's business; that they all agree is the test's.
        print("crossing outcomes:", outcomes.map { "\($0.key.rawValue) → \($0.value)" }.sorted())
    }

    func prepare(_ client: Client) async throws -> Visit {
        let receptionId = try await client.register()
        let diagnosisId = try await client.diagnosis(of: receptionId)
        switch self {
        case .cancelComplete, .cancelReject, .cancelPrescribe:
            return Visit(receptionId: receptionId, diagnosisId: diagnosisId, examId: nil)
        case .cancelPerform, .rejectPerform, .rejectExamCancel, .completeCancelAfterExam:
            let examId = try await client.prescribe(diagnosisId)
            if self == .completeCancelAfterExam {
                #expect(try await client.post("/examinations/\(examId)/perform", ["result": "정상"]).status == 200)
                try await client.wait("/diagnoses/\(diagnosisId)", "status", "EXAM_DONE")
            }
            return Visit(receptionId: receptionId, diagnosisId: diagnosisId, examId: examId)
        }
    }

    func commands(_ visit: Visit) -> [(path: String, body: [String: Any])] {
        let cancel = ("/receptions/\(visit.receptionId)/cancel", ["reason": Self.deskReason] as [String: Any])
        let complete = ("/diagnoses/\(visit.diagnosisId)/complete", ["note": "이상 없음"] as [String: Any])
        let reject = ("/diagnoses/\(visit.diagnosisId)/reject", ["reason": Self.rejectReason] as [String: Any])
        let prescribe = (
            "/diagnoses/\(visit.diagnosisId)/prescriptions",
            ["examinations": [["code": "XR", "name": "흉부 X선"]]] as [String: Any]
        )
        let perform = ("/examinations/\(visit.examId ?? "")/perform", ["result": "정상"] as [String: Any])
        let examCancel = ("/examinations/\(visit.examId ?? "")/cancel", ["reason": "장비 고장"] as [String: Any])
        return switch self {
        case .cancelComplete, .completeCancelAfterExam: [cancel, complete]
        case .cancelReject: [cancel, reject]
        case .cancelPrescribe: [cancel, prescribe]
        case .cancelPerform: [cancel, perform]
        case .rejectPerform: [reject, perform]
        case .rejectExamCancel: [reject, examCancel]
        }
    }
}

struct Visit: Sendable {
    var receptionId: String
    var diagnosisId: String
    var examId: String?
}

/// Releases every waiting task at once.
actor Gate {
    private var isOpen = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiting.append($0) }
    }

    func open() {
        isOpen = true
        for continuation in waiting { continuation.resume() }
        waiting = []
    }
}

/// The gateway, as the screens use it.
struct Client: Sendable {
    var base: URL

    func post(_ path: String, _ json: [String: Any]) async throws -> HTTPResult {
        try await HTTPResult.send(.POST, base, path, body: try JSONSerialization.data(withJSONObject: json))
    }

    func get(_ path: String) async throws -> [String: Any] {
        let response = try await HTTPResult.send(.GET, base, path)
        return response.status == 200 ? response.json : [:]
    }

    func register() async throws -> String {
        let response = try await post("/receptions", ["patientName": "경합 환자", "department": "내과"])
        try #require(response.status == 201, "\(response.text)")
        return try #require(response.json["id"] as? String)
    }

    func diagnosis(of receptionId: String) async throws -> String {
        try await eventually("a diagnosis for \(receptionId)", timeout: .seconds(30)) {
            (try await get("/diagnoses?receptionId=\(receptionId)")["items"] as? [[String: Any]])?.first?["id"]
                as? String
        }
    }

    func prescribe(_ diagnosisId: String) async throws -> String {
        let response = try await post(
            "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]])
        try #require(response.status == 200, "\(response.text)")
        return try await eventually("the exam of \(diagnosisId)", timeout: .seconds(30)) {
            (try await get("/examinations?diagnosisId=\(diagnosisId)")["items"] as? [[String: Any]])?.first?["id"]
                as? String
        }
    }

    func wait(_ path: String, _ field: String, _ value: String) async throws {
        _ = try await eventually("\(path) \(field) = \(value)", timeout: .seconds(30)) {
            try await get(path)[field] as? String == value ? true : nil
        }
    }

    /// Waits until the diagnosis is closed and every other service tells its story; returns the
    /// outcome. Fails if they still disagree after the deadline, or disagree again once settled.
    func settledStory(of visit: Visit, crossing: Crossing) async throws -> String {
        var last = ""
        do {
            return try await eventually("\(crossing.rawValue): one story", timeout: .seconds(30)) {
                let (outcome, problems) = try await story(of: visit)
                last = problems.joined(separator: "; ")
                return problems.isEmpty ? outcome : nil
            }
        } catch {
            Issue.record("\(crossing.rawValue) on \(visit.receptionId): \(last)")
            throw error
        }
    }

    /// The diagnosis's outcome and every way the other services contradict it.
    func story(of visit: Visit) async throws -> (String, [String]) {
        let diagnosis = try await get("/diagnoses/\(visit.diagnosisId)")
        let reception = try await get("/receptions/\(visit.receptionId)")
        let board = try await get("/patientManagements/\(visit.receptionId)")
        let exams = (try await get("/examinations?diagnosisId=\(visit.diagnosisId)")["items"] as? [[String: Any]]) ?? []
        let outcome = diagnosis["status"] as? String ?? "?"
        var problems: [String] = []
        guard ["COMPLETED", "REJECTED", "CANCELED"].contains(outcome) else {
            return (outcome, ["the diagnosis is still \(outcome)"])
        }
        let receptionStatus = reception["status"] as? String
        let expectedReception = outcome == "COMPLETED" ? "COMPLETED" : "CANCELED"
        if receptionStatus != expectedReception {
            problems.append("diagnosis \(outcome) but reception \(receptionStatus ?? "?")")
        }
        if outcome == "REJECTED", reception["cancelReason"] as? String != Crossing.rejectReason {
            problems.append("reception's reason \(reception["cancelReason"] ?? "none") after a rejection")
        }
        if outcome == "COMPLETED", reception["canceledAt"] != nil, !(reception["canceledAt"] is NSNull) {
            problems.append("a completed reception still shows a cancellation")
        }
        if board["status"] as? String != outcome {
            problems.append("diagnosis \(outcome) but the board \(board["status"] as? String ?? "?")")
        }
        let expectedReason: String? =
            switch outcome {
            case "REJECTED": Crossing.rejectReason
            case "CANCELED": Crossing.deskReason
            default: nil
            }
        if board["closingReason"] as? String != expectedReason {
            problems.append("the board's reason \(board["closingReason"] ?? "none") for \(outcome)")
        }
        // Every exam the diagnosis knows tells the same story in the exam service and on the board.
        let diagnosisOrders = diagnosis["orders"] as? [[String: Any]] ?? []
        let boardOrders = board["orders"] as? [[String: Any]] ?? []
        if diagnosisOrders.count != exams.count || boardOrders.count != exams.count {
            problems.append(
                "orders: diagnosis \(diagnosisOrders.count), exams \(exams.count), board \(boardOrders.count)")
        }
        for exam in exams {
            let orderId = exam["orderId"] as? String
            let status = exam["status"] as? String
            if outcome != "COMPLETED", status == "REQUESTED" {
                problems.append("an exam is still REQUESTED on a \(outcome) visit")
            }
            let inDiagnosis = diagnosisOrders.first { $0["orderId"] as? String == orderId }?["status"] as? String
            let onBoard = boardOrders.first { $0["orderId"] as? String == orderId }?["status"] as? String
            if inDiagnosis != status || onBoard != status {
                problems.append("exam \(status ?? "?"), diagnosis's order \(inDiagnosis ?? "?"), board's \(onBoard ?? "?")")
            }
        }
        return (outcome, problems)
    }
}
