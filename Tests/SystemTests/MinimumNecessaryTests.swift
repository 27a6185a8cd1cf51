import Foundation
import Identity
import Runtime
import Testing

/// Minimum necessary: a doctor reads the phone number of their own departments' patients only;
/// anyone else's only with a stated reason, recorded for the administrator.
@Suite("Minimum necessary: contact details by department, break-the-glass")
struct MinimumNecessaryTests {
    @Test(
        "A doctor of 내과 reads a 내과 visit's phone, not a 외과 visit's (withheld) unless stating a reason, which the administrator's report lists"
    )
    func contactByDepartment() async throws {
        try await withTestSystem { system in
            func visit(_ department: String) async throws -> String {
                let answer = try await system.post(
                    "/receptions", ["patientName": "김연락", "department": department, "phone": "010-1234-5678"])
                try #require(answer.status == 201, "\(answer.text)")
                return try #require(answer.json["id"] as? String)
            }
            let medicine = try await visit("내과")
            let surgical = try await visit("외과")
            let doctor = try await TestKeys.token(.doctor, username: "kim.doctor", departments: ["내과"])
            let unassigned = try await TestKeys.token(.doctor, username: "new.doctor")
            func read(_ id: String, as token: String) async throws -> [String: Any] {
                let answer = try await HTTPResult.send(
                    .GET, system.url(), "/receptions/\(id)", headers: [("authorization", "Bearer \(token)")])
                try #require(answer.status == 200, "\(answer.text)")
                return answer.json
            }
            // Own department: as is.
            let own = try await read(medicine, as: doctor)
            #expect(own["phone"] as? String == "010-1234-5678")
            #expect(own["contactWithheld"] == nil)
            // Another department, or none assigned: withheld, the rest of the visit readable.
            for (id, token) in [(surgical, doctor), (medicine, unassigned)] {
                let other = try await read(id, as: token)
                #expect(other["phone"] is NSNull)
                #expect(other["contactWithheld"] as? Bool == true)
                #expect(other["patientName"] as? String == "김연락")
            }
            // The desk reads every visit whole.
            let desk = try await system.get("/receptions/\(surgical)", as: .role(.desk))
            #expect(desk.json["phone"] as? String == "010-1234-5678")

            // Break-the-glass: a reason is required, then the number is disclosed and recorded.
            func disclose(_ id: String, reason: Any?, as token: String) async throws -> HTTPResult {
                let body = try JSONSerialization.data(withJSONObject: reason.map { ["reason": $0] } ?? [:])
                return try await HTTPResult.send(
                    .POST, system.url(), "/receptions/\(id)/contact", body: body,
                    headers: [("authorization", "Bearer \(token)"), ("content-type", "application/json")])
            }
            for bad in [nil, "", "급함", String(repeating: "가", count: 501)] as [String?] {
                let refused = try await disclose(surgical, reason: bad, as: doctor)
                #expect(refused.status == 422, "\(bad ?? "nil"): \(refused.text)")
            }
            let reason = "검사 결과 이상으로 보호자 연락 필요"
            let disclosed = try await disclose(surgical, reason: reason, as: doctor)
            #expect(disclosed.status == 200, "\(disclosed.text)")
            #expect(disclosed.json["phone"] as? String == "010-1234-5678")
            #expect(disclosed.json["withinDepartment"] as? Bool == false)
            let missing = try await disclose(UUID().uuidString, reason: reason, as: doctor)
            #expect(missing.status == 404)
            // Only doctors break the glass.
            let examiner = try await TestKeys.token(.examiner)
            #expect(try await disclose(surgical, reason: reason, as: examiner).status == 403)

            // The administrator's report (on reception's port): one line, with who, which visit
            // and why; the refused attempts and the unknown visit left none.
            let admin = try await TestKeys.token(.admin, username: "privacy.officer")
            let report = try await HTTPResult.send(
                .GET, system.url(.reception), "/admin/contact-disclosures",
                headers: [("authorization", "Bearer \(admin)")])
            #expect(report.status == 200, "\(report.text)")
            let items = report.json["items"] as? [[String: Any]] ?? []
            #expect(items.count == 1)
            #expect(items.first?["user"] as? String == "kim.doctor")
            #expect(items.first?["receptionId"] as? String == surgical)
            #expect(items.first?["reason"] as? String == reason)
            #expect(items.first?["departments"] as? [String] == ["내과"])
            #expect(items.first?["visitDepartment"] as? String == "외과")
            let doctorsView = try await HTTPResult.send(
                .GET, system.url(.reception), "/admin/contact-disclosures",
                headers: [("authorization", "Bearer \(doctor)")])
            #expect(doctorsView.status == 403)
            // And counted, for the alert that tells the administrator.
            let metrics = try await system.get("/metrics", via: .reception, as: .none)
            #expect(
                metrics.text.contains(#"hospital_contact_disclosures_total{service="reception",within_department="false"} 1"#),
                "\(metrics.text.split(separator: "\n").filter { $0.contains("disclosures") })")
        }
    }

    @Test("Departments assigned to a user are in the tokens the gateway issues for their sessions")
    func departmentsInTokens() async throws {
        try await withTestSystem { system in
            let accounts = try #require(system.system.accounts)
            try await accounts.add(username: "park.doctor", role: .doctor, password: "a long enough password")
            try await system.system.departments?.set("park.doctor", to: ["소아과", "내과"])
            let answer = try await system.post(
                "/auth/token", ["username": "park.doctor", "password": "a long enough password"], as: .none)
            #expect(answer.status == 200, "\(answer.text)")
            let token = try #require(answer.json["accessToken"] as? String)
            let payload = try #require(
                Base64URL.decode(token.split(separator: ".")[1]).flatMap {
                    try? JSONSerialization.jsonObject(with: $0) as? [String: Any]
                })
            #expect(payload["departments"] as? [String] == ["내과", "소아과"])
        }
    }
}
