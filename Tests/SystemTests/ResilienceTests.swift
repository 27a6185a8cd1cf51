import Contracts
import Foundation
import Logging
import Messaging
import MessagingLocal
import NIOPosix
import Runtime
import SQLKit
import SQLiteNIO
import Synchronization
import TestSupport
import Testing

/// The seed's non-functional promises on the embedded default: fault isolation, exactly-once
/// effects under redelivery, and a read model that can be rebuilt from the history.
@Suite("Resilience")
struct ResilienceTests {
    @Test("Registrations are accepted while diagnosis is down; it creates every diagnosis once when it starts")
    func diagnosisDown() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withTestSystem([.gateway, .reception, .patientManagement], dataDirectory: directory) { desk in
            var receptionIds: [String] = []
            for i in 0..<10 { receptionIds.append(try await desk.register("환자\(i)")) }
            for id in receptionIds {
                try await desk.waitFor("/patientManagements/\(id)", "status", "RECEIVED")
            }
            let down = try await desk.get("/diagnoses")
            #expect(down.status == 503)
            #expect(down.json["type"] as? String == "/problems/service-unavailable")

            try await withTestSystem([.diagnosis], dataDirectory: directory) { doctor in
                let diagnoses = try await eventually("10 diagnoses") {
                    let items = try await doctor.items("/diagnoses?limit=200", via: .diagnosis)
                    return items.count >= 10 ? items : nil
                }
                #expect(diagnoses.count == 10)
                #expect(Set(diagnoses.compactMap { $0["receptionId"] as? String }) == Set(receptionIds))
            }
        }
    }

    @Test("Exam orders are accepted while examination is down; it creates every exam once when it starts")
    func examinationDown() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withTestSystem([.gateway, .reception, .diagnosis, .patientManagement], dataDirectory: directory) {
            clinic in
            var orderIds: Set<String> = []
            for i in 0..<4 {
                let receptionId = try await clinic.register("환자\(i)")
                let diagnosisId = try await clinic.diagnosis(of: receptionId)
                let prescribed = try await clinic.post(
                    "/diagnoses/\(diagnosisId)/prescriptions",
                    ["examinations": [["code": "CBC", "name": "혈액검사"], ["code": "UA", "name": "소변검사"]]])
                #expect(prescribed.status == 200)
                for order in prescribed.json["orders"] as? [[String: Any]] ?? [] {
                    orderIds.insert(order["orderId"] as! String)
                }
                try await clinic.waitFor("/patientManagements/\(receptionId)", "status", "EXAM_ORDERED")
            }
            #expect(try await clinic.get("/examinations").status == 503)

            try await withTestSystem([.examination], dataDirectory: directory) { lab in
                let exams = try await eventually("8 exams") {
                    let items = try await lab.items("/examinations?limit=200", via: .examination)
                    return items.count >= 8 ? items : nil
                }
                #expect(exams.count == 8)
                #expect(Set(exams.compactMap { $0["orderId"] as? String }) == orderIds)
            }
        }
    }

    @Test("Delivering every event a second time leaves every service and the read model unchanged")
    func redelivery() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let before = try await withTestSystem(dataDirectory: directory) { system in
            try await Scenarios.mixedDay(system)
            return try await Snapshot.take(system)
        }
        let events = try await TestSystem.count(
            "messages", in: directory.appendingPathComponent("events.sqlite"), where: "topic = '\(Topics.visitEvents)'")

        // Rewind every consumer to the beginning of the log: everything arrives again.
        var rewound = 0
        try await TestSystem.withServiceDatabases(dataDirectory: directory) { _, db in
            rewound += try await db.raw("UPDATE consumer_positions SET next_offset = 0 RETURNING consumer").all().count
        }
        #expect(rewound == 4)

        let after = try await withTestSystem(dataDirectory: directory) { system in
            _ = try await eventually("every group caught up again") {
                try await Snapshot.allGroupsCaughtUp(system) ? true : nil
            }
            return try await Snapshot.take(system)
        }
        #expect(after == before)
        // Duplicates produced no new events.
        #expect(try await TestSystem.count(
            "messages", in: directory.appendingPathComponent("events.sqlite"), where: "topic = '\(Topics.visitEvents)'") == events)
    }

    @Test("The read model rebuilt from the event history equals the incrementally built one")
    func rebuild() async throws {
        try await withTestSystem { system in
            try await Scenarios.mixedDay(system)
            let incremental = try await system.items("/patientManagements?limit=200")

            // Damage it, then rebuild through the admin endpoint.
            let board = try #require(system.system.database(of: .patientManagement))
            try await board.raw("DELETE FROM patient_managements WHERE status = 'COMPLETED'").run()
            try await board.raw("UPDATE patient_managements SET status = 'RECEIVED'").run()
            #expect(try await system.items("/patientManagements?limit=200").count < incremental.count)

            let report = try await system.post("/admin/patientManagements/rebuild", via: .patientManagement)
            #expect(report.status == 200)
            #expect(report.json["visits"] as? Int == incremental.count)
            let rebuilt = try await system.items("/patientManagements?limit=200")
            #expect(Snapshot.canonical(rebuilt) == Snapshot.canonical(incremental))
        }
    }
}

@Suite("Restores")
struct RestoreTests {
    /// The doctor's worklist as (reception id, diagnosis id) pairs, once it has `count` entries.
    func worklist(_ system: TestSystem, count: Int) async throws -> Set<[String]> {
        let items = try await eventually("\(count) diagnoses", timeout: .seconds(30)) {
            let items = try await system.items("/diagnoses?limit=200", via: .diagnosis)
            return items.count >= count ? items : nil
        }
        #expect(items.count == count, "a visit has two diagnoses")
        return Set(items.map { [$0["receptionId"] as? String ?? "", $0["id"] as? String ?? ""] })
    }

    @Test(
        "A service database restored from a backup, or deleted, catches up from its own position: nothing lost, nothing twice",
        .enabled(if: !TestSystem.onPostgres, "restores an SQLite file"))
    func restoreFromBackup() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("diagnosis.sqlite")
        let backup = directory.appendingPathComponent("diagnosis-backup.sqlite")
        func removeDatabase() throws {
            for suffix in ["", "-wal", "-shm"] {
                try? FileManager.default.removeItem(atPath: file.path + suffix)
            }
        }

        let before = try await withTestSystem(dataDirectory: directory) { system in
            for i in 0..<20 { _ = try await system.register("백업 전 \(i)") }
            _ = try await worklist(system, count: 20)
            // An online backup, as an operator takes one (sqlite3 .backup / VACUUM INTO).
            let connection = try await SQLiteConnection.open(storage: .file(path: file.path))
            _ = try await connection.query("VACUUM INTO '\(backup.path)'", [])
            try await connection.close()
            for i in 0..<30 { _ = try await system.register("백업 후 \(i)") }
            return try await worklist(system, count: 50)
        }
        #expect(try await TestSystem.count("diagnoses", in: backup) == 20)

        // Restore the backup: the 30 visits registered since are opened again, under the same ids.
        try removeDatabase()
        try FileManager.default.moveItem(at: backup, to: file)
        try await withTestSystem(dataDirectory: directory) { system in
            #expect(try await worklist(system, count: 50) == before)
            // Deleted while it runs: on the next start it rebuilds every diagnosis from the log.
            try removeDatabase()
        }
        try await withTestSystem(dataDirectory: directory) { system in
            let rebuilt = try await worklist(system, count: 50)
            #expect(rebuilt == before)
        }
    }
}

@Suite("Rebuild under load")
struct RebuildUnderLoadTests {
    @Test("Rebuilding while visits keep arriving loses none of them")
    func rebuildWhileRegistering() async throws {
        try await withTestSystem { system in
            let finished = Mutex(false)
            let registering = Task {
                defer { finished.withLock { $0 = true } }
                // Four desks registering at once keep the consumer busy during every rebuild.
                return try await withThrowingTaskGroup(of: [String].self) { group in
                    for desk in 0..<4 {
                        group.addTask {
                            var ids: [String] = []
                            for i in 0..<15 { ids.append(try await system.register("환자\(desk)-\(i)")) }
                            return ids
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0 += $1 }
                }
            }
            var rebuilds = 0
            while !finished.withLock({ $0 }) || rebuilds < 3 {
                let report = try await system.post("/admin/patientManagements/rebuild", via: .patientManagement)
                #expect(report.status == 200)
                rebuilds += 1
            }
            let ids = try await registering.value
            try await eventually("the log drained") {
                try await Snapshot.allGroupsCaughtUp(system) ? true : nil
            }
            let board = try await system.items("/patientManagements?limit=200")
            #expect(Set(board.compactMap { $0["receptionId"] as? String }) == Set(ids))

            // And a rebuild now, at rest, changes nothing.
            _ = try await system.post("/admin/patientManagements/rebuild", via: .patientManagement)
            #expect(
                Snapshot.canonical(try await system.items("/patientManagements?limit=200")) == Snapshot.canonical(board)
            )
        }
    }
}

/// A day at the clinic with visits in every outcome.
enum Scenarios {
    static func mixedDay(_ system: TestSystem) async throws {
        // completed after two exams
        let a = try await system.register("가")
        let da = try await system.diagnosis(of: a)
        _ = try await system.post(
            "/diagnoses/\(da)/prescriptions",
            ["examinations": [["code": "CBC", "name": "혈액검사"], ["code": "CT", "name": "CT"]]])
        let examsA = try await eventually("exams of a") {
            let items = try await system.items("/examinations?diagnosisId=\(da)")
            return items.count == 2 ? items : nil
        }
        _ = try await system.post("/examinations/\(examsA[0]["id"]!)/perform", ["result": "정상"])
        _ = try await system.post("/examinations/\(examsA[1]["id"]!)/cancel", ["reason": "장비 점검"])
        try await system.waitFor("/diagnoses/\(da)", "status", "EXAM_DONE")
        _ = try await system.post("/diagnoses/\(da)/complete", ["note": "귀가"])
        // rejected with an exam pending
        let b = try await system.register("나")
        let db = try await system.diagnosis(of: b)
        _ = try await system.post("/diagnoses/\(db)/prescriptions", ["examinations": [["code": "MRI", "name": "MRI"]]])
        _ = try await eventually("exam of b") { try await system.items("/examinations?diagnosisId=\(db)").first }
        _ = try await system.post("/diagnoses/\(db)/reject", ["reason": "전원"])
        // canceled by the desk
        let c = try await system.register("다")
        _ = try await system.diagnosis(of: c)
        _ = try await system.post("/receptions/\(c)/cancel", ["reason": "환자 요청"])
        // still waiting, and waiting for an exam
        let d = try await system.register("라")
        let dd = try await system.diagnosis(of: d)
        _ = try await system.post("/diagnoses/\(dd)/prescriptions", ["examinations": [["code": "XR", "name": "X선"]]])
        _ = try await system.register("마")

        try await system.waitFor("/patientManagements/\(a)", "status", "COMPLETED")
        try await system.waitFor("/patientManagements/\(b)", "status", "REJECTED")
        try await system.waitFor("/patientManagements/\(c)", "status", "CANCELED")
        try await system.waitFor("/receptions/\(b)", "status", "CANCELED")
        _ = try await eventually("exam of d") { try await system.items("/examinations?diagnosisId=\(dd)").first }
        try await system.waitFor("/patientManagements/\(d)", "status", "EXAM_ORDERED")
        _ = try await eventually("b's exam canceled") {
            try await system.items("/examinations?diagnosisId=\(db)&status=CANCELED").first
        }
        try await eventually("the log drained") {
            try await Snapshot.allGroupsCaughtUp(system) ? true : nil
        }
    }
}

/// Everything the services answer, comparable.
struct Snapshot: Equatable {
    var receptions: [String]
    var diagnoses: [String]
    var examinations: [String]
    var board: [String]

    static func take(_ system: TestSystem) async throws -> Snapshot {
        Snapshot(
            receptions: canonical(try await system.items("/receptions?limit=200", via: .reception)),
            diagnoses: canonical(try await system.items("/diagnoses?limit=200", via: .diagnosis)),
            examinations: canonical(try await system.items("/examinations?limit=200", via: .examination)),
            board: canonical(try await system.items("/patientManagements?limit=200", via: .patientManagement)))
    }

    static func canonical(_ items: [[String: Any]]) -> [String] {
        items.map {
            String(decoding: try! JSONSerialization.data(withJSONObject: $0, options: .sortedKeys), as: UTF8.self)
        }
        .sorted()
    }

    /// True when every consumer has applied the whole log and every outbox is relayed.
    static func allGroupsCaughtUp(_ system: TestSystem) async throws -> Bool {
        let head = try await system.eventCount()
        for service in [ServiceName.reception, .diagnosis, .examination, .patientManagement] {
            if try await system.count("consumer_positions", in: service, where: "next_offset > \(head)") != 1 {
                return false
            }
        }
        for service in [ServiceName.reception, .diagnosis, .examination] {
            if try await system.count("outbox", in: service, where: "published_at IS NULL") > 0 { return false }
        }
        // An event published after the head was read passed both checks: the log must not
        // have grown meanwhile.
        return try await system.eventCount() == head
    }
}

@Suite("Dead letters")
struct DeadLetterTests {
    @Test("A poison message lands in every consumer's dead-letter store; the visits behind it complete")
    func poisonMessage() async throws {
        try await withTestSystem { system in
            // An undecodable payload in the middle of the log, as a broken producer would write it.
            let log = try await LocalEventLog.open(directory: system.dataDirectory, logger: Logger(label: "test"))
            try await log.publish([
                OutgoingMessage(topic: Topics.visitEvents, key: "garbage", value: Data("{\"type\":".utf8))
            ])
            await log.close()

            let receptionId = try await system.register()
            let diagnosisId = try await system.diagnosis(of: receptionId)
            _ = try await system.post("/diagnoses/\(diagnosisId)/complete", ["note": "완료"])
            try await system.waitFor("/patientManagements/\(receptionId)", "status", "COMPLETED")
            try await system.waitFor("/receptions/\(receptionId)", "status", "COMPLETED")

            for service in [ServiceName.reception, .diagnosis, .examination, .patientManagement] {
                let letters = try await eventually("\(service.rawValue)'s dead letter") {
                    let response = try await system.get("/admin/dead-letters", via: service)
                    let items = (try? JSONSerialization.jsonObject(with: response.body)) as? [[String: Any]] ?? []
                    return items.isEmpty ? nil : items
                }
                #expect(letters.count == 1)
                #expect(letters.first?["key"] as? String == "garbage")
                #expect((letters.first?["error"] as? String)?.contains("undecodable") == true)
                #expect(letters.first?["payload"] as? String == Data("{\"type\":".utf8).base64EncodedString())

                // It cannot be replayed while it stays undecodable, and says so.
                let replay = try await system.post("/admin/dead-letters/\(letters.first!["id"]!)/replay", via: service)
                #expect(replay.status == 409)
                #expect(replay.json["currentState"] as? String == "UNDECODABLE")
            }
            // The gateway does not expose administration.
            #expect(try await system.get("/admin/dead-letters").status == 404)
        }
    }

    @Test(
        "A write waiting for a lock another connection keeps gives up after the bounded wait instead of hanging; reads go on; writes resume once the lock is gone",
        .enabled(if: !TestSystem.onPostgres, "holds an SQLite file's write lock from another connection"))
    func lockKeptElsewhere() async throws {
        try await withTestSystem([.gateway, .reception]) { system in
            let first = try await system.register("먼저")
            // Another connection (a tool, a test, another process) takes reception's write lock
            // and keeps it, on a thread of its own.
            let threads = NIOThreadPool(numberOfThreads: 1)
            threads.start()
            let holder = try await SQLiteConnection.open(
                storage: .file(path: system.dataDirectory.appendingPathComponent("reception.sqlite").path),
                threadPool: threads, logger: Logger(label: "test"), on: MultiThreadedEventLoopGroup.singleton.any())
            _ = try await holder.query("BEGIN IMMEDIATE", [])
            let started = ContinuousClock.now
            // SQLiteNIO's own busy handler would wait for ever (the request never answered).
            let refused = try await system.post(
                "/receptions", ["patientName": "기다림", "department": "내과", "symptom": "기침"])
            let waited = ContinuousClock.now - started
            #expect(refused.status == 503, "\(refused.text)")
            #expect(refused.headers.first(name: "Retry-After") == "1")
            #expect(waited >= .seconds(4) && waited < .seconds(20), "\(waited)")
            // Reads never wait for the writer (WAL).
            #expect(try await system.get("/receptions/\(first)").status == 200)
            _ = try await holder.query("ROLLBACK", [])
            try await holder.close()
            try await threads.shutdownGracefully()
            // Nothing of the refused one was kept; the next is accepted.
            let next = try await system.register("나중")
            let names = try await system.items("/receptions?limit=10").compactMap { $0["patientName"] as? String }
            #expect(Set(names) == ["먼저", "나중"], "\(names) \(next)")
        }
    }

    @Test("A consumer that can neither handle nor dead-letter a message makes its service unready, and recovers")
    func deadLetterStoreBroken() async throws {
        try await withTestSystem { system in
            let database = try #require(system.system.database(of: .diagnosis) as? any SQLDatabase)
            try await database.raw("ALTER TABLE dead_letters RENAME TO dead_letters_away").run()
            let log = try await LocalEventLog.open(directory: system.dataDirectory, logger: Logger(label: "test"))
            try await log.publish([
                OutgoingMessage(topic: Topics.visitEvents, key: "garbage", value: Data("{\"type\":".utf8))
            ])
            await log.close()

            let unready = try await eventually("diagnosis unready") {
                let response = try await system.get("/health/ready", via: .diagnosis)
                return response.status == 503 ? response : nil
            }
            #expect(unready.text.contains("stuck"), "\(unready.text)")
            // Nothing was claimed: no letter, and the position is still before the message.
            #expect(try await system.count("dead_letters_away", in: .diagnosis) == 0)
            #expect(try await system.get("/health/ready", via: .reception).status == 200)

            try await database.raw("ALTER TABLE dead_letters_away RENAME TO dead_letters").run()
            try await eventually("diagnosis ready again") {
                try await system.get("/health/ready", via: .diagnosis).status == 200 ? true : nil
            }
            #expect(try await system.count("dead_letters", in: .diagnosis) == 1)
        }
    }
}
