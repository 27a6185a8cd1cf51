import Foundation
import Runtime
import Testing

/// Refusals, bad input, idempotency and concurrent commands: each answers clearly and none
/// writes anything it should not.
@Suite("API rules")
struct RulesTests {
    /// Asserts a problem+json answer with `status`; returns its body.
    @discardableResult
    func expectProblem(
        _ response: HTTPResult, _ status: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) -> [String: Any] {
        #expect(response.status == status, "\(response.text)", sourceLocation: sourceLocation)
        #expect(response.contentType.hasPrefix("application/problem+json"), sourceLocation: sourceLocation)
        let body = response.json
        #expect(body["status"] as? Int == status, sourceLocation: sourceLocation)
        #expect((body["type"] as? String)?.isEmpty == false, sourceLocation: sourceLocation)
        #expect((body["detail"] as? String)?.isEmpty == false, sourceLocation: sourceLocation)
        return body
    }

    @Test("An illegal transition answers 409 naming the current state and changes nothing")
    func illegalTransitions() async throws {
        try await withTestSystem { system in
            let receptionId = try await system.register()
            let diagnosisId = try await system.diagnosis(of: receptionId)
            _ = try await system.post("/diagnoses/\(diagnosisId)/complete", ["note": "이상 없음"])
            try await system.waitFor("/receptions/\(receptionId)", "status", "COMPLETED")
            try await system.waitFor("/patientManagements/\(receptionId)", "status", "COMPLETED")
            let events = try await system.eventCount()
            let outbox = try await system.count("outbox", in: .diagnosis)

            let attempts: [(String, [String: Any])] = [
                ("/diagnoses/\(diagnosisId)/complete", ["note": "again"]),
                ("/diagnoses/\(diagnosisId)/reject", ["reason": "too late"]),
                ("/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]]),
                ("/receptions/\(receptionId)/cancel", ["reason": "too late"]),
            ]
            for (path, body) in attempts {
                let problem = expectProblem(try await system.post(path, body), 409)
                #expect(problem["currentState"] as? String == "COMPLETED", "\(path)")
                #expect((problem["detail"] as? String)?.contains("COMPLETED") == true)
            }
            #expect(try await system.eventCount() == events)
            #expect(try await system.count("outbox", in: .diagnosis) == outbox)
            #expect(try await system.get("/diagnoses/\(diagnosisId)").json["status"] as? String == "COMPLETED")
        }
    }

    @Test("A performed exam cannot be performed or canceled again")
    func examTransitions() async throws {
        try await withTestSystem { system in
            let (_, _, examId) = try await system.visitWithExam(code: "CBC", name: "혈액검사")
            #expect(try await system.post("/examinations/\(examId)/perform", ["result": "정상"]).status == 200)
            let again = expectProblem(try await system.post("/examinations/\(examId)/perform", ["result": "x"]), 409)
            #expect(again["currentState"] as? String == "COMPLETED")
            expectProblem(try await system.post("/examinations/\(examId)/cancel", ["reason": "x"]), 409)
            #expect(try await system.get("/examinations/\(examId)").json["result"] as? String == "정상")
        }
    }

    @Test("Bad input answers 4xx problem+json and writes nothing")
    func badInput() async throws {
        try await withTestSystem { system in
            let long = String(repeating: "가", count: 101)
            // malformed JSON
            expectProblem(try await system.post("/receptions", raw: "{\"patientName\": "), 400)
            expectProblem(try await system.post("/receptions", raw: "[1, 2]"), 400)
            expectProblem(try await system.post("/receptions", raw: ""), 400)
            // a field of the wrong type
            let wrongType = expectProblem(try await system.post("/receptions", ["patientName": 42]), 400)
            #expect((wrongType["detail"] as? String)?.contains("patientName") == true)
            // missing, empty, oversized fields: every one named
            let missing = expectProblem(try await system.post("/receptions", ["department": "내과"]), 422)
            #expect((missing["errors"] as? [[String: Any]])?.first?["field"] as? String == "patientName")
            expectProblem(try await system.post("/receptions", ["patientName": "   "]), 422)
            let many = expectProblem(
                try await system.post(
                    "/receptions",
                    ["patientName": long, "birthDate": "2023-02-29", "patientId": "12 34", "phone": "abc"]),
                422)
            let fields = Set((many["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String })
            #expect(fields == ["patientName", "birthDate", "patientId", "phone"])
            // an oversized body, and one that is not JSON at all
            let huge = "{\"patientName\": \"\(String(repeating: "x", count: 100_000))\"}"
            expectProblem(try await system.post("/receptions", raw: huge), 413)
            expectProblem(
                try await system.post("/receptions", raw: "patientName=x", headers: [("content-type", "text/plain")]),
                415)
            // bad query parameters
            let query = expectProblem(try await system.get("/receptions?status=DONE&limit=0"), 400)
            #expect((query["errors"] as? [[String: Any]])?.count == 2)
            expectProblem(try await system.get("/patientManagements?date=2026-13-01"), 400)
            expectProblem(try await system.get("/diagnoses?receptionId=nope"), 400)
            // An empty filter is a mistake, not "no filter".
            expectProblem(try await system.get("/diagnoses?receptionId="), 400)
            expectProblem(try await system.get("/examinations?status="), 400)
            expectProblem(try await system.get("/receptions?offset=1000001"), 400)
            expectProblem(try await system.get("/patientManagements?offset=9223372036854775807"), 400)
            expectProblem(try await system.get("/diagnoses?limit=9223372036854775807"), 400)

            #expect(try await system.count("receptions", in: .reception) == 0)
            #expect(try await system.count("outbox", in: .reception) == 0)
        }
    }

    @Test("Unknown ids answer 404 problem+json, on every resource and command")
    func unknownIds() async throws {
        try await withTestSystem { system in
            let unknown = UUID().uuidString
            for path in [
                "/receptions/\(unknown)", "/diagnoses/\(unknown)", "/examinations/\(unknown)",
                "/patientManagements/\(unknown)", "/receptions/not-a-uuid", "/nowhere",
            ] {
                expectProblem(try await system.get(path), 404)
            }
            let commands: [(String, [String: Any])] = [
                ("/receptions/\(unknown)/cancel", ["reason": "x"]),
                ("/diagnoses/\(unknown)/complete", ["note": "x"]),
                ("/diagnoses/\(unknown)/reject", ["reason": "x"]),
                ("/diagnoses/\(unknown)/prescriptions", ["examinations": [["code": "A", "name": "B"]]]),
                ("/examinations/\(unknown)/perform", ["result": "x"]),
                ("/examinations/\(unknown)/cancel", ["reason": "x"]),
                ("/examinations/1/perform", ["result": "x"]),
            ]
            for (path, body) in commands {
                expectProblem(try await system.post(path, body), 404)
            }
            #expect(try await system.eventCount() == 0)
        }
    }

    @Test("Invalid commands on a real visit are refused field by field and change nothing")
    func invalidCommands() async throws {
        try await withTestSystem { system in
            let receptionId = try await system.register()
            let diagnosisId = try await system.diagnosis(of: receptionId)
            let before = try await system.get("/diagnoses/\(diagnosisId)").text

            expectProblem(try await system.post("/diagnoses/\(diagnosisId)/prescriptions", ["examinations": []]), 422)
            let duplicate = expectProblem(
                try await system.post(
                    "/diagnoses/\(diagnosisId)/prescriptions",
                    ["examinations": [["code": "CBC", "name": "a"], ["code": "CBC", "name": "b"]]]), 422)
            #expect((duplicate["errors"] as? [[String: Any]])?.first?["field"] as? String == "examinations[1].code")
            expectProblem(try await system.post("/diagnoses/\(diagnosisId)/reject", ["reason": ""]), 422)
            expectProblem(try await system.post("/receptions/\(receptionId)/cancel", [:]), 422)

            #expect(try await system.get("/diagnoses/\(diagnosisId)").text == before)
            #expect(try await system.count("outbox", in: .diagnosis) == 0)
        }
    }

    @Test("The same Idempotency-Key registers one visit and answers the same body")
    func idempotencyKey() async throws {
        try await withTestSystem { system in
            let body: [String: Any] = ["patientName": "김철수", "department": "정형외과"]
            let key = [("Idempotency-Key", "desk-1:\(UUID().uuidString)")]
            let first = try await system.post("/receptions", body, headers: key)
            let second = try await system.post("/receptions", body, headers: key)
            #expect(first.status == 201)
            #expect(second.status == 201)
            #expect(first.body == second.body)
            #expect(first.headers.first(name: "location") == second.headers.first(name: "location"))

            let other = try await system.post("/receptions", ["patientName": "이영희"], headers: key)
            expectProblem(other, 422)
            #expect(try await system.count("receptions", in: .reception) == 1)
            #expect(try await system.count("patients", in: .reception) == 1, "a retry registers no second patient")
            #expect(try await system.count("outbox", in: .reception, where: "payload LIKE '%TreatmentReceived%'") == 1)

            // Without a key, a second request is a second visit.
            _ = try await system.post("/receptions", body)
            #expect(try await system.count("receptions", in: .reception) == 2)
        }
    }

    @Test("The same Idempotency-Key sent concurrently still registers one visit")
    func idempotencyKeyConcurrent() async throws {
        try await withTestSystem { system in
            let key = [("Idempotency-Key", UUID().uuidString)]
            let responses = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await system.post("/receptions", ["patientName": "박민수"], headers: key) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(responses.allSatisfy { $0.status == 201 })
            #expect(Set(responses.map(\.body)).count == 1)
            #expect(try await system.count("receptions", in: .reception) == 1)
        }
    }

    @Test("Complete and reject at once: one wins, the other gets 409, and the visit is consistent")
    func concurrentCommands() async throws {
        try await withTestSystem { system in
            for _ in 0..<5 {
                let receptionId = try await system.register()
                let diagnosisId = try await system.diagnosis(of: receptionId)
                async let complete = system.post("/diagnoses/\(diagnosisId)/complete", ["note": "완료"])
                async let reject = system.post("/diagnoses/\(diagnosisId)/reject", ["reason": "거부"])
                let (c, r) = try await (complete, reject)
                #expect(Set([c.status, r.status]) == [200, 409], "complete \(c.status), reject \(r.status)")
                let winner = c.status == 200 ? "COMPLETED" : "REJECTED"
                let loser = c.status == 200 ? r : c
                #expect(loser.json["currentState"] as? String == winner)
                #expect(try await system.get("/diagnoses/\(diagnosisId)").json["status"] as? String == winner)
                try await system.waitFor(
                    "/receptions/\(receptionId)", "status", winner == "COMPLETED" ? "COMPLETED" : "CANCELED")
                try await system.waitFor("/patientManagements/\(receptionId)", "status", winner)
            }
            // Exactly one closing event per visit.
            #expect(try await system.count("outbox", in: .diagnosis) == 5)
        }
    }
}
