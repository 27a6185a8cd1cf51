import Foundation
import Runtime
import TestSupport
import Testing

/// Rooms an administrator changes while the clinic runs (`PUT /admin/clinic`): validated as the
/// settings file is, versioned so two administrators cannot overwrite each other, and in use at
/// once by the services and screens of the process.
@Suite("The clinic layout, changed by an administrator")
struct ClinicLayoutTests {
    @Test(
        "An administrator adds a room: a doctor calls to it at once; a stale version is 409, a layout that breaks a rule 422 naming it, anyone else 403"
    )
    func adminChangesRooms() async throws {
        try await withTestSystem([.gateway, .reception, .diagnosis, .examination]) { system in
            let gateway = system.url(.gateway)
            func put(_ json: [String: Any], as auth: TestAuth = .role(.admin)) async throws -> HTTPResult {
                try await HTTPResult.send(
                    .PUT, gateway, "/admin/clinic", body: try JSONSerialization.data(withJSONObject: json), as: auth)
            }
            let initial = try await system.get("/admin/clinic", as: .role(.admin))
            #expect(initial.status == 200, "\(initial.text)")
            #expect(initial.json["version"] as? Int == 0)
            var layout = try #require(initial.json["layout"] as? [String: Any])
            var departments = try #require(layout["departments"] as? [[String: Any]])
            let naegwa = try #require(departments.firstIndex { $0["name"] as? String == "내과" })
            #expect(departments[naegwa]["rooms"] as? [String] == ["진료실 1", "진료실 2"])

            let id = try await system.diagnosis(of: try await system.register("새방환자", department: "내과"))
            let before = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 8"], as: .role(.doctor))
            #expect(before.status == 422, "\(before.text)")

            departments[naegwa]["rooms"] = ["진료실 1", "진료실 2", "진료실 8"]
            layout["departments"] = departments
            let saved = try await put(["version": 0, "layout": layout])
            #expect(saved.status == 200, "\(saved.text)")
            #expect(saved.json["version"] as? Int == 1)
            #expect(saved.json["changedBy"] as? String != nil)

            // In use at once: the call, the department's rooms, the public copy other processes read.
            let called = try await system.post("/diagnoses/\(id)/call", ["room": "진료실 8"], as: .role(.doctor))
            #expect(called.status == 200, "\(called.text)")
            let queue = try await system.get("/diagnoses/queue?department=%EB%82%B4%EA%B3%BC", as: .role(.doctor))
            #expect(queue.json["rooms"] as? [String] == ["진료실 1", "진료실 2", "진료실 8"])
            let published = try await HTTPResult.send(.GET, gateway, "/clinic/layout", as: .none)
            #expect(published.status == 200)
            #expect(published.json["version"] as? Int == 1)

            // Made to an older version: refused, nothing overwritten.
            let stale = try await put(["version": 0, "layout": layout])
            #expect(stale.status == 409, "\(stale.text)")
            // A rule broken: refused with the rule, nothing changed.
            departments[naegwa]["rooms"] = ["진료실 1", "진료실 3"]
            layout["departments"] = departments
            let broken = try await put(["version": 1, "layout": layout])
            #expect(broken.status == 422, "\(broken.text)")
            let problems = (broken.json["errors"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(problems.contains { $0.contains("진료실 3") && $0.contains("listed twice") }, "\(broken.text)")
            #expect(try await put(["version": 1]).status == 422)
            #expect(try await put(["version": 1, "layout": layout], as: .role(.doctor)).status == 403)
            let after = try await system.get("/admin/clinic", as: .role(.admin))
            #expect(after.json["version"] as? Int == 1)
            #expect(
                ((after.json["layout"] as? [String: Any])?["departments"] as? [[String: Any]])?
                    .first { $0["name"] as? String == "내과" }?["rooms"] as? [String] == ["진료실 1", "진료실 2", "진료실 8"])
        }
    }
}
