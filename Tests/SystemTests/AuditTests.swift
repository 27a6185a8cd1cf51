import Foundation
import Identity
import NIOHTTP1
import Runtime
import SQLKit
import ServiceKit
import TestSupport
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
            let patient = try await call(
                system, .POST, "/patients", as: .desk, user: "kim.desk",
                json: ["name": "홍길동", "birthDate": "1980-01-01", "sex": "M"])
            let chart = try #require(patient.json["chartNumber"] as? String)
            let registered = try await call(
                system, .POST, "/receptions", as: .desk, user: "kim.desk",
                json: ["patientId": try #require(patient.json["id"] as? String)])
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
                headers: [
                    ("cookie", "hospital_session=\(try await TestSessions.secret(.desk, at: system.url(), username: "park.desk"))")
                ])
            #expect(screen.status == 200 && screen.text.contains("홍길동"))

            let lee = try await eventually("five reads by lee.doctor") {
                let entries = try await trail(system, "user=lee.doctor")
                return entries.count == 5 ? entries : nil
            }
            #expect(
                lee.allSatisfy { $0["action"] as? String == "GET /receptions/:id" && $0["role"] as? String == "doctor" }
            )
            #expect(lee.allSatisfy { ($0["receptionIds"] as? [String]) == [visit] && $0["outcome"] as? Int == 200 })
            #expect(lee.allSatisfy { $0["patientId"] as? String == chart })
            let board = try await eventually("the screen's board read by park.desk") {
                try await trail(system, "user=park.desk").first {
                    ($0["receptionIds"] as? [String])?.contains(visit) == true
                }
            }
            #expect(board["action"] as? String == "GET /patientManagements")
            #expect((board["client"] as? String)?.contains(" for 127.0.0.1") == true, "the browser's address")
            let registration = try await trail(system, "user=kim.desk")
            #expect(registration.map { $0["action"] as? String } == ["POST /patients", "POST /receptions"])
            #expect(try await trail(system, "receptionId=\(visit)").count >= 7)
            #expect(try await trail(system, "patientId=\(chart)").count >= 7)
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
}
