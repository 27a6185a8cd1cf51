import Foundation
import Runtime
import TestSupport
import Testing

/// 호출: day queue numbers, the department's queue, and calling a patient to a room.
@Suite("Calling")
struct CallingTests {
    /// A request as a particular doctor (the role's token, under that name).
    static func asDoctor(_ name: String) async throws -> [(String, String)] {
        [("Authorization", "Bearer \(try await TestKeys.token(.doctor, username: name))")]
    }

    @Test(
        "접수 issues each department's day queue number (A-001, A-002 for 내과, B-001 for 외과; numbers alone outside the layout); the queue goes by priority, then arrival"
    )
    func queueNumbersAndOrder() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .patientManagement]) { system in
            func register(_ name: String, _ department: String, priority: String? = nil) async throws -> [String: Any] {
                var body: [String: Any] = ["patientName": name, "department": department]
                if let priority { body["priority"] = priority }
                let answer = try await system.post("/receptions", body)
                try #require(answer.status == 201, "\(answer.text)")
                return answer.json
            }
            let first = try await register("가나다", "내과")
            let care = try await register("라마바", "내과", priority: "CARE")
            let other = try await register("사아자", "외과")
            let emergency = try await register("차카타", "내과", priority: "EMERGENCY")
            let elsewhere = try await register("파하가", "치과")
            #expect(first["queueNumber"] as? String == "A-001")
            #expect(first["priority"] as? String == "NORMAL")
            #expect(care["queueNumber"] as? String == "A-002")
            #expect(other["queueNumber"] as? String == "B-001")
            #expect(emergency["queueNumber"] as? String == "A-003")
            #expect(emergency["priority"] as? String == "EMERGENCY")
            #expect(elsewhere["queueNumber"] as? String == "001")

            let bad = try await system.post("/receptions", ["patientName": "나쁜값", "department": "내과", "priority": "VIP"])
            #expect(bad.status == 422)
            #expect((bad.json["errors"] as? [[String: Any]])?.first?["field"] as? String == "priority")

            let queue = try await eventually("내과's three in the doctor's queue") {
                let answer = try await system.get("/diagnoses/queue?department=%EB%82%B4%EA%B3%BC")
                let items = answer.json["items"] as? [[String: Any]] ?? []
                return items.count == 3 ? answer.json : nil
            }
            let items = queue["items"] as? [[String: Any]] ?? []
            #expect(items.compactMap { $0["queueNumber"] as? String } == ["A-003", "A-002", "A-001"])
            #expect(items.allSatisfy { $0["queueState"] as? String == "WAITING" })
            #expect(queue["rooms"] as? [String] == ["진료실 1", "진료실 2"])
            // The board shows the numbers too.
            let board = try await eventually("the board's numbers") {
                let rows = try await system.items("/patientManagements?limit=10")
                return rows.count == 5 && rows.allSatisfy({ $0["queueNumber"] is String }) ? rows : nil
            }
            #expect(Set(board.compactMap { $0["queueNumber"] as? String }) == ["A-001", "A-002", "A-003", "B-001", "001"])
        }
    }

    @Test("The desk changes a waiting visit's priority: the queue reorders, the board shows it; the same again announces nothing; bad values, unknown and closed visits are refused")
    func priorityAfterRegistration() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .patientManagement]) { system in
            let first = try await system.register("먼저옴", department: "내과")
            let second = try await system.register("나중옴", department: "내과")
            func queue() async throws -> [String] {
                let answer = try await system.get("/diagnoses/queue?department=%EB%82%B4%EA%B3%BC")
                return (answer.json["items"] as? [[String: Any]] ?? []).compactMap { $0["receptionId"] as? String }
            }
            _ = try await eventually("both in the queue, by arrival") { try await queue() == [first, second] ? true : nil }

            let changed = try await system.post("/receptions/\(second)/priority", ["priority": "CARE"])
            #expect(changed.status == 200, "\(changed.text)")
            #expect(changed.json["priority"] as? String == "CARE")
            _ = try await eventually("the queue reordered") { try await queue() == [second, first] ? true : nil }
            try await system.waitFor("/patientManagements/\(second)", "priority", "CARE")
            // The same again: answered, nothing announced.
            #expect(try await system.post("/receptions/\(second)/priority", ["priority": "CARE"]).status == 200)
            #expect(try await system.count("outbox", in: .reception, where: "event_type = 'PriorityChanged'") == 1)

            for bad in [["priority": "VIP"], ["priority": " CARE"], [:]] as [[String: Any]] {
                let refused = try await system.post("/receptions/\(first)/priority", bad)
                #expect(refused.status == 422, "\(bad): \(refused.text)")
                #expect((refused.json["errors"] as? [[String: Any]])?.first?["field"] as? String == "priority")
            }
            #expect(try await system.post("/receptions/\(UUID().uuidString)/priority", ["priority": "CARE"]).status == 404)
            #expect(try await system.post("/receptions/\(first)/cancel", ["reason": "귀가"]).status == 200)
            let closed = try await system.post("/receptions/\(first)/priority", ["priority": "EMERGENCY"])
            #expect(closed.status == 409, "\(closed.text)")
            let reception = try await system.get("/receptions/\(first)")
            #expect(reception.json["priority"] as? String == "NORMAL")
        }
    }

    @Test(
        "A doctor calls, calls again, begins; another doctor's call is refused naming who called; another department's room, a closed or exam-pending visit are refused; the board follows"
    )
    func callAndStart() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .patientManagement]) { system in
            let kim = try await Self.asDoctor("dr-kim")
            let park = try await Self.asDoctor("dr-park")
            let receptionId = try await system.register("홍길동", department: "내과")
            let id = try await system.diagnosis(of: receptionId)

            let unknownRoom = try await system.post("/diagnoses/\(id)/call", ["room": "옥상"], headers: kim, as: .none)
            #expect(unknownRoom.status == 422, "\(unknownRoom.text)")
            let otherDepartment = try await system.post(
                "/diagnoses/\(id)/call", ["room": "진료실 3"], headers: kim, as: .none)
            #expect(otherDepartment.status == 409, "\(otherDepartment.text)")
            #expect((otherDepartment.json["detail"] as? String)?.contains("외과") == true)

            let called = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 2"], headers: kim, as: .none)
            #expect(called.status == 200, "\(called.text)")
            #expect(called.json["queueState"] as? String == "CALLED")
            #expect(called.json["room"] as? String == "진료실 2")
            #expect(called.json["calledBy"] as? String == "dr-kim")
            #expect(called.json["calls"] as? Int == 1)

            let taken = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 1"], headers: park, as: .none)
            #expect(taken.status == 409)
            #expect(taken.json["currentState"] as? String == "CALLED")
            #expect((taken.json["detail"] as? String)?.contains("dr-kim") == true, "\(taken.text)")
            #expect((taken.json["detail"] as? String)?.contains("진료실 2") == true)
            let startedByOther = try await system.post("/diagnoses/\(id)/start", [:], headers: park, as: .none)
            #expect(startedByOther.status == 409)

            let recalled = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 2"], headers: kim, as: .none)
            #expect(recalled.json["calls"] as? Int == 2)
            let row = try await eventually("the board's second call") {
                let row = try await system.get("/patientManagements/\(receptionId)")
                return row.json["calls"] as? Int == 2 ? row : nil
            }
            #expect(row.json["queueState"] as? String == "CALLED")
            #expect(row.json["room"] as? String == "진료실 2")

            let started = try await system.post("/diagnoses/\(id)/start", [:], headers: kim, as: .none)
            #expect(started.status == 200, "\(started.text)")
            #expect(started.json["queueState"] as? String == "IN_CONSULTATION")
            #expect(started.json["room"] as? String == "진료실 2")
            try await system.waitFor("/patientManagements/\(receptionId)", "queueState", "IN_CONSULTATION")

            // To the exam rooms: no calling until the exams are done; then the patient waits again.
            let ordered = try await system.post(
                "/diagnoses/\(id)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]], headers: kim,
                as: .none)
            #expect(ordered.status == 200, "\(ordered.text)")
            #expect(ordered.json["queueState"] as? String == "WAITING")
            let pending = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 2"], headers: kim, as: .none)
            #expect(pending.status == 409)
            #expect((pending.json["detail"] as? String)?.contains("examinations") == true, "\(pending.text)")

            // A closed visit cannot be called.
            let other = try await system.diagnosis(of: try await system.register("이몽룡", department: "내과"))
            let rejected = try await system.post("/diagnoses/\(other)/reject", ["reason": "전원"], headers: kim, as: .none)
            #expect(rejected.status == 200)
            let closed = try await system.post("/diagnoses/\(other)/call", ["room": "진료실 1"], headers: kim, as: .none)
            #expect(closed.status == 409)
            #expect(closed.json["currentState"] as? String == "REJECTED")
        }
    }

    @Test("부재 needs the clinic's number of calls; an absent patient is back in the queue after the return time; undo is its maker's, within the window")
    func noShowAndUndo() async throws {
        try await withTestSystem(
            [.gateway, .reception, .diagnosis, .patientManagement],
            configure: { config in
                config.clinic.callsBeforeNoShow = 2
                config.clinic.noShowReturnMinutes = 0
            }
        ) { system in
            let kim = try await Self.asDoctor("dr-kim")
            let park = try await Self.asDoctor("dr-park")
            let id = try await system.diagnosis(of: try await system.register("성춘향", department: "내과"))

            #expect(try await system.post("/diagnoses/\(id)/no-show", [:], headers: kim, as: .none).status == 409)
            _ = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 1"], headers: kim, as: .none)
            let early = try await system.post("/diagnoses/\(id)/no-show", [:], headers: kim, as: .none)
            #expect(early.status == 409)
            #expect((early.json["detail"] as? String)?.contains("1 of 2") == true, "\(early.text)")
            _ = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 1"], headers: kim, as: .none)
            let absent = try await system.post("/diagnoses/\(id)/no-show", [:], headers: kim, as: .none)
            #expect(absent.status == 200, "\(absent.text)")
            #expect(absent.json["queueState"] as? String == "NO_SHOW")
            #expect((absent.json["undoable"] as? [String: Any])?["by"] as? String == "dr-kim")

            // Only its maker takes it back.
            let notYours = try await system.post("/diagnoses/\(id)/undo", [:], headers: park, as: .none)
            #expect(notYours.status == 409)
            #expect((notYours.json["detail"] as? String)?.contains("dr-kim") == true)
            let undone = try await system.post("/diagnoses/\(id)/undo", [:], headers: kim, as: .none)
            #expect(undone.status == 200, "\(undone.text)")
            #expect(undone.json["queueState"] as? String == "CALLED")
            #expect(undone.json["calls"] as? Int == 2)
            // One step back only.
            #expect(try await system.post("/diagnoses/\(id)/undo", [:], headers: kim, as: .none).status == 409)

            // Held (return time 0): still absent; called again, it starts over.
            _ = try await system.post("/diagnoses/\(id)/no-show", [:], headers: kim, as: .none)
            let again = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 1"], headers: park, as: .none)
            #expect(again.status == 200, "\(again.text)")
            #expect(again.json["calls"] as? Int == 1)
            #expect(again.json["calledBy"] as? String == "dr-park")
        }
    }

    @Test("An undo after the window is refused")
    func undoWindow() async throws {
        try await withTestSystem(
            [.gateway, .reception, .diagnosis], configure: { $0.clinic.undoSeconds = 0 }
        ) { system in
            let kim = try await Self.asDoctor("dr-kim")
            let id = try await system.diagnosis(of: try await system.register("변학도", department: "내과"))
            _ = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 1"], headers: kim, as: .none)
            let late = try await system.post("/diagnoses/\(id)/undo", [:], headers: kim, as: .none)
            #expect(late.status == 409)
            #expect((late.json["detail"] as? String)?.contains("within 0 seconds") == true, "\(late.text)")
        }
    }

    @Test(
        "Waits raise a hand: past the clinic's alert times a row is amber, then red (a department's own alert before the general one); the waits report counts them, names them red first, and gives today's wait to the first call; the longest-wait gauge follows"
    )
    func waitsRaiseAHand() async throws {
        try await withTestSystem(
            [.gateway, .reception, .diagnosis, .patientManagement],
            configure: { config in
                // Amber after 0.3 s, red after 1.2 s of waiting; 외과 only after ten minutes.
                config.clinic.waitAlerts = [
                    .init(stage: .waiting, amberMinutes: 0.005, redMinutes: 0.02),
                    .init(stage: .waiting, department: "외과", amberMinutes: 10, redMinutes: 20),
                ]
            }
        ) { system in
            let kim = try await Self.asDoctor("dr-kim")
            let waiting = try await system.register("오래기", department: "내과")
            let called = try await system.diagnosis(of: try await system.register("불린이", department: "내과"))
            let surgery = try await system.register("외과환", department: "외과")
            #expect(try await system.post("/diagnoses/\(called)/call", ["room": "진료실 1"], headers: kim, as: .none).status == 200)

            // The board row of the one still waiting goes red; the called one has no alert for its stage.
            let rows = try await eventually("the waiting visit red on the board", timeout: .seconds(20)) {
                let rows = try await system.items("/patientManagements?limit=10")
                let red = rows.first { $0["receptionId"] as? String == waiting }
                let wait = red?["wait"] as? [String: Any]
                return wait?["level"] as? String == "red"
                    && rows.contains(where: { ($0["wait"] as? [String: Any])?["stage"] as? String == "CALLED" }) ? rows : nil
            }
            func wait(of reception: String) -> [String: Any]? {
                rows.first { $0["receptionId"] as? String == reception }?["wait"] as? [String: Any]
            }
            #expect(wait(of: waiting)?["stage"] as? String == "WAITING")
            #expect(wait(of: surgery)?["level"] as? String == "normal", "외과's own alert is ten minutes")
            let calledRow = rows.first { ($0["wait"] as? [String: Any])?["stage"] as? String == "CALLED" }
            #expect((calledRow?["wait"] as? [String: Any])?["level"] as? String == "normal")

            let waits = try await system.get("/patientManagements/waits")
            #expect(waits.status == 200, "\(waits.text)")
            let departments = waits.json["departments"] as? [[String: Any]] ?? []
            let medicine = departments.first { $0["department"] as? String == "내과" }
            #expect(medicine?["open"] as? Int == 2)
            #expect(medicine?["red"] as? Int == 1)
            let today = medicine?["today"] as? [String: Any]
            #expect(today?["called"] as? Int == 1)
            #expect((today?["averageMinutes"] as? Double).map { $0 >= 0 } == true, "\(medicine ?? [:])")
            let tooLong = waits.json["tooLong"] as? [[String: Any]] ?? []
            #expect(tooLong.map { $0["receptionId"] as? String } == [waiting])
            #expect(tooLong.first?["patientName"] as? String == "오래기")
            #expect(tooLong.first?["level"] as? String == "red")
            #expect(departments.first { $0["department"] as? String == "외과" }?["red"] as? Int == 0)

            // Prometheus: the longest wait now, and the first call's wait observed once.
            let metrics = try await system.get("/metrics", via: .patientManagement, as: .none).text
            let longest = metrics.split(separator: "\n").first {
                $0.hasPrefix("hospital_queue_longest_wait_seconds{") && $0.contains("department=\"내과\"")
                    && $0.contains("stage=\"WAITING\"")
            }
            let seconds = longest.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
            #expect((seconds ?? 0) > 1, "\(longest.map(String.init) ?? "no gauge")")
            #expect(metrics.contains("hospital_queue_wait_seconds_count{service=\"patient-management\",department=\"내과\"} 1"), "the first call observed once")
        }
    }

    @Test("The doctor's queue, live: a registration and a call are pushed to an open stream; the department's visits at their exams come with it")
    func liveQueue() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .patientManagement]) { system in
            let kim = try await Self.asDoctor("dr-kim")
            let first = try await system.diagnosis(of: try await system.register("일번", department: "내과"))
            let token = try await TestKeys.token(.doctor, username: "dr-kim")
            let stream = try await EventStream.open(
                system.url(.gateway).absoluteString + "/diagnoses/queue/live?department=%EB%82%B4%EA%B3%BC", token: token)
            #expect(stream.status == 200)
            let opening = try #require(try await stream.next(within: .seconds(10)))
            #expect(opening.name == "queue")
            #expect((opening.json["items"] as? [[String: Any]])?.map { $0["id"] as? String } == [first])
            #expect((opening.json["atExams"] as? [Any])?.isEmpty == true)

            _ = try await system.register("이번", department: "내과")
            let registered = try #require(try await stream.next(within: .seconds(20)), "no push after a registration")
            #expect((registered.json["items"] as? [Any])?.count == 2)
            #expect(try await system.post("/diagnoses/\(first)/call", ["room": "진료실 1"], headers: kim, as: .none).status == 200)
            let called = try #require(try await stream.next(within: .seconds(20)), "no push after a call")
            let place = (called.json["items"] as? [[String: Any]])?.first { $0["id"] as? String == first }
            #expect(place?["queueState"] as? String == "CALLED")
            stream.close()
        }
    }

    @Test("The doctors' worklist without a room, live: every department's open consultations, a registration and a prescription pushed; a desk is refused")
    func liveOpenWorklist() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis]) { system in
            let first = try await system.diagnosis(of: try await system.register("일번", department: "내과"))
            let token = try await TestKeys.token(.doctor, username: "dr-open")
            let stream = try await EventStream.open(system.url(.gateway).absoluteString + "/diagnoses/live", token: token)
            #expect(stream.status == 200)
            let opening = try #require(try await stream.next(within: .seconds(10)))
            #expect(opening.name == "worklist")
            #expect((opening.json["items"] as? [[String: Any]])?.map { $0["id"] as? String } == [first])

            let second = try await system.diagnosis(of: try await system.register("이번", department: "외과"))
            _ = try #require(
                try await stream.next(within: .seconds(20)) { ($0.json["items"] as? [Any])?.count == 2 },
                "no push after a registration in another department")
            let prescribed = try await system.post(
                "/diagnoses/\(second)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]])
            #expect(prescribed.status == 200)
            let pushed = try #require(
                try await stream.next(within: .seconds(20)) { event in
                    (event.json["items"] as? [[String: Any]] ?? []).contains {
                        $0["id"] as? String == second && $0["status"] as? String == "EXAM_ORDERED"
                    }
                }, "no push after a prescription")
            #expect((pushed.json["items"] as? [Any])?.count == 2, "\(pushed.json)")
            stream.close()

            let desk = try await TestKeys.token(.desk, username: "kim.desk")
            let refused = try await EventStream.open(system.url(.gateway).absoluteString + "/diagnoses/live", token: desk)
            #expect(refused.status == 403)
            refused.close()
        }
    }

    @Test("The examiner's worklist, live: an order is pushed to an open stream and goes when performed; opening is one audit entry and the visits shown later one more at its end; a doctor is refused")
    func liveWorklist() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .examination]) { system in
            let first = try await system.visitWithExam()
            let token = try await TestKeys.token(.examiner, username: "lee.live")
            let stream = try await EventStream.open(system.url(.gateway).absoluteString + "/examinations/live", token: token)
            #expect(stream.status == 200)
            let opening = try #require(try await stream.next(within: .seconds(10)))
            #expect(opening.name == "worklist")
            #expect((opening.json["items"] as? [[String: Any]])?.map { $0["id"] as? String } == [first.examId])

            let second = try await system.visitWithExam(code: "XR", name: "흉부 X선")
            // Pushes may come split or gathered (a loaded machine): each wait is for the view
            // that should follow, and what it shows is then checked whole.
            func ids(_ event: EventStream.Event) -> Set<String> {
                Set((event.json["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String })
            }
            let ordered = try #require(
                try await stream.next(within: .seconds(20)) { ids($0).contains(second.examId) }, "no push after an order")
            #expect(ids(ordered) == [first.examId, second.examId])
            #expect(try await system.post("/examinations/\(first.examId)/perform", ["result": "정상"]).status == 200)
            let performed = try #require(
                try await stream.next(within: .seconds(20)) { !ids($0).contains(first.examId) }, "no push after performing")
            #expect((performed.json["items"] as? [[String: Any]])?.map { $0["id"] as? String } == [second.examId])
            stream.close()

            let doctor = try await TestKeys.token(.doctor, username: "dr-live")
            let refused = try await EventStream.open(system.url(.gateway).absoluteString + "/examinations/live", token: doctor)
            #expect(refused.status == 403)
            refused.close()

            let admin = try await TestKeys.token(.admin, username: "auditor")
            let entries = try await eventually("the live worklist's entries", timeout: .seconds(20)) { () -> [[String: Any]]? in
                let answer = try await HTTPResult.send(
                    .GET, system.url(.examination), "/admin/audit?user=lee.live", headers: [("authorization", "Bearer \(admin)")])
                let items = (answer.json["items"] as? [[String: Any]] ?? []).filter {
                    ($0["action"] as? String)?.contains("/examinations/live") == true
                }
                return items.count >= 2 ? items : nil
            }
            #expect(entries.count == 2, "\(entries)")
            #expect(entries.first?["action"] as? String == "GET /examinations/live")
            #expect(entries.first?["receptionIds"] as? [String] == [first.receptionId])
            #expect(entries.last?["action"] as? String == "GET /examinations/live (pushed)")
            #expect(entries.last?["receptionIds"] as? [String] == [second.receptionId])
        }
    }

    @Test("Twelve live boards of one desk through the gateway are all open at once, and an ordinary request still answers beside them")
    func manyLiveViews() async throws {
        try await withTestSystem([.gateway, .reception, .patientManagement]) { system in
            _ = try await system.register("여럿봄", department: "내과")
            let token = try await TestKeys.token(.desk, username: "kim.many")
            var streams: [EventStream] = []
            for _ in 0..<12 {
                streams.append(try await EventStream.open(system.url(.gateway).absoluteString + "/patientManagements/live", token: token))
            }
            defer { for stream in streams { stream.close() } }
            #expect(streams.map(\.status) == Array(repeating: 200, count: 12))
            for (index, stream) in streams.enumerated() {
                let opening = try await stream.next(within: .seconds(20))
                #expect(opening?.name == "board", "stream \(index + 1) of 12 showed nothing")
            }
            // Ordinary requests go on beside them.
            #expect(try await system.get("/patientManagements?limit=5").status == 200)
        }
    }
}

