import Foundation
import Runtime
import TestSupport
import Testing

/// 검사실 호출: the examiner calls the patient to an exam room that performs the exam, as the
/// doctor calls to a consultation room; the waiting room sees it.
@Suite("Calling to exam rooms")
struct ExamCallingTests {
    static func asExaminer(_ name: String) async throws -> [(String, String)] {
        [("Authorization", "Bearer \(try await TestKeys.token(.examiner, username: name))")]
    }

    /// A 내과 visit of `name` with one exam ordered; its exam's id.
    static func exam(
        _ system: TestSystem, _ name: String, priority: String? = nil, code: String = "CBC"
    ) async throws -> (receptionId: String, examId: String) {
        var body: [String: Any] = ["patientName": name, "department": "내과"]
        if let priority { body["priority"] = priority }
        let registered = try await system.post("/receptions", body)
        try #require(registered.status == 201, "\(registered.text)")
        let receptionId = try #require(registered.json["id"] as? String)
        let diagnosisId = try await system.diagnosis(of: receptionId)
        let prescribed = try await system.post(
            "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": code, "name": "검사 \(code)"]]])
        try #require(prescribed.status == 200, "\(prescribed.text)")
        let examId = try await eventually("the exam of \(name)") {
            try await system.items("/examinations?diagnosisId=\(diagnosisId)").first?["id"] as? String
        }
        return (receptionId, examId)
    }

    @Test(
        "An examiner calls to a room that performs the exam, calls again, begins, takes it back; another examiner, another room's exam, a performed exam are refused; the board and the display show the exam room"
    )
    func callStartUndo() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .examination, .patientManagement]) { system in
            let lee = try await Self.asExaminer("lee")
            let park = try await Self.asExaminer("park")
            let (receptionId, id) = try await Self.exam(system, "홍길동")

            let notARoom = try await system.post("/examinations/\(id)/call", ["room": "진료실 1"], headers: lee, as: .none)
            #expect(notARoom.status == 422, "\(notARoom.text)")
            #expect((notARoom.json["errors"] as? [[String: Any]])?.first?["field"] as? String == "room")
            let wrongRoom = try await system.post("/examinations/\(id)/call", ["room": "영상검사실"], headers: lee, as: .none)
            #expect(wrongRoom.status == 409, "\(wrongRoom.text)")
            #expect((wrongRoom.json["detail"] as? String)?.contains("does not perform CBC") == true, "\(wrongRoom.text)")

            let called = try await system.post("/examinations/\(id)/call", ["room": "검사실 1"], headers: lee, as: .none)
            #expect(called.status == 200, "\(called.text)")
            #expect(called.json["queueState"] as? String == "CALLED")
            #expect(called.json["room"] as? String == "검사실 1")
            #expect(called.json["calledBy"] as? String == "lee")
            #expect(called.json["queueNumber"] as? String == "A-001")
            #expect(called.json["department"] as? String == "내과")

            let taken = try await system.post("/examinations/\(id)/call", ["room": "검사실 1"], headers: park, as: .none)
            #expect(taken.status == 409)
            #expect((taken.json["detail"] as? String)?.contains("already called by lee") == true, "\(taken.text)")
            let recalled = try await system.post("/examinations/\(id)/call", ["room": "검사실 1"], headers: lee, as: .none)
            #expect(recalled.json["calls"] as? Int == 2)

            // The waiting room sees the number, the masked name and the exam room; never the name.
            let display = try await eventually("the exam call on 내과's display") { () -> [String: Any]? in
                let answer = try await system.get("/displays/%EB%82%B4%EA%B3%BC", as: .role(.display))
                let calling = answer.json["calling"] as? [[String: Any]] ?? []
                return calling.first?["room"] as? String == "검사실 1" ? answer.json : nil
            }
            let shown = try #require((display["calling"] as? [[String: Any]])?.first)
            #expect(shown["queueNumber"] as? String == "A-001")
            #expect(shown["name"] as? String == "홍*동")
            #expect(!String(describing: display).contains("홍길동"))
            // The board's order says where.
            let row = try await eventually("the board's order called") { () -> [String: Any]? in
                let answer = try await system.get("/patientManagements/\(receptionId)")
                let order = (answer.json["orders"] as? [[String: Any]])?.first
                return order?["queueState"] as? String == "CALLED" ? order : nil
            }
            #expect(row["room"] as? String == "검사실 1")

            let started = try await system.post("/examinations/\(id)/start", [:], headers: lee, as: .none)
            #expect(started.status == 200, "\(started.text)")
            #expect(started.json["queueState"] as? String == "IN_EXAM")
            #expect(started.json["room"] as? String == "검사실 1")
            #expect((started.json["undoable"] as? [String: Any])?["transition"] as? String == "START")
            let busy = try await system.post("/examinations/\(id)/call", ["room": "검사실 1"], headers: park, as: .none)
            #expect(busy.status == 409)
            #expect((busy.json["detail"] as? String)?.contains("in an exam with lee") == true, "\(busy.text)")
            #expect(try await system.post("/examinations/\(id)/undo", [:], headers: park, as: .none).status == 409)
            let undone = try await system.post("/examinations/\(id)/undo", [:], headers: lee, as: .none)
            #expect(undone.json["queueState"] as? String == "CALLED", "\(undone.text)")
            #expect(try await system.post("/examinations/\(id)/start", [:], headers: lee, as: .none).status == 200)
            #expect(try await system.post("/examinations/\(id)/perform", ["result": "정상"], headers: lee, as: .none).status == 200)

            // Performed: no longer called on the display, and it cannot be called again.
            _ = try await eventually("the display without the performed exam") { () -> Bool? in
                let answer = try await system.get("/displays/%EB%82%B4%EA%B3%BC", as: .role(.display))
                return (answer.json["calling"] as? [[String: Any]] ?? []).isEmpty ? true : nil
            }
            let done = try await system.post("/examinations/\(id)/call", ["room": "검사실 1"], headers: lee, as: .none)
            #expect(done.status == 409)
            #expect((done.json["detail"] as? String)?.contains("completed") == true, "\(done.text)")
            // Each step was an event: call, recall, start, undo, start.
            #expect(try await system.count("outbox", in: .examination, where: "event_type = 'QueueUpdated'") == 5)
        }
    }

    @Test(
        "The exam rooms' queue goes by the desk's priority, then arrival, follows a priority changed later, and lists for a room only what it performs; two examiners calling at once: one wins"
    )
    func queueOrderAndRace() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .examination]) { system in
            let first = try await Self.exam(system, "가나다")
            let care = try await Self.exam(system, "라마바", priority: "CARE")
            let imaging = try await Self.exam(system, "사아자", code: "XRAY")
            func queue(_ room: String?) async throws -> [String] {
                let path = "/examinations/queue" + (room.map { "?room=\($0.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed)!)" } ?? "")
                let answer = try await system.get(path)
                try #require(answer.status == 200, "\(answer.text)")
                return (answer.json["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            }
            #expect(try await queue(nil) == [care.examId, first.examId, imaging.examId])
            #expect(try await queue("영상검사실") == [imaging.examId])
            #expect(try await queue("검사실 1") == [care.examId, first.examId, imaging.examId])
            #expect(try await system.get("/examinations/queue?room=%EC%98%A5%EC%83%81").status == 422)

            // The desk marks the first an emergency: the exam rooms' queue follows.
            #expect(try await system.post("/receptions/\(first.receptionId)/priority", ["priority": "EMERGENCY"]).status == 200)
            _ = try await eventually("the emergency first") {
                try await queue(nil) == [first.examId, care.examId, imaging.examId] ? true : nil
            }

            // Two examiners call the same exam at once: one call, the other told who.
            let lee = try await Self.asExaminer("lee")
            let park = try await Self.asExaminer("park")
            async let a = system.post("/examinations/\(care.examId)/call", ["room": "검사실 1"], headers: lee, as: .none)
            async let b = system.post("/examinations/\(care.examId)/call", ["room": "검사실 1"], headers: park, as: .none)
            let answers = try await [a, b]
            #expect(answers.map(\.status).sorted() == [200, 409], "\(answers.map(\.text))")
            let winner = try #require(answers.first { $0.status == 200 }?.json["calledBy"] as? String)
            let loser = try #require(answers.first { $0.status == 409 })
            #expect((loser.json["detail"] as? String)?.contains("already called by \(winner)") == true, "\(loser.text)")
        }
    }
}
