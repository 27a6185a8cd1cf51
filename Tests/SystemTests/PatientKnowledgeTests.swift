import Foundation
import Runtime
import TestSupport
import Testing

/// Every service knows who a visit's patient is from the events alone: the doctor's worklist and
/// the examiner's show 만 나이 and sex, a correction at the desk reaches all of them, and the
/// doctor reads the patient's previous visits from the diagnosis service's own data.
@Suite("What every service knows of the patient")
struct PatientKnowledgeTests {
    @Test("The worklists and the board show age and sex; a correction at the desk reaches every one of them by event")
    func correctionReachesEveryone() async throws {
        try await withTestSystem { system in
            let patient = try await system.post(
                "/patients", ["name": "정확한", "birthDate": "1950-06-15", "sex": "F", "phone": "010-7777-8888"])
            let patientId = try #require(patient.json["id"] as? String)
            let age = try #require(patient.json["age"] as? Int)
            let visit = try await system.post("/receptions", ["patientId": patientId, "department": "내과"])
            let receptionId = try #require(visit.json["id"] as? String)
            let diagnosisId = try await system.diagnosis(of: receptionId)
            let diagnosis = try await system.get("/diagnoses/\(diagnosisId)")
            #expect(diagnosis.json["patientId"] as? String == patientId)
            #expect(diagnosis.json["sex"] as? String == "F")
            #expect(diagnosis.json["age"] as? Int == age)
            #expect(!diagnosis.text.contains("010-7777"))
            let prescribed = try await system.post(
                "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]])
            #expect(prescribed.status == 200)
            let exam = try await eventually("the exam") {
                try await system.items("/examinations?diagnosisId=\(diagnosisId)").first
            }
            #expect(exam["sex"] as? String == "F" && exam["age"] as? Int == age)
            #expect(exam["birthDate"] == nil, "the examiner sees the age, not the birth date")

            let corrected = try await system.patch(
                "/patients/\(patientId)", ["version": 1, "name": "정정된", "birthDate": "1951-06-15", "sex": "M"])
            #expect(corrected.status == 200, "\(corrected.text)")
            try await system.waitFor("/diagnoses/\(diagnosisId)", "patientName", "정정된")
            let after = try await system.get("/diagnoses/\(diagnosisId)")
            #expect(after.json["sex"] as? String == "M" && after.json["age"] as? Int == age - 1)
            let examId = try #require(exam["id"] as? String)
            try await system.waitFor("/examinations/\(examId)", "patientName", "정정된")
            try await system.waitFor("/patientManagements/\(receptionId)", "patientName", "정정된")
            // The desk's board finds the visit by the new name.
            let board = try await system.items("/patientManagements?name=정정")
            #expect(board.contains { $0["receptionId"] as? String == receptionId })
        }
    }

    @Test("The doctor reads a patient's previous visits, results included, with reception down; merged records' visits too")
    func previousVisits() async throws {
        let directory = TestSystem.temporaryDirectory()
        // Two visits of one patient and one of a duplicate record, completed with results.
        let (keep, current, earlier) = try await withTestSystem(dataDirectory: directory) { system in
            let keep = try #require(
                try await system.post("/patients", ["name": "이전진", "birthDate": "1960-01-01", "sex": "M"])
                    .json["id"] as? String)
            let dup = try #require(
                try await system.post(
                    "/patients", ["name": "이전진", "birthDate": "1960-01-01", "sex": "M", "confirmDistinct": true]
                ).json["id"] as? String)
            func completedVisit(_ patientId: String, result: String) async throws -> String {
                let visit = try await system.post("/receptions", ["patientId": patientId, "department": "내과"])
                let diagnosisId = try await system.diagnosis(of: try #require(visit.json["id"] as? String))
                _ = try await system.post(
                    "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]])
                let examId = try await eventually("the exam") {
                    try await system.items("/examinations?diagnosisId=\(diagnosisId)").first?["id"] as? String
                }
                #expect(try await system.post("/examinations/\(examId)/perform", ["result": result]).status == 200)
                try await system.waitFor("/diagnoses/\(diagnosisId)", "status", "EXAM_DONE")
                #expect(try await system.post("/diagnoses/\(diagnosisId)/complete", ["note": "호전"]).status == 200)
                return diagnosisId
            }
            let earlier = try await completedVisit(keep, result: "백혈구 정상")
            _ = try await completedVisit(dup, result: "빈혈 소견")
            let merged = try await system.post("/patients/\(dup)/merge", ["into": keep], as: .role(.admin))
            #expect(merged.status == 200)
            let visit = try await system.post("/receptions", ["patientId": keep, "department": "내과"])
            let current = try await system.diagnosis(of: try #require(visit.json["id"] as? String))
            // The merge reached the doctor's service: both earlier visits are this patient's.
            _ = try await eventually("both earlier visits in the history") {
                let items = try await system.items("/diagnoses/\(current)/history")
                return items.count == 2 ? items : nil
            }
            return (keep, current, earlier)
        }
        // Reception down: the doctor's service alone answers the history.
        try await withTestSystem([.gateway, .diagnosis], dataDirectory: directory) { system in
            let history = try await system.items("/diagnoses/\(current)/history")
            #expect(history.count == 2)
            #expect(history.allSatisfy { $0["patientId"] as? String == keep || $0["patientId"] != nil })
            #expect(history.contains { $0["id"] as? String == earlier })
            let results = history.flatMap { ($0["orders"] as? [[String: Any]]) ?? [] }.compactMap { $0["result"] as? String }
            #expect(Set(results) == ["백혈구 정상", "빈혈 소견"])
            #expect(history.allSatisfy { $0["status"] as? String == "COMPLETED" })
            // The examiner may not read it.
            #expect(try await system.get("/diagnoses/\(current)/history", as: .role(.examiner)).status == 403)
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
