import Foundation
import Runtime
import SQLiteNIO
import TestSupport
import Testing

/// Real `hospital` processes, killed and restarted.
/// The embedded default's processes (SQLite files); skipped on the PostgreSQL run.
@Suite("Processes", .serialized, .disabled(if: TestSystem.onPostgres, "the embedded default runs on SQLite"))
struct ProcessTests {
    @Test("SIGKILL right after a burst of registrations loses none: each reaches the doctor exactly once")
    func sigkillAfterBurst() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try await HospitalProcess.serve([], dataDirectory: directory)
        let gateway = try #require(first.url(.gateway))

        // Hold the event log's write lock: registrations are answered from reception's own
        // database, but no event can leave its outbox. The kill then lands with every accepted
        // registration still waiting to be relayed: the window a crash can hit.
        let log = try await SQLiteConnection.open(
            storage: .file(path: directory.appendingPathComponent("events.sqlite").path))
        _ = try await log.query("BEGIN EXCLUSIVE", [])

        let accepted = try await withThrowingTaskGroup(of: String?.self) { group in
            for i in 0..<100 {
                group.addTask {
                    let response = try await HTTPResult.send(
                        .POST, gateway, "/receptions", body: Data("{\"patientName\": \"환자 \(i)\"}".utf8))
                    return response.status == 201 ? response.json["id"] as? String : nil
                }
            }
            return try await group.reduce(into: Set<String>()) { if let id = $1 { $0.insert(id) } }
        }
        first.kill()
        #expect(accepted.count == 100)
        _ = try await log.query("ROLLBACK", [])
        try await log.close()
        let waiting = try await TestSystem.count(
            "outbox", in: directory.appendingPathComponent("reception.sqlite"),
            where: "published_at IS NULL AND payload LIKE '%TreatmentReceived%'")
        #expect(waiting == 100, "the kill should have found every registration still in the outbox")

        let second = try await HospitalProcess.serve([], dataDirectory: directory)
        let restarted = try #require(second.url(.gateway))
        let diagnoses = try await eventually("100 diagnoses", timeout: .seconds(30)) {
            let response = try await HTTPResult.send(.GET, restarted, "/diagnoses?limit=200")
            let items = response.json["items"] as? [[String: Any]] ?? []
            return items.count >= 100 ? items : nil
        }
        let receptionIds = diagnoses.compactMap { $0["receptionId"] as? String }
        #expect(receptionIds.count == 100)
        #expect(Set(receptionIds) == accepted)
        let board = try await eventually("100 visits on the board", timeout: .seconds(30)) {
            let response = try await HTTPResult.send(.GET, restarted, "/patientManagements?limit=200")
            return response.json["total"] as? Int == 100 ? response : nil
        }
        #expect(board.status == 200)
        #expect(second.terminate() == 0)
    }

    @Test("One process per service forms one system; a killed diagnosis process catches up when restarted")
    func processPerService() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var services: [ServiceName: HospitalProcess] = [:]
        for service in [ServiceName.reception, .diagnosis, .examination, .patientManagement] {
            services[service] = try await HospitalProcess.serve([service], dataDirectory: directory)
        }
        var upstreams: [String: String] = [:]
        for (service, process) in services {
            upstreams["HOSPITAL_\(service.rawValue.uppercased().replacingOccurrences(of: "-", with: "_"))_URL"] =
                try #require(process.url(service)).absoluteString
        }
        let gatewayProcess = try await HospitalProcess.serve(
            [.gateway], dataDirectory: directory, environment: upstreams)
        let gateway = try #require(gatewayProcess.url(.gateway))
        func post(_ path: String, _ json: String) async throws -> HTTPResult {
            try await HTTPResult.send(.POST, gateway, path, body: Data(json.utf8))
        }
        func get(_ path: String) async throws -> [String: Any] { try await HTTPResult.send(.GET, gateway, path).json }

        // The journey across five processes.
        let receptionId = try #require(try await post("/receptions", #"{"patientName": "최지우"}"#).json["id"] as? String)
        let diagnosisId = try await eventually("the diagnosis") {
            (try await get("/diagnoses?receptionId=\(receptionId)")["items"] as? [[String: Any]])?.first?["id"]
                as? String
        }
        #expect(
            try await post(
                "/diagnoses/\(diagnosisId)/prescriptions", #"{"examinations": [{"code": "CBC", "name": "혈액검사"}]}"#
            ).status == 200)
        let examId = try await eventually("the exam") {
            (try await get("/examinations?diagnosisId=\(diagnosisId)")["items"] as? [[String: Any]])?.first?["id"]
                as? String
        }
        #expect(try await post("/examinations/\(examId)/perform", #"{"result": "정상"}"#).status == 200)
        _ = try await eventually("EXAM_DONE") {
            try await get("/diagnoses/\(diagnosisId)")["status"] as? String == "EXAM_DONE" ? true : nil
        }
        #expect(try await post("/diagnoses/\(diagnosisId)/complete", #"{"note": "귀가"}"#).status == 200)
        _ = try await eventually("the desk sees COMPLETED") {
            try await get("/patientManagements/\(receptionId)")["status"] as? String == "COMPLETED" ? true : nil
        }

        // Kill the doctor's service; the desk keeps registering.
        let diagnosisPort = try #require(services[.diagnosis]!.port(.diagnosis))
        services[.diagnosis]!.kill()
        var waiting: Set<String> = []
        for i in 0..<5 {
            let response = try await post("/receptions", "{\"patientName\": \"대기 \(i)\"}")
            #expect(response.status == 201)
            waiting.insert(try #require(response.json["id"] as? String))
        }
        #expect(try await HTTPResult.send(.GET, gateway, "/diagnoses").status == 503)

        // Back, and told where the gateway is (for the revocations and the clinic layout).
        services[.diagnosis] = try await HospitalProcess.serve(
            [.diagnosis], dataDirectory: directory, ports: [.diagnosis: diagnosisPort],
            environment: ["HOSPITAL_GATEWAY_URL": gateway.absoluteString])
        let created = try await eventually("the missing diagnoses") {
            let items = try await get("/diagnoses?status=WAITING&limit=200")["items"] as? [[String: Any]] ?? []
            return items.count >= 5 ? items : nil
        }
        #expect(Set(created.compactMap { $0["receptionId"] as? String }) == waiting)
        #expect(created.count == 5)

        // A room an administrator adds at the gateway reaches the doctor's own process.
        var layout = try #require(try await get("/admin/clinic")["layout"] as? [String: Any])
        var departments = try #require(layout["departments"] as? [[String: Any]])
        let naegwa = try #require(departments.firstIndex { $0["name"] as? String == "내과" })
        departments[naegwa]["rooms"] = ["진료실 1", "진료실 2", "진료실 9"]
        layout["departments"] = departments
        let saved = try await HTTPResult.send(
            .PUT, gateway, "/admin/clinic", body: try JSONSerialization.data(withJSONObject: ["version": 0, "layout": layout]))
        #expect(saved.status == 200, "\(saved.text)")
        let visit = try #require(
            try await post("/receptions", #"{"patientName": "구진료", "department": "내과"}"#).json["id"] as? String)
        let consultation = try await eventually("its diagnosis") {
            (try await get("/diagnoses?receptionId=\(visit)")["items"] as? [[String: Any]])?.first?["id"] as? String
        }
        _ = try await eventually("a call to the new room", timeout: .seconds(30)) {
            try await post("/diagnoses/\(consultation)/call", #"{"room": "진료실 9"}"#).status == 200 ? true : nil
        }

        #expect(gatewayProcess.terminate() == 0)
        for process in services.values { #expect(process.terminate() == 0) }
    }

    @Test("hospital rebuild patient-management rebuilds the board from the log while the system runs")
    func rebuildCommand() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let running = try await HospitalProcess.serve([], dataDirectory: directory)
        let gateway = try #require(running.url(.gateway))
        for i in 0..<3 {
            _ = try await HTTPResult.send(
                .POST, gateway, "/receptions", body: Data("{\"patientName\": \"환자 \(i)\"}".utf8))
        }
        let before = try await eventually("3 visits") {
            let board = try await HTTPResult.send(.GET, gateway, "/patientManagements").json
            return board["total"] as? Int == 3 ? board["items"] as? [[String: Any]] : nil
        }

        let rebuild = ChildProcess()
        rebuild.executableURL = HospitalProcess.executable
        rebuild.arguments = ["rebuild", "patient-management", "--data-dir", directory.path, "--log-level", "warning"]
        let pipe = Pipe()
        rebuild.standardOutput = pipe
        try HospitalProcess.launch(rebuild)
        rebuild.waitUntilExit()
        let printed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(rebuild.terminationStatus == 0)
        #expect(printed.contains("3 visits"))

        let after = try await HTTPResult.send(.GET, gateway, "/patientManagements").json["items"] as? [[String: Any]]
        #expect(Snapshot.canonical(after ?? []) == Snapshot.canonical(before))
        #expect(running.terminate() == 0)
    }
}
