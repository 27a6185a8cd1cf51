import Contracts
import Foundation
import Identity
import Runtime
import TestSupport
import Testing

/// The patient registry (환자 마스터), on SQLite and (with HOSPITAL_TEST_POSTGRES_URL) PostgreSQL:
/// issued chart numbers, duplicates, corrections with history, search, merge, and visits that
/// name a registered patient.
@Suite("Patient registry")
struct PatientRegistryTests {
    nonisolated(unsafe) static let hong: [String: Any] = [
        "name": "홍길동", "birthDate": "1985-03-15", "sex": "M", "phone": "010-1234-5678",
        "address": "서울시 종로구", "residentNumber": "850315-1234567",
    ]

    @discardableResult
    static func newPatient(_ system: TestSystem, _ body: [String: Any]) async throws -> [String: Any] {
        let created = try await system.post("/patients", body)
        try #require(created.status == 201, "\(created.text)")
        return created.json
    }

    @Test("신환 등록 issues an eight-digit chart number with a check digit; the answer masks the resident number")
    func register() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let created = try await system.post("/patients", Self.hong)
            #expect(created.status == 201, "\(created.text)")
            let chart = try #require(created.json["chartNumber"] as? String)
            #expect(chart.count == 8 && chart.allSatisfy(\.isNumber))
            #expect(ChartNumberCheck.valid(chart))
            #expect(created.json["residentNumber"] as? String == "850315-1******")
            #expect(created.json["version"] as? Int == 1)
            #expect(created.json["sex"] as? String == "M")
            #expect(created.json["age"] as? Int != nil)
            let id = try #require(created.json["id"] as? String)
            #expect(created.headers.first(name: "location") == "/patients/\(id)")
            let read = try await system.get("/patients/\(id)")
            #expect(read.status == 200)
            #expect(read.json["chartNumber"] as? String == chart)
            #expect(read.json["phone"] as? String == "010-1234-5678")
            let changes = try #require(read.json["changes"] as? [[String: Any]])
            #expect(changes.count == 1 && changes[0]["kind"] as? String == "registered")
            // Nothing of it in clear in the database but what the desk reads back.
            #expect(try await system.count("patients", in: .reception, where: "resident_number LIKE '%1234567%'") == 0)
            // The event names the patient and what screens show, never the contact or the number.
            let payload = try #require(
                try await system.strings(.reception, "SELECT payload FROM outbox WHERE payload LIKE '%PatientRegistered%'")
                    .first)
            #expect(payload.contains("홍길동") && payload.contains("1985-03-15"))
            #expect(!payload.contains("010-1234") && !payload.contains("종로") && !payload.contains("1234567"))
            #expect(!payload.contains(chart))
            // Each new patient gets the next number.
            let second = try await Self.newPatient(
                system, ["name": "김영희", "birthDate": "1990-01-02", "sex": "F"])
            let next = try #require(second["chartNumber"] as? String)
            #expect(Int(next.prefix(7))! == Int(chart.prefix(7))! + 1)
        }
    }

    @Test("Bad demographics are refused field by field and change nothing", arguments: [
        (["name": "홍길동", "birthDate": "2999-01-01", "sex": "M"], "birthDate"),
        (["name": "홍길동", "birthDate": "2023-02-30", "sex": "M"], "birthDate"),
        (["name": "홍길동", "birthDate": "1985-03-15", "sex": "X"], "sex"),
        (["name": "홍길동", "birthDate": "1985-03-15"], "sex"),
        (["name": "홍\u{202E}길동", "birthDate": "1985-03-15", "sex": "M"], "name"),
        (["name": "홍\u{0007}길동", "birthDate": "1985-03-15", "sex": "M"], "name"),
        (["name": "홍길동", "birthDate": "1985-03-16", "sex": "M", "residentNumber": "850315-1234567"], "residentNumber"),
        (["name": "홍길동", "birthDate": "1985-03-15", "sex": "F", "residentNumber": "850315-1234567"], "residentNumber"),
        (["name": "홍길동", "birthDate": "1985-03-15", "sex": "M", "phone": "call me"], "phone"),
    ] as [([String: String], String)])
    func badInput(body: [String: String], field: String) async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let refused = try await system.post("/patients", body)
            #expect(refused.status == 422, "\(refused.text)")
            let fields = (refused.json["errors"] as? [[String: Any]])?.compactMap { $0["field"] as? String } ?? []
            #expect(fields.contains(field), "\(refused.text)")
            #expect(try await system.count("patients", in: .reception) == 0)
            #expect(try await system.count("outbox", in: .reception) == 0)
        }
    }

    @Test("The same resident number is refused naming the patient; the same name and birth date asks for confirmation")
    func duplicates() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let first = try await Self.newPatient(system, Self.hong)
            let chart = try #require(first["chartNumber"] as? String)
            // Another name, the same resident number.
            var again = Self.hong
            again["name"] = "홍길순"
            let same = try await system.post("/patients", again)
            #expect(same.status == 409)
            #expect(same.json["type"] as? String == "/problems/duplicate-patient")
            #expect((same.json["detail"] as? String)?.contains(chart) == true)
            #expect((same.json["candidates"] as? [[String: Any]])?.first?["chartNumber"] as? String == chart)
            // The same name and birth date, no resident number: a possible duplicate.
            let twin: [String: Any] = ["name": "홍길동", "birthDate": "1985-03-15", "sex": "M"]
            let possible = try await system.post("/patients", twin)
            #expect(possible.status == 409)
            #expect(possible.json["type"] as? String == "/problems/possible-duplicate")
            #expect((possible.json["candidates"] as? [[String: Any]])?.count == 1)
            // The same phone typed without dashes is the same phone.
            let sameDigits = try await system.post(
                "/patients", ["name": "홍길동", "birthDate": "1985-03-15", "sex": "M", "phone": "01012345678"])
            #expect(sameDigits.status == 409)
            // Another phone: someone else.
            var otherPhone = twin
            otherPhone["phone"] = "010-9999-0000"
            #expect(try await system.post("/patients", otherPhone).status == 201)
            // Confirmed as someone else: registered.
            var confirmed = twin
            confirmed["confirmDistinct"] = true
            #expect(try await system.post("/patients", confirmed).status == 201)
            // A walk-in with the same resident number is refused too.
            let walkIn = try await system.post(
                "/receptions", ["patientName": "홍길동", "residentNumber": "850315-1234567", "department": "내과"])
            #expect(walkIn.status == 409, "\(walkIn.text)")
            #expect(try await system.count("patients", in: .reception) == 3)
            #expect(try await system.count("receptions", in: .reception) == 0)
        }
    }

    @Test("Two desks registering the same new patient at once end with one patient")
    func concurrentSamePatient() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await system.post("/patients", ["name": "동시환자", "birthDate": "1970-07-07", "sex": "F"])
                            .status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0 == 409 }.count == 7, "\(statuses)")
            #expect(try await system.count("patients", in: .reception) == 1)
        }
    }

    @Test("Registrations and corrections racing for one resident number: exactly one patient gets it, the others a 409")
    func residentNumberRace() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            var others: [String] = []
            for n in 0..<4 {
                let p = try await Self.newPatient(system, ["name": "경합\(n)", "birthDate": "1985-03-15", "sex": "M"])
                others.append(try #require(p["id"] as? String))
            }
            let ids = others
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for n in 0..<4 {
                    group.addTask {
                        try await system.post(
                            "/patients",
                            ["name": "새환자\(n)", "birthDate": "1985-03-15", "sex": "M", "residentNumber": "850315-1234567"]
                        ).status
                    }
                    group.addTask {
                        try await system.patch(
                            "/patients/\(ids[n])", ["version": 1, "residentNumber": "850315-1234567"]
                        ).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { [200, 201].contains($0) }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0 == 409 }.count == 7, "\(statuses)")
            #expect(
                try await system.count("patients", in: .reception, where: "resident_number_index IS NOT NULL") == 1)
        }
    }

    @Test("Concurrent registrations never share a chart number")
    func numbersUnique() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            // Eight at once, three times: each wave races for the next numbers (and the suite
            // runs beside every other, where 24 at once on one writer outlasted the client's
            // 30 s deadline; see docs/testing.md).
            var charts: [String] = []
            for wave in 0..<3 {
                charts += try await withThrowingTaskGroup(of: String?.self) { group in
                    for n in (wave * 8)..<(wave * 8 + 8) {
                        group.addTask {
                            try await system.post(
                                "/patients", ["name": "환자\(n)", "birthDate": "1980-01-01", "sex": n % 2 == 0 ? "M" : "F"]
                            ).json["chartNumber"] as? String
                        }
                    }
                    return try await group.reduce(into: [String]()) { if let c = $1 { $0.append(c) } }
                }
            }
            #expect(charts.count == 24)
            #expect(Set(charts).count == 24)
        }
    }

    @Test("A correction needs the version read: a stale one is 409; each change is kept as who, when and which fields")
    func correction() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let created = try await Self.newPatient(system, Self.hong)
            let id = try #require(created["id"] as? String)
            let first = try await system.patch("/patients/\(id)", ["version": 1, "phone": "010-2222-3333", "name": "홍길동"])
            #expect(first.status == 200, "\(first.text)")
            #expect(first.json["version"] as? Int == 2)
            #expect(first.json["phone"] as? String == "010-2222-3333")
            let stale = try await system.patch("/patients/\(id)", ["version": 1, "name": "홍길순"])
            #expect(stale.status == 409)
            let missing = try await system.patch("/patients/\(id)", ["name": "홍길순"])
            #expect(missing.status == 422)
            let bad = try await system.patch("/patients/\(id)", ["version": 2, "sex": "Q"])
            #expect(bad.status == 422)
            // The resident number on record (850315-1…) says 1985-03-15 and male.
            let contradicting = try await system.patch("/patients/\(id)", ["version": 2, "sex": "F"])
            #expect(contradicting.status == 422, "\(contradicting.text)")
            let renamed = try await system.patch("/patients/\(id)", ["version": 2, "name": "홍길순", "address": NSNull()])
            #expect(renamed.status == 200, "\(renamed.text)")
            #expect(renamed.json["address"] is NSNull)
            let read = try await system.get("/patients/\(id)")
            let changes = try #require(read.json["changes"] as? [[String: Any]])
            #expect(changes.map { $0["kind"] as? String } == ["registered", "corrected", "corrected"])
            #expect(changes[1]["fields"] as? String == "phone")
            #expect(changes[2]["fields"] as? String == "name,address")
            #expect(changes[2]["by"] as? String == "test-desk")
            // Only the name travels: one PatientUpdated, for the second correction.
            let updates = try await system.strings(
                .reception, "SELECT payload FROM outbox WHERE payload LIKE '%PatientUpdated%'")
            #expect(updates.count == 1)
            #expect(updates.first?.contains("홍길순") == true)
            #expect(updates.first?.contains("010-2222") == false)
        }
    }

    @Test("Corrections from the same version at once: exactly one is kept, the others are 409 and change nothing")
    func concurrentCorrections() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let created = try await Self.newPatient(system, Self.hong)
            let id = try #require(created["id"] as? String)
            // Eight desks read version 1 and correct the phone number at once. On PostgreSQL they
            // run side by side, so more than one passes the check of the version read; the
            // version guard of the save itself is what keeps all but one out.
            let statuses = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for desk in 0..<8 {
                    let phone = "010-3000-000\(desk)"
                    group.addTask {
                        (try await system.patch("/patients/\(id)", ["version": 1, "phone": phone]).status, phone)
                    }
                }
                return try await group.reduce(into: [(Int, String)]()) { $0.append($1) }
            }
            let kept = statuses.filter { $0.0 == 200 }
            #expect(kept.count == 1, "\(statuses)")
            #expect(statuses.filter { $0.0 == 409 }.count == 7, "\(statuses)")
            let read = try await system.get("/patients/\(id)")
            #expect(read.json["version"] as? Int == 2)
            #expect(read.json["phone"] as? String == kept.first?.1)
            let changes = try #require(read.json["changes"] as? [[String: Any]])
            #expect(changes.map { $0["kind"] as? String } == ["registered", "corrected"])
        }
    }

    @Test("Search takes its criteria from the body, every one given must match, and each search is audited with the chart numbers")
    func search() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let hong = try await Self.newPatient(system, Self.hong)
            try await Self.newPatient(system, ["name": "홍길순", "birthDate": "1990-05-05", "sex": "F", "phone": "010-5555-6666"])
            try await Self.newPatient(system, ["name": "김홍길", "birthDate": "1985-03-15", "sex": "M"])
            func names(_ body: [String: Any]) async throws -> [String] {
                let found = try await system.post("/patients/search", body)
                try #require(found.status == 200, "\(found.text)")
                return ((found.json["items"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String }.sorted()
            }
            #expect(try await names(["name": "홍길"]) == ["홍길동", "홍길순"])
            #expect(try await names(["name": "홍길", "birthDate": "1985-03-15"]) == ["홍길동"])
            #expect(try await names(["birthDate": "1985-03-15"]) == ["김홍길", "홍길동"])
            #expect(try await names(["phone": "010-5555-6666"]) == ["홍길순"])
            #expect(try await names(["chartNumber": try #require(hong["chartNumber"] as? String)]) == ["홍길동"])
            #expect(try await names(["residentNumber": "850315-1234567"]) == ["홍길동"])
            #expect(try await names(["name": "이"]) == [])
            let nothing = try await system.post("/patients/search", [:])
            #expect(nothing.status == 422)
            let badDate = try await system.post("/patients/search", ["birthDate": "1985-02-30"])
            #expect(badDate.status == 422)
            // The desk only: a doctor may read a patient, not search the registry.
            #expect(try await system.post("/patients/search", ["name": "홍"], as: .role(.doctor)).status == 403)
            let chart = try #require(hong["chartNumber"] as? String)
            let audited = try await eventually("the search's audit entry") {
                let entries = try await system.auditEntries(of: .reception, chartNumber: chart)
                return entries.contains { $0["action"] as? String == "POST /patients/search" } ? entries : nil
            }
            #expect(audited.contains { $0["action"] as? String == "POST /patients" })
        }
    }

    @Test("A doctor reads a patient without contact details; an examiner reads name, chart number, age and sex only")
    func roleViews() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let created = try await Self.newPatient(system, Self.hong)
            let id = try #require(created["id"] as? String)
            let doctor = try await system.get("/patients/\(id)", as: .role(.doctor))
            #expect(doctor.status == 200)
            #expect(doctor.json["phone"] is NSNull && doctor.json["address"] is NSNull)
            #expect(doctor.json["residentNumber"] is NSNull)
            #expect(doctor.json["birthDate"] as? String == "1985-03-15")
            #expect(doctor.json["contactWithheld"] as? Bool == true)
            #expect(doctor.json["changes"] == nil)
            let examiner = try await system.get("/patients/\(id)", as: .role(.examiner))
            #expect(examiner.status == 200)
            #expect(examiner.json["name"] as? String == "홍길동")
            #expect(examiner.json["chartNumber"] as? String == created["chartNumber"] as? String)
            #expect(examiner.json["sex"] as? String == "M")
            #expect(examiner.json["age"] as? Int != nil)
            #expect(examiner.json["birthDate"] is NSNull && examiner.json["phone"] is NSNull)
            #expect(try await system.patch("/patients/\(id)", ["version": 1, "name": "x"], as: .role(.doctor)).status == 403)
            #expect(try await system.post("/patients", Self.hong, as: .role(.examiner)).status == 403)
        }
    }

    @Test("The lists get the chart numbers of their patients by id, and nothing more; each lookup is audited")
    func lookup() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let a = try await Self.newPatient(system, Self.hong)
            let b = try await Self.newPatient(system, ["name": "김영희", "birthDate": "1990-01-02", "sex": "F"])
            let ids = [a["id"] as! String, b["id"] as! String, UUID().uuidString]
            for role in [Role.desk, .doctor, .examiner] {
                let found = try await system.post("/patients/lookup", ["ids": ids], as: .role(role))
                #expect(found.status == 200, "\(found.text)")
                let items = try #require(found.json["items"] as? [[String: Any]])
                #expect(Set(items.compactMap { $0["chartNumber"] as? String }) == [a["chartNumber"] as! String, b["chartNumber"] as! String])
                #expect(items.allSatisfy { Set($0.keys) == ["id", "chartNumber"] })
            }
            #expect(try await system.post("/patients/lookup", ["ids": ["nope"]]).status == 422)
            #expect(try await system.post("/patients/lookup", ["ids": [String]()]).status == 422)
            #expect(try await system.post("/patients/lookup", ["ids": ids], as: .role(.admin)).status == 403)
            let entry = try await eventually("the lookup's audit entry") {
                try await system.auditEntries(of: .reception, chartNumber: b["chartNumber"] as! String)
                    .first { $0["action"] as? String == "POST /patients/lookup" }
            }
            #expect((entry["patientId"] as? String)?.contains(a["chartNumber"] as! String) == true)
        }
    }

    @Test("A visit names a registered patient; an unknown one, or details beside it, are refused with nothing written")
    func visitByPatientId() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let patient = try await Self.newPatient(system, Self.hong)
            let id = try #require(patient["id"] as? String)
            let visit = try await system.post("/receptions", ["patientId": id, "department": "내과", "symptom": "기침"])
            #expect(visit.status == 201, "\(visit.text)")
            #expect(visit.json["patientId"] as? String == id)
            #expect(visit.json["chartNumber"] as? String == patient["chartNumber"] as? String)
            #expect(visit.json["patientName"] as? String == "홍길동")
            #expect(visit.json["sex"] as? String == "M")
            #expect(visit.json["residentNumber"] as? String == "850315-1******")
            let unknown = try await system.post("/receptions", ["patientId": UUID().uuidString, "department": "내과"])
            #expect(unknown.status == 422)
            #expect((unknown.json["errors"] as? [[String: Any]])?.first?["field"] as? String == "patientId")
            let chartAsId = try await system.post("/receptions", ["patientId": "P-001", "department": "내과"])
            #expect(chartAsId.status == 422)
            let both = try await system.post("/receptions", ["patientId": id, "patientName": "누구", "department": "내과"])
            #expect(both.status == 422)
            #expect(try await system.count("receptions", in: .reception) == 1)
            // The event carries who the patient is, never the contact or the numbers.
            let payload = try #require(
                try await system.strings(.reception, "SELECT payload FROM outbox WHERE payload LIKE '%TreatmentReceived%'")
                    .first)
            #expect(payload.contains(id) && payload.contains("\"sex\":\"M\"") && payload.contains("1985-03-15"))
            #expect(!payload.contains("010-1234") && !payload.contains("1234567"))
            // The visits of the patient, by chart number (in the body).
            let visits = try await system.post(
                "/receptions/search", ["chartNumber": try #require(patient["chartNumber"] as? String)])
            #expect((visits.json["items"] as? [[String: Any]])?.count == 1)
        }
    }

    @Test("A walk-in registers its patient with the visit; one without a birth date is never taken for another")
    func walkIn() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let first = try await system.post("/receptions", ["patientName": "무명", "department": "응급"])
            let second = try await system.post("/receptions", ["patientName": "무명", "department": "응급"])
            #expect(first.status == 201 && second.status == 201)
            #expect(first.json["patientId"] as? String != second.json["patientId"] as? String)
            #expect(first.json["sex"] as? String == "U")
            // With a birth date, the registry's duplicate rule applies.
            let dated = try await system.post(
                "/receptions", ["patientName": "정해진", "birthDate": "1960-06-06", "sex": "M", "department": "내과"])
            #expect(dated.status == 201)
            let twin = try await system.post(
                "/receptions", ["patientName": "정해진", "birthDate": "1960-06-06", "department": "내과"])
            #expect(twin.status == 409)
            #expect(twin.json["type"] as? String == "/problems/possible-duplicate")
            #expect(try await system.count("patients", in: .reception) == 3)
        }
    }

    @Test("A merge moves every visit to the surviving record; the merged one says where it went; both are audited")
    func merge() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let keep = try await Self.newPatient(system, Self.hong)
            let dup = try await Self.newPatient(
                system, ["name": "홍길동", "birthDate": "1985-03-15", "sex": "M", "confirmDistinct": true])
            let keepId = try #require(keep["id"] as? String)
            let dupId = try #require(dup["id"] as? String)
            for id in [keepId, dupId, dupId] {
                #expect(try await system.post("/receptions", ["patientId": id, "department": "내과"]).status == 201)
            }
            #expect(try await system.post("/patients/\(dupId)/merge", ["into": keepId], as: .role(.desk)).status == 403)
            let merged = try await system.post("/patients/\(dupId)/merge", ["into": keepId], as: .role(.admin))
            #expect(merged.status == 200, "\(merged.text)")
            #expect(merged.json["visitsMoved"] as? Int == 2)
            let read = try await system.get("/patients/\(dupId)")
            #expect(read.json["mergedInto"] as? String == keepId)
            #expect(read.json["mergedIntoChartNumber"] as? String == keep["chartNumber"] as? String)
            // Every visit is the survivor's, found by either chart number.
            let visits = try await system.post("/receptions/search", ["patientId": keepId])
            #expect((visits.json["items"] as? [[String: Any]])?.count == 3)
            let byOld = try await system.post("/receptions/search", ["chartNumber": dup["chartNumber"] as! String])
            #expect((byOld.json["items"] as? [[String: Any]])?.count == 3)
            // The merged record takes no new visit, and is not merged twice; nor can it be corrected.
            let late = try await system.post("/receptions", ["patientId": dupId, "department": "내과"])
            #expect(late.status == 422)
            #expect(((late.json["errors"] as? [[String: Any]])?.first?["message"] as? String)?.contains(keepId) == true)
            #expect(try await system.post("/patients/\(dupId)/merge", ["into": keepId], as: .role(.admin)).status == 409)
            #expect(try await system.post("/patients/\(keepId)/merge", ["into": keepId], as: .role(.admin)).status == 422)
            #expect(try await system.patch("/patients/\(dupId)", ["version": 2, "name": "x"]).status == 409)
            // Two records with different resident numbers are not merged.
            let x = try await Self.newPatient(
                system, ["name": "갑", "birthDate": "1970-01-01", "sex": "M", "residentNumber": "700101-1111111"])
            let y = try await Self.newPatient(
                system, ["name": "갑", "birthDate": "1970-01-01", "sex": "M", "residentNumber": "700101-1222222", "confirmDistinct": true])
            let refused = try await system.post(
                "/patients/\(x["id"] as! String)/merge", ["into": y["id"] as! String], as: .role(.admin))
            #expect(refused.status == 409, "\(refused.text)")
            #expect(try await system.get("/patients/\(x["id"] as! String)").json["mergedInto"] is NSNull)
            // Search leaves the merged record out.
            let found = try await system.post("/patients/search", ["name": "홍길동"])
            #expect((found.json["items"] as? [[String: Any]])?.count == 1)
            #expect(try await system.strings(.reception, "SELECT payload FROM outbox WHERE payload LIKE '%PatientMerged%'").count == 1)
            let entry = try await eventually("the merge's audit entry") {
                let all = try await system.auditEntries(of: .reception, chartNumber: dup["chartNumber"] as! String)
                return all.first { $0["action"] as? String == "POST /patients/:id/merge" }
            }
            #expect((entry["patientId"] as? String)?.contains(keep["chartNumber"] as! String) == true)
        }
    }

    @Test("A merge racing visit registrations loses none: each visit lands on the survivor or is refused")
    func mergeRace() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let keep = try #require(try await Self.newPatient(system, Self.hong)["id"] as? String)
            let dup = try #require(
                try await Self.newPatient(
                    system, ["name": "홍길동", "birthDate": "1985-03-15", "sex": "M", "confirmDistinct": true])["id"]
                    as? String)
            let results = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for n in 0..<16 {
                    group.addTask {
                        if n == 6 {
                            let merged = try await system.post("/patients/\(dup)/merge", ["into": keep], as: .role(.admin))
                            return (merged.status == 200 ? -1 : merged.status, nil)
                        }
                        let visit = try await system.post("/receptions", ["patientId": dup, "department": "내과"])
                        return (visit.status, visit.json["id"] as? String)
                    }
                }
                return try await group.reduce(into: [(Int, String?)]()) { $0.append($1) }
            }
            #expect(results.contains { $0.0 == -1 }, "the merge should succeed: \(results)")
            let accepted = results.filter { $0.0 == 201 }.count
            #expect(results.allSatisfy { [-1, 201, 422].contains($0.0) }, "\(results)")
            // Every accepted visit is the survivor's now.
            #expect(try await system.count("receptions", in: .reception) == accepted)
            let visits = try await system.post("/receptions/search?limit=50", ["patientId": keep])
            #expect((visits.json["items"] as? [[String: Any]])?.count == accepted)
        }
    }
}

/// The Luhn check of an issued chart number, written again here so the test does not trust the code it checks.
enum ChartNumberCheck {
    static func valid(_ number: String) -> Bool {
        let digits = number.compactMap(\.wholeNumberValue)
        var sum = 0
        for (i, d) in digits.reversed().enumerated() {
            if i % 2 == 1 {
                let doubled = d * 2
                sum += doubled > 9 ? doubled - 9 : doubled
            } else {
                sum += d
            }
        }
        return sum % 10 == 0
    }
}
