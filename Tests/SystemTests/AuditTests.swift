import Foundation
import Identity
import NIOHTTP1
import Runtime
import SQLKit
import ServiceKit
import Testing

/// The audit trail: every read and change of patient data, by whom, tamper-evident.
@Suite("Audit trail")
struct AuditTests {
    func call(
        _ system: TestSystem, _ method: HTTPMethod, _ path: String, as role: Role, user: String,
        via service: ServiceName = .gateway, json: [String: Any]? = nil
    ) async throws -> HTTPResult {
        let token = try await TestKeys.token(role, username: user)
        return try await HTTPResult.send(
            method, system.url(service), path, body: try json.map { try JSONSerialization.data(withJSONObject: $0) },
            headers: [("authorization", "Bearer \(token)")])
    }

    func trail(_ system: TestSystem, _ query: String) async throws -> [[String: Any]] {
        let answer = try await call(system, .GET, "/admin/audit?\(query)", as: .admin, user: "auditor")
        try #require(answer.status == 200, "\(answer.text)")
        return answer.json["items"] as? [[String: Any]] ?? []
    }

    @Test("N reads of a patient by a user give N entries naming that user, screens included; CSV export")
    func readsAreRecorded() async throws {
        try await withTestSystem { system in
            let registered = try await call(
                system, .POST, "/receptions", as: .desk, user: "kim.desk",
                json: ["patientName": "홍길동", "patientId": "C-77"])
            let visit = try #require(registered.json["id"] as? String)
            for via in [ServiceName.gateway, .gateway, .gateway, .reception, .reception] {
                #expect(
                    try await call(system, .GET, "/receptions/\(visit)", as: .doctor, user: "lee.doctor", via: via)
                        .status == 200)
            }
            _ = try await eventually("the visit on the board") {
                try await system.get("/patientManagements/\(visit)").status == 200 ? true : nil
            }
            // The desk's screen reads the board as its user.
            let screen = try await HTTPResult.send(
                .GET, system.url(), "/desk",
                headers: [("cookie", "hospital_session=\(try await TestKeys.token(.desk, username: "park.desk"))")])
            #expect(screen.status == 200 && screen.text.contains("홍길동"))

            let lee = try await eventually("five reads by lee.doctor") {
                let entries = try await trail(system, "user=lee.doctor")
                return entries.count == 5 ? entries : nil
            }
            #expect(
                lee.allSatisfy { $0["action"] as? String == "GET /receptions/:id" && $0["role"] as? String == "doctor" }
            )
            #expect(lee.allSatisfy { ($0["receptionIds"] as? [String]) == [visit] && $0["outcome"] as? Int == 200 })
            #expect(lee.allSatisfy { $0["patientId"] as? String == "C-77" })
            let board = try await eventually("the screen's board read by park.desk") {
                try await trail(system, "user=park.desk").first {
                    ($0["receptionIds"] as? [String])?.contains(visit) == true
                }
            }
            #expect(board["action"] as? String == "GET /patientManagements")
            #expect((board["client"] as? String)?.contains(" for 127.0.0.1") == true, "the browser's address")
            let registration = try await trail(system, "user=kim.desk")
            #expect(registration.map { $0["action"] as? String } == ["POST /receptions"])
            #expect(try await trail(system, "receptionId=\(visit)").count >= 7)
            #expect(try await trail(system, "patientId=C-77").count >= 6)
            #expect(try await call(system, .GET, "/admin/audit?from=yesterday", as: .admin, user: "a").status == 400)
            #expect(try await call(system, .GET, "/admin/audit", as: .desk, user: "kim.desk").status == 403)

            let csv = try await call(
                system, .GET, "/admin/audit?user=lee.doctor&format=csv", as: .admin, user: "auditor")
            #expect(csv.contentType.hasPrefix("text/csv"))
            let lines = csv.text.split(separator: "\r\n")
            #expect(lines.first == "service,seq,at,user,role,action,receptionIds,patientId,outcome,client,hash")
            #expect(lines.count == 6)
        }
    }

    @Test(
        "The trail names the client the gateway vouches for: never an X-Forwarded-For the caller wrote; behind a trusted proxy, the address it forwarded"
    )
    func clientAddress() async throws {
        func client(_ system: TestSystem, user: String, claiming: String) async throws -> String? {
            let token = try await TestKeys.token(.desk, username: user)
            let answer = try await HTTPResult.send(
                .GET, system.url(), "/receptions",
                headers: [("authorization", "Bearer \(token)"), ("x-forwarded-for", claiming)])
            try #require(answer.status == 200)
            return try await eventually("\(user)'s read in the trail") {
                try await trail(system, "user=\(user)").first?["client"] as? String
            }
        }
        try await withTestSystem { system in
            // No proxy is trusted: the caller's claim is dropped at the gateway.
            let claimed = try await client(system, user: "spoof.desk", claiming: "203.0.113.9")
            #expect(claimed == "127.0.0.1 for 127.0.0.1", "\(claimed ?? "nil")")
        }
        let loopback = try TrustedProxies.parse(["127.0.0.0/8"]).get()
        try await withTestSystem(configure: { $0.auth.trustedProxies = loopback }) { system in
            // Behind a trusted proxy (here: the test, on loopback), the last address it appended
            // is the client, whatever the client wrote before it.
            let forwarded = try await client(system, user: "proxied.desk", claiming: "198.51.100.1, 203.0.113.9")
            #expect(forwarded == "127.0.0.1 for 203.0.113.9", "\(forwarded ?? "nil")")
        }
    }

    @Test("The trail is append-only, and `hospital audit verify` names the first entry changed or removed")
    func tamperEvident() async throws {
        guard !TestSystem.onPostgres else { return }
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withTestSystem(dataDirectory: directory) { system in
            try await registerAndRead(system, reads: 6)
            _ = try await eventually("seven entries") {
                try await TestSystem.count("audit_log", in: directory.appendingPathComponent("audit-reception.sqlite"))
                    == 7 ? true : nil
            }
        }
        let file = directory.appendingPathComponent("audit-reception.sqlite")
        #expect(try verify(directory).status == 0)
        // The database itself refuses a change…
        await #expect(throws: (any Error).self) {
            try await TestSystem.execute("UPDATE audit_log SET user_name = 'nobody' WHERE seq = 4", in: file)
        }
        // …and someone who drops that guard is caught by the chain.
        try await TestSystem.execute("DROP TRIGGER audit_log_no_update", in: file)
        try await TestSystem.execute("UPDATE audit_log SET user_name = 'nobody' WHERE seq = 4", in: file)
        let changed = try verify(directory)
        #expect(changed.status == 1)
        #expect(changed.output.contains("reception: BROKEN at entry 4"), "\(changed.output)")
        #expect(changed.output.contains("diagnosis: ok"), "\(changed.output)")
        try await TestSystem.execute("UPDATE audit_log SET user_name = 'kim.desk' WHERE seq = 4", in: file)
        #expect(try verify(directory).status == 0, "put back, it checks out again")
        try await TestSystem.execute("DELETE FROM audit_log WHERE seq = 5", in: file)
        let removed = try verify(directory)
        #expect(removed.status == 1 && removed.output.contains("reception: BROKEN at entry 6"), "\(removed.output)")
    }

    @Test("On PostgreSQL too: updates refused, and `hospital audit verify --database` names an edited entry")
    func tamperEvidentOnPostgres() async throws {
        guard TestSystem.onPostgres else { return }
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withTestSystem(dataDirectory: directory) { system in
            try await registerAndRead(system, reads: 4)
            let db = try #require(system.system.database(of: .reception))
            _ = try await eventually("five entries") {
                try await db.raw("SELECT COUNT(*) AS n FROM audit_log").first()?.decode(column: "n", as: Int.self) == 5
                    ? true : nil
            }
            let url = try #require(
                try await TestSystem.configuration(dataDirectory: directory).serviceDatabaseURLs[.reception])
            #expect(try verify(["--database", url.absoluteString, "--service", "reception"]).status == 0)
            await #expect(throws: (any Error).self) {
                try await db.raw("UPDATE audit_log SET user_name = 'nobody' WHERE seq = 3").run()
            }
            try await db.raw("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update").run()
            try await db.raw("UPDATE audit_log SET user_name = 'nobody' WHERE seq = 3").run()
            let changed = try verify(["--database", url.absoluteString, "--service", "reception"])
            #expect(changed.status == 1 && changed.output.contains("reception: BROKEN at entry 3"), "\(changed.output)")
        }
    }

    /// One registration and `reads` reads of it by the same desk user: 1 + `reads` entries.
    func registerAndRead(_ system: TestSystem, reads: Int) async throws {
        let registered = try await call(
            system, .POST, "/receptions", as: .desk, user: "kim.desk", json: ["patientName": "홍길동"])
        let visit = try #require(registered.json["id"] as? String)
        for _ in 0..<reads {
            _ = try await call(system, .GET, "/receptions/\(visit)", as: .desk, user: "kim.desk", via: .reception)
        }
    }

    func verify(_ directory: URL) throws -> (status: Int32, output: String) {
        try verify(["--data-dir", directory.path])
    }

    func verify(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = ChildProcess()
        process.executableURL = HospitalProcess.executable
        process.arguments = ["audit", "verify"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try HospitalProcess.launch(process)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
