import Foundation
import Runtime
import Testing

/// Rolling upgrades: an old build meets what a newer one wrote.
@Suite("Upgrades")
struct UpgradeTests {
    @Test("A row in a state this build does not know is refused with a clear 409, and the service keeps serving")
    func unknownState() async throws {
        try await withTestSystem { system in
            let created = try await system.post("/receptions", ["patientName": "미래환자"])
            let id = try #require(created.json["id"] as? String)
            let other = try await system.post("/receptions", ["patientName": "오늘환자"])
            #expect(other.status == 201)
            // A newer version's state, written straight into reception's database.
            let database = try #require(system.system.database(of: .reception))
            try await database.raw("UPDATE receptions SET status = 'TRIAGED' WHERE id = \(bind: UUID(uuidString: id)!)")
                .run()

            let read = try await system.get("/receptions/\(id)")
            #expect(read.status == 409)
            #expect(read.json["type"] as? String == "/problems/unknown-state")
            #expect(read.json["currentState"] as? String == "TRIAGED")
            #expect((read.json["detail"] as? String)?.contains("newer version") == true)
            let cancel = try await system.post("/receptions/\(id)/cancel", ["reason": "환자 요청"])
            #expect(cancel.status == 409)
            // The process is alive and everything else answers.
            let fine = try await system.get("/receptions/\(try #require(other.json["id"] as? String))")
            #expect(fine.status == 200)
            #expect(try await system.post("/receptions", ["patientName": "다음환자"]).status == 201)
        }
    }
}
