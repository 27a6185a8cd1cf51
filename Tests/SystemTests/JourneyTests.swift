import Foundation
import Runtime
import SQLKit
import TestSupport
import Testing

/// The seed's journey (steps 1–8) and its compensations, through the gateway.
@Suite("Outpatient journey")
struct JourneyTests {
    @Test("A visit goes from registration through two exams to a completed consultation")
    func happyPath() async throws {
        try await withTestSystem { system in
            // 1. 접수
            let receptionId = try await system.register()

            // 2. the doctor gets it (how fast is the benchmark's "registered → worklist" hop, not a
            // timed test: tests run in parallel on two cores)
            let diagnosisId = try await eventually("a WAITING diagnosis") {
                try await system.items("/diagnoses?receptionId=\(receptionId)").first {
                    $0["status"] as? String == "WAITING"
                }?["id"]
                    as? String
            }

            // 3. 검사 처방 of two exams
            let prescribed = try await system.post(
                "/diagnoses/\(diagnosisId)/prescriptions",
                ["examinations": [["code": "CBC", "name": "혈액검사"], ["code": "CXR", "name": "흉부 X선"]]])
            #expect(prescribed.status == 200)
            #expect(prescribed.json["status"] as? String == "EXAM_ORDERED")
            let orderIds = Set(
                (prescribed.json["orders"] as? [[String: Any]] ?? []).compactMap { $0["orderId"] as? String })
            #expect(orderIds.count == 2)

            // 4. two REQUESTED exams, each knowing its diagnosis, reception and order
            let exams = try await eventually("two exams") {
                let items = try await system.items("/examinations?diagnosisId=\(diagnosisId)")
                return items.count == 2 ? items : nil
            }
            for exam in exams {
                #expect(exam["status"] as? String == "REQUESTED")
                #expect(exam["diagnosisId"] as? String == diagnosisId)
                #expect(exam["receptionId"] as? String == receptionId)
            }
            #expect(Set(exams.compactMap { $0["orderId"] as? String }) == orderIds)

            // 5. 검사 시행, both
            for (index, exam) in exams.enumerated() {
                let performed = try await system.post("/examinations/\(exam["id"]!)/perform", ["result": "결과 \(index)"])
                #expect(performed.status == 200)
                #expect(performed.json["status"] as? String == "COMPLETED")
            }

            // 6. the doctor sees both results
            let reviewed = try await system.waitFor("/diagnoses/\(diagnosisId)", "status", "EXAM_DONE")
            let results = Set((reviewed["orders"] as? [[String: Any]] ?? []).compactMap { $0["result"] as? String })
            #expect(results == ["결과 0", "결과 1"])

            // 7. 진료 완료
            let completed = try await system.post("/diagnoses/\(diagnosisId)/complete", ["note": "귀가"])
            #expect(completed.status == 200)
            #expect(completed.json["status"] as? String == "COMPLETED")

            // 8. the desk sees it completed, with the time of every step
            try await system.waitFor("/receptions/\(receptionId)", "status", "COMPLETED")
            let visit = try await system.waitFor("/patientManagements/\(receptionId)", "status", "COMPLETED")
            let steps = ["receivedAt", "examOrderedAt", "examDoneAt", "completedAt"]
            let times = try steps.map { step in try #require(visit[step] as? String, "\(step) missing") }
            #expect(times == times.sorted(), "steps out of order: \(times)")
            #expect(visit["diagnosisId"] as? String == diagnosisId)
            #expect(visit["patientName"] as? String == "홍길동")
        }
    }

    @Test("Rejecting a consultation with an exam pending cancels the exam and the reception")
    func rejectionCompensates() async throws {
        try await withTestSystem { system in
            let (receptionId, diagnosisId, examId) = try await system.visitWithExam(code: "MRI", name: "MRI")

            let rejected = try await system.post("/diagnoses/\(diagnosisId)/reject", ["reason": "타 병원 전원"])
            #expect(rejected.status == 200)
            #expect(rejected.json["status"] as? String == "REJECTED")

            let exam = try await system.waitFor("/examinations/\(examId)", "status", "CANCELED")
            #expect(exam["cancelReason"] as? String == "타 병원 전원")
            let reception = try await system.waitFor("/receptions/\(receptionId)", "status", "CANCELED")
            #expect(reception["cancelReason"] as? String == "타 병원 전원")
            let visit = try await system.waitFor("/patientManagements/\(receptionId)", "status", "REJECTED")
            #expect(visit["closingReason"] as? String == "타 병원 전원")
            #expect(visit["rejectedAt"] is String)
            // The compensated exam reached the doctor's record too.
            let diagnosis = try await eventually("the order canceled on the diagnosis") {
                let d = try await system.get("/diagnoses/\(diagnosisId)").json
                return (d["orders"] as? [[String: Any]])?.first?["status"] as? String == "CANCELED" ? d : nil
            }
            #expect(diagnosis["status"] as? String == "REJECTED")
        }
    }

    @Test("The desk canceling before the doctor acts cancels the diagnosis")
    func deskCancelBeforeDoctor() async throws {
        try await withTestSystem { system in
            let receptionId = try await system.register()
            let diagnosisId = try await system.diagnosis(of: receptionId)

            let canceled = try await system.post("/receptions/\(receptionId)/cancel", ["reason": "환자 요청"])
            #expect(canceled.status == 200)
            #expect(canceled.json["status"] as? String == "CANCELED")

            let diagnosis = try await system.waitFor("/diagnoses/\(diagnosisId)", "status", "CANCELED")
            #expect(diagnosis["closingNote"] as? String == "환자 요청")
            try await system.waitFor("/patientManagements/\(receptionId)", "status", "CANCELED")
            // The doctor can no longer act on it.
            let late = try await system.post(
                "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]])
            #expect(late.status == 409)
            #expect(late.json["currentState"] as? String == "CANCELED")
        }
    }

    @Test("The desk canceling after exams were ordered cancels the pending exam")
    func deskCancelWithPendingExam() async throws {
        try await withTestSystem { system in
            let (receptionId, diagnosisId, examId) = try await system.visitWithExam(code: "CT", name: "CT")

            _ = try await system.post("/receptions/\(receptionId)/cancel", ["reason": "환자 귀가"])

            try await system.waitFor("/diagnoses/\(diagnosisId)", "status", "CANCELED")
            try await system.waitFor("/examinations/\(examId)", "status", "CANCELED")
            try await system.waitFor("/patientManagements/\(receptionId)", "status", "CANCELED")
        }
    }

    @Test("An examiner's cancellation counts as done: the doctor can then complete")
    func examinerCancel() async throws {
        try await withTestSystem { system in
            let (receptionId, diagnosisId, examId) = try await system.visitWithExam(code: "ECG", name: "심전도")
            let early = try await system.post("/diagnoses/\(diagnosisId)/complete", ["note": ""])
            #expect(early.status == 409)
            #expect(early.json["currentState"] as? String == "EXAM_ORDERED")

            let canceled = try await system.post("/examinations/\(examId)/cancel", ["reason": "장비 고장"])
            #expect(canceled.status == 200)
            #expect(canceled.json["status"] as? String == "CANCELED")

            let diagnosis = try await system.waitFor("/diagnoses/\(diagnosisId)", "status", "EXAM_DONE")
            #expect((diagnosis["orders"] as? [[String: Any]])?.first?["cancelReason"] as? String == "장비 고장")
            // The note is optional, and so is a body without it.
            let completed = try await system.post("/diagnoses/\(diagnosisId)/complete")
            #expect(completed.status == 200)
            try await system.waitFor("/receptions/\(receptionId)", "status", "COMPLETED")
            try await system.waitFor("/patientManagements/\(receptionId)", "status", "COMPLETED")
        }
    }

    @Test("Every endpoint also answers on its service's own port")
    func ownPorts() async throws {
        try await withTestSystem { system in
            let receptionId = try await system.register()
            #expect(try await system.get("/receptions/\(receptionId)", via: .reception).status == 200)
            let diagnosisId = try await system.diagnosis(of: receptionId, via: .diagnosis)
            #expect(try await system.get("/diagnoses/\(diagnosisId)", via: .diagnosis).status == 200)
            #expect(try await system.get("/examinations", via: .examination).status == 200)
            try await system.waitFor(
                "/patientManagements/\(receptionId)", "status", "RECEIVED", via: .patientManagement)
            for service in ServiceName.allCases {
                let spec = try await system.get("/openapi.yaml", via: service)
                #expect(spec.status == 200)
                #expect(spec.text.hasPrefix("openapi: 3.1"))
                #expect(try await system.get("/health/ready", via: service).status == 200)
            }
        }
    }
}

@Suite("The desk's board at volume")
struct BoardSearchTests {
    @Test("The board finds visits by the start of the name, by status, a page at a time; the screen too")
    func searchFilterAndPage() async throws {
        try await withTestSystem { system in
            var ids: [String: String] = [:]
            for name in ["김민수", "김철수", "이영희", "김민지"] { ids[name] = try await system.register(name) }
            let canceled = try await system.post("/receptions/\(ids["김철수"]!)/cancel", ["reason": "환자 귀가"])
            #expect(canceled.status == 200)
            _ = try await eventually("four visits on the board") {
                try await system.items("/patientManagements?limit=200").count == 4 ? true : nil
            }
            try await system.waitFor("/patientManagements/\(ids["김철수"]!)", "status", "CANCELED")
            func names(_ query: String) async throws -> Set<String> {
                Set(try await system.items("/patientManagements?\(query)").compactMap { $0["patientName"] as? String })
            }
            let kim = "%EA%B9%80"  // 김
            let kimMin = kim + "%EB%AF%BC"  // 김민
            #expect(try await names("name=\(kim)") == ["김민수", "김철수", "김민지"])
            #expect(try await names("name=\(kimMin)") == ["김민수", "김민지"])
            #expect(try await names("name=\(kim)&status=CANCELED") == ["김철수"])
            #expect(try await names("name=%25") == [])  // a wildcard character is only a character
            let firstPage = try await system.get("/patientManagements?name=\(kim)&limit=2")
            #expect(firstPage.json["total"] as? Int == 3)
            #expect((firstPage.json["items"] as? [[String: Any]])?.count == 2)
            #expect(try await names("name=\(kim)&limit=2&offset=2").count == 1)
            #expect(
                try await system.get("/patientManagements?name=" + String(repeating: "a", count: 101)).status == 400)

            // The desk's screen: the search form narrows the board and keeps the query in its refresh.
            let screen = try await system.get("/desk?name=\(kimMin)&status=RECEIVED").text
            #expect(screen.contains("김민수") && screen.contains("김민지"))
            #expect(!screen.contains("이영희") && !screen.contains("김철수"))
            #expect(screen.contains("data-refresh=\"/desk/board?name="))
            #expect(!screen.contains("rel=\"prev\"") && !screen.contains("rel=\"next\""), "one page: no pager links")
            let rows = try await system.get("/desk/board?name=\(kimMin)&status=RECEIVED").text
            #expect(rows.contains("김민수") && !rows.contains("이영희"))

            // Past one page of 50: the pager links the next page, which links back.
            for i in 0..<47 { _ = try await system.register("박\(i)") }
            _ = try await eventually("51 visits on the board") {
                try await system.get("/patientManagements?limit=1").json["total"] as? Int == 51 ? true : nil
            }
            let first = try await system.get("/desk").text
            #expect(first.contains("rel=\"next\" href=\"/desk?page=2\"") && !first.contains("rel=\"prev\""))
            let second = try await system.get("/desk?page=2").text
            #expect(second.contains("rel=\"prev\"") && !second.contains("rel=\"next\""))
            #expect(second.components(separatedBy: "data-reception=").count - 1 == 1)
        }
    }

    @Test("The desk finds a patient's visits by chart number, sent in the body; the screen too")
    func chartNumberSearch() async throws {
        try await withTestSystem { system in
            func patient(_ name: String) async throws -> (id: String, chart: String) {
                let response = try await system.post("/patients", ["name": name, "birthDate": "1970-01-01", "sex": "F"])
                try #require(response.status == 201, "\(response.text)")
                return (try #require(response.json["id"] as? String), try #require(response.json["chartNumber"] as? String))
            }
            func register(_ patientId: String) async throws -> String {
                let response = try await system.post("/receptions", ["patientId": patientId, "department": "내과"])
                try #require(response.status == 201, "\(response.text)")
                return try #require(response.json["id"] as? String)
            }
            let kim = try await patient("김민수")
            let lee = try await patient("이영희")
            let first = try await register(kim.id)
            _ = try await register(lee.id)
            let second = try await register(kim.id)
            let canceled = try await system.post("/receptions/\(first)/cancel", ["reason": "환자 귀가"])
            #expect(canceled.status == 200)

            let found = try await system.post("/receptions/search", ["chartNumber": kim.chart])
            #expect(found.status == 200)
            let items = try #require(found.json["items"] as? [[String: Any]])
            #expect(items.compactMap { $0["id"] as? String } == [second, first], "newest first")
            #expect(found.json["total"] as? Int == 2)
            #expect(items.map { $0["status"] as? String } == ["RECEIVED", "CANCELED"])
            // On the service's own port too; paging in the query, the number in the body.
            let page = try await system.post("/receptions/search?limit=1", ["patientId": kim.id], via: .reception)
            #expect((page.json["items"] as? [[String: Any]])?.count == 1 && page.json["next"] is String)
            let none = try await system.post("/receptions/search", ["chartNumber": "P-9999"])
            #expect(none.status == 200 && (none.json["items"] as? [Any])?.isEmpty == true)
            for bad in [
                ["patientId": ""], ["chartNumber": "P 0001"], [:], ["chartNumber": String(repeating: "1", count: 21)],
                ["patientId": "P-0001"],
            ] {
                let refused = try await system.post("/receptions/search", bad)
                #expect(refused.status == 422, "\(bad): \(refused.text)")
            }

            // The desk's screen: a form POST, so the number never appears in a URL.
            let screen = try await system.post(
                "/desk/patient", raw: "patientId=\(kim.chart)",
                headers: [("content-type", "application/x-www-form-urlencoded")])
            #expect(screen.status == 200)
            #expect(screen.text.components(separatedBy: "data-reception=").count - 1 == 2)
            #expect(screen.text.contains("/desk/receptions/\(second)/cancel"), "an open visit can be canceled")
            #expect(!screen.text.contains("/desk/receptions/\(first)/cancel"))
            #expect(try await system.get("/desk").text.contains("action=\"/desk/patient\""))
        }
    }

    @Test("Keyset pages: following `next` reads every item once, in the order offset paging gives")
    func keysetPages() async throws {
        try await withTestSystem { system in
            for i in 0..<7 { _ = try await system.register("환자\(i)") }
            _ = try await eventually("seven visits on the board and the worklist") {
                let board = try await system.get("/patientManagements?limit=1").json["total"] as? Int
                let worklist = try await system.get("/diagnoses?limit=1").json["total"] as? Int
                return board == 7 && worklist == 7 ? true : nil
            }
            // Newest first (receptions, board) and oldest first (worklist, exams).
            for (path, key) in [
                ("/receptions", "id"), ("/patientManagements", "receptionId"), ("/diagnoses", "id"),
            ] {
                let everything = try await system.items("\(path)?limit=200").map { $0[key] as! String }
                #expect(everything.count == 7)
                var pages: [[String]] = []
                var after: String?
                repeat {
                    let page = try await system.get("\(path)?limit=3" + (after.map { "&after=\($0)" } ?? ""))
                    #expect(page.status == 200)
                    #expect(page.json["total"] as? Int == 7)
                    pages.append((page.json["items"] as! [[String: Any]]).map { $0[key] as! String })
                    after = page.json["next"] as? String
                } while after != nil && pages.count < 10
                #expect(pages.map(\.count) == [3, 3, 1], "\(path)")
                #expect(pages.flatMap { $0 } == everything, "\(path)")
            }
            #expect(try await system.get("/receptions?after=not-a-cursor").status == 400)
            let first = try await system.get("/receptions?limit=3")
            let next = try #require(first.json["next"] as? String)
            #expect(try await system.get("/receptions?after=\(next)&offset=3").status == 400)
        }
    }

    @Test("A list counts its matches up to 1,000 and says when there are more; the screen shows 1000+")
    func cappedCount() async throws {
        try await withTestSystem { system in
            let id = try await system.register("홍길동")
            try await system.waitFor("/patientManagements/\(id)", "status", "RECEIVED")
            // 1,000 more rows like it, written straight into the board's table.
            let board = try #require(system.system.database(of: .patientManagement))
            let newId =
                board.dialect.name == "sqlite"
                ? "hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(6))"
                : "gen_random_uuid()"
            try await board.raw(
                """
                WITH RECURSIVE seq(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM seq WHERE k < 1000)
                INSERT INTO patient_managements (reception_id, status, received_at, document, patient_name)
                SELECT \(unsafeRaw: newId), status, received_at, document, patient_name FROM patient_managements, seq
                """
            ).run()
            let all = try await system.get("/patientManagements?limit=1")
            #expect(all.json["total"] as? Int == 1000)
            #expect(all.json["totalCapped"] as? Bool == true)
            #expect(all.json["next"] is String)
            let none = try await system.get("/patientManagements?status=COMPLETED")
            #expect(none.json["total"] as? Int == 0)
            #expect(none.json["totalCapped"] as? Bool == false)
            let screen = try await system.get("/desk").text
            #expect(screen.contains("1000+"))
            #expect(screen.contains("rel=\"next\""))
        }
    }
}
