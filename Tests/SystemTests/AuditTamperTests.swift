@testable import Audit
import FluentKit
import FluentPostgresDriver
import FluentSQLiteDriver
import Foundation
import Identity
import Logging
import NIOPosix
import Runtime
import SQLKit
import Storage
import Synchronization
import Messaging
@testable import ServiceKit
import TestSupport
import Testing

/// The audit trail against someone who holds its database (and, worse, the audit key too): each
/// rewrite the security review did by hand, on a copy of the trail, must fail `hospital audit
/// verify`. On SQLite (a copy of the data directory) and on PostgreSQL (the service's database,
/// put back between attacks).
@Suite("Audit trail tampering")
struct AuditTamperTests {
    /// One registration and reads by two users: `entries` entries in reception's trail.
    static let entries = 12

    @Test("Edit + re-hash, delete the newest, delete the oldest + rewrite, remove a user + renumber: each is caught")
    func everyRewriteIsCaught() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withTestSystem(dataDirectory: directory) { system in
            let visit = try await system.register()
            // kim.desk reads it 8 times, lee.doctor 3 times in between.
            for i in 0..<8 {
                for (user, role) in [("kim.desk", Role.desk), ("lee.doctor", .doctor)] where role == .desk || i % 3 == 1 {
                    let token = try await TestKeys.token(role, username: user)
                    let read = try await HTTPResult.send(
                        .GET, system.url(.reception), "/receptions/\(visit)",
                        headers: [("authorization", "Bearer \(token)")])
                    try #require(read.status == 200)
                }
            }
            _ = try await eventually("every entry written") {
                try await TrailUnderAttack.count(system) == Self.entries ? true : nil
            }
        }
        // The system stopped: its last checkpoint saw every entry.
        let clean = try await TrailUnderAttack.verify(directory)
        #expect(clean.status == 0, "\(clean.output)")
        #expect(clean.output.contains("reception: ok, \(Self.entries) entries; matches its checkpoint"), "\(clean.output)")

        let attacks: [(String, String, @Sendable (TrailUnderAttack) async throws -> Void)] = [
            (
                "edit + re-hash without the key", "the trail was rewritten",
                { trail in
                    try await trail.update(seq: 4, user: "nobody")
                    try await trail.reseal(from: 4, key: nil)
                }
            ),
            (
                "edit + re-hash without the key, and no checkpoint to hold it against",
                "reception: BROKEN at entry 4: an unkeyed entry after keyed ones",
                { trail in
                    try await trail.update(seq: 4, user: "nobody")
                    try await trail.reseal(from: 4, key: nil)
                    try await trail.withoutCheckpoints()
                }
            ),
            (
                "edit + re-hash with the key", "the trail was rewritten",
                { trail in
                    try await trail.update(seq: 4, user: "nobody")
                    try await trail.reseal(from: 4, key: trail.key)
                }
            ),
            (
                "delete the newest 3", "entries were removed from its end",
                { trail in try await trail.delete("seq > \(Self.entries - 3)") }
            ),
            (
                "delete the oldest 2 and rewrite the new oldest", "reception: BROKEN at entry 1",
                { trail in
                    try await trail.delete("seq <= 2")
                    try await trail.update(seq: 3, user: "nobody")
                    try await trail.reseal(from: 3, key: trail.key, anchor: AuditTrail.genesis)
                }
            ),
            (
                "delete the oldest 2 and unkey the new oldest (the database only)",
                "reception: BROKEN at entry 4: the entries before it were removed or unkeyed",
                { trail in
                    try await trail.delete("seq <= 2")
                    try await trail.db.raw("UPDATE audit_log SET key_id = NULL WHERE seq = 3").run()
                }
            ),
            (
                "remove one user's entries, renumber and re-hash with the key", "reception: BROKEN",
                { trail in
                    try await trail.delete("user_name = 'lee.doctor'")
                    try await trail.renumber()
                    try await trail.reseal(from: 1, key: trail.key)
                }
            ),
        ]
        for (attack, expected, tamper) in attacks {
            let result = try await TrailUnderAttack.attack(directory, tamper)
            #expect(result.status == 1, "\(attack): \(result.output)")
            #expect(result.output.contains(expected), "\(attack): \(result.output)")
            #expect(result.output.contains("diagnosis: ok"), "\(attack): \(result.output)")
        }
        // Put back, it checks out again (each attack had a copy, or was undone).
        #expect(try await TrailUnderAttack.verify(directory).status == 0)
    }

    @Test("The database refuses UPDATE and DELETE (TRUNCATE on PostgreSQL); a sweep only retention could have made passes, and the chain goes on after it; one made with the key of entries a checkpoint saw lately does not")
    func guardsAndRetention() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withTestSystem(dataDirectory: directory) { system in
            _ = try await system.register()
            _ = try await eventually("the registration's entry") {
                try await TrailUnderAttack.count(system) == 1 ? true : nil
            }
        }
        try await TrailUnderAttack.withTrail(directory) { trail in
            await #expect(throws: (any Error).self) { try await trail.db.raw("DELETE FROM audit_log").run() }
            await #expect(throws: (any Error).self) {
                try await trail.db.raw("UPDATE audit_log SET user_name = 'nobody'").run()
            }
            if TestSystem.onPostgres {
                await #expect(throws: (any Error).self) { try await trail.db.raw("TRUNCATE audit_log").run() }
            }
            // Someone with the key sweeps everything, entries a checkpoint saw minutes ago; new
            // entries chain on after the sweep.
            let audit = trail.auditTrail()
            try await audit.sweep(before: Date().addingTimeInterval(1))
            #expect(try await trail.count() == 0)
            audit.record(user: "kim.desk", role: "desk", action: "GET /receptions", outcome: 200, client: "127.0.0.1")
            try await audit.flush()
            let rows = try await trail.db.raw("SELECT seq FROM audit_log").all()
            #expect(try rows.map { try $0.decode(column: "seq", as: Int.self) } == [2])
            // A sweep does not let anyone delete what it did not cover.
            await #expect(throws: (any Error).self) { try await trail.db.raw("DELETE FROM audit_log").run() }
        }
        let swept = try await TrailUnderAttack.verify(directory)
        #expect(swept.status == 1, "\(swept.output)")
        #expect(swept.output.contains("retention keeps them 730 days at least"), "\(swept.output)")
        // A sweep someone added without the key does not excuse a missing beginning.
        try await TrailUnderAttack.withTrail(directory) { trail in
            try await trail.disableGuards()
            try await trail.db.raw(
                "INSERT INTO audit_sweeps (through_seq, through_hash, at, key_id, mac) VALUES (5, 'x', 0, 'k', 'forged')"
            ).run()
        }
        let forged = try await TrailUnderAttack.verify(directory)
        #expect(forged.status == 1 && forged.output.contains("not sealed by the audit key"), "\(forged.output)")
    }

    @Test(
        "Retention as it runs: entries and their checkpoint 800 days old are swept; the trail checks out and goes on",
        .enabled(if: !TestSystem.onPostgres, "runs the trail on an SQLite file of its own"))
    func retentionSweepChecksOut() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
        databases.use(.sqlite(.file(directory.appendingPathComponent("audit.sqlite").path), sqlLogLevel: nil), as: .sqlite)
        defer { Task { await databases.shutdownAsync() } }
        let db = databases.database(logger: Logger(label: "test"), on: MultiThreadedEventLoopGroup.singleton.any())!
        try await AuditTrail.Migration(engine: .sqlite).prepare(on: db)
        try await AuditTrail.KeyedMigration(engine: .sqlite).prepare(on: db)
        let keys = AuditKeys(current: try AuditKey(AuditKey.random()))
        let published = PublishedMessages()
        let trail = AuditTrail(service: "reception", engine: .sqlite, keys: keys, checkpoints: published, logger: Logger(label: "test")) {
            db
        }
        let now = Date()
        let then = now.addingTimeInterval(-800 * 86_400)
        for minute in 0..<3 {
            trail.record(
                user: "kim.desk", role: "desk", action: "GET /receptions", outcome: 200, client: "127.0.0.1",
                at: then.addingTimeInterval(Double(minute) * 60))
        }
        try await trail.flush()
        await trail.publishCheckpoint(now: then.addingTimeInterval(300))
        trail.record(user: "kim.desk", role: "desk", action: "GET /receptions", outcome: 200, client: "127.0.0.1")
        try await trail.flush()
        await trail.publishCheckpoint(now: now)
        try await trail.sweep(before: now.addingTimeInterval(-730 * 86_400), now: now)
        let sql = db as! any SQLDatabase
        #expect(try await sql.raw("SELECT seq FROM audit_log").all().map { try $0.decode(column: "seq", as: Int.self) } == [4])
        let checkpoints = AuditTrail.checkpoints(from: published.messages)
        #expect(checkpoints.map(\.seq) == [3, 4])
        let result = try await AuditTrail.verify(sql, service: "reception", keys: keys, checkpoints: checkpoints)
        #expect(result.broken == nil && result.checked == 1 && result.checkpoint?.seq == 4, "\(result)")
    }
}

/// What a trail published: its checkpoints, in order.
final class PublishedMessages: EventPublisher, Sendable {
    private let published = Mutex<[IncomingMessage]>([])

    var messages: [IncomingMessage] { published.withLock { $0 } }

    func publish(_ messages: [OutgoingMessage]) async throws {
        published.withLock { list in
            for message in messages {
                list.append(
                    IncomingMessage(
                        topic: message.topic, partition: 0, offset: Int64(list.count), key: message.key,
                        value: message.value))
            }
        }
    }
}

/// Reception's audit trail opened as an attacker with the files (or the database) would.
struct TrailUnderAttack: Sendable {
    let directory: URL
    let db: any SQLDatabase
    let key: AuditKey
    let postgres: Bool

    static func count(_ system: TestSystem) async throws -> Int {
        if TestSystem.onPostgres {
            let db = try #require(system.system.database(of: .reception))
            return try await db.raw("SELECT COUNT(*) AS n FROM audit_log").first()?.decode(column: "n", as: Int.self)
                ?? -1
        }
        return try await TestSystem.count(
            "audit_log", in: system.dataDirectory.appendingPathComponent("audit-reception.sqlite"))
    }

    /// `hospital audit verify` on the data directory (and reception's PostgreSQL database).
    static func verify(_ directory: URL) async throws -> (status: Int32, output: String) {
        let arguments = ["audit", "verify", "--data-dir", directory.path]
        if TestSystem.onPostgres {
            let config = try await TestSystem.configuration(dataDirectory: directory)
            // Each service's database, one at a time: reception's is the one attacked.
            var output = ""
            var status: Int32 = 0
            for service in ["reception", "diagnosis"] {
                let url = try #require(config.serviceDatabaseURLs[ServiceName(rawValue: service)!])
                let result = try run(arguments + ["--database", url.absoluteString, "--service", service])
                output += result.output
                status = max(status, result.status)
            }
            return (status, output)
        }
        return try run(arguments)
    }

    private static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = ChildProcess()
        process.executableURL = HospitalProcess.executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try HospitalProcess.launch(process)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// Tampers with a copy of the trail (SQLite: the data directory copied; PostgreSQL: the table
    /// put back afterwards), verifies the result, and leaves the original as it was.
    static func attack(
        _ directory: URL, _ tamper: @Sendable (TrailUnderAttack) async throws -> Void
    ) async throws -> (status: Int32, output: String) {
        if TestSystem.onPostgres {
            try await withTrail(directory) { trail in
                try await trail.db.raw("DROP TABLE IF EXISTS audit_copy").run()
                try await trail.db.raw("CREATE TABLE audit_copy AS SELECT * FROM audit_log").run()
                try await trail.disableGuards()
                try await tamper(trail)
            }
            let result = try await verify(directory)
            restoreCheckpoints(directory)
            try await withTrail(directory) { trail in
                try await trail.db.raw("DELETE FROM audit_log").run()
                try await trail.db.raw("INSERT INTO audit_log SELECT * FROM audit_copy").run()
                try await trail.db.raw("ALTER TABLE audit_log ENABLE TRIGGER USER").run()
                try await trail.db.raw("ALTER TABLE audit_sweeps ENABLE TRIGGER USER").run()
            }
            return result
        }
        let copy = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: copy) }
        try FileManager.default.copyItem(at: directory, to: copy)
        try await withTrail(copy) { trail in
            try await trail.disableGuards()
            try await tamper(trail)
        }
        return try await verify(copy)
    }

    /// Reception's trail in `directory` (or its PostgreSQL database), with the key of the
    /// directory: the strongest attacker, who holds both.
    static func withTrail(_ directory: URL, _ body: (TrailUnderAttack) async throws -> Void) async throws {
        let text = try String(contentsOf: directory.appendingPathComponent("audit-key"), encoding: .utf8)
        let key = try AuditKey(base64: text, name: "audit-key")
        let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
        let config = try await TestSystem.configuration(dataDirectory: directory)
        if let url = config.serviceDatabaseURLs[.reception] {
            databases.use(try .postgres(url: url, sqlLogLevel: .trace), as: .psql)
        } else {
            let file = directory.appendingPathComponent("audit-reception.sqlite").path
            databases.use(.sqlite(.file(file), sqlLogLevel: nil), as: .sqlite)
        }
        do {
            let db = databases.database(logger: Logger(label: "attacker"), on: MultiThreadedEventLoopGroup.singleton.any())!
            try await body(TrailUnderAttack(directory: directory, db: db as! any SQLDatabase, key: key, postgres: TestSystem.onPostgres))
            await databases.shutdownAsync()
        } catch {
            await databases.shutdownAsync()
            throw error
        }
    }

    /// The trail as the service writes it, on this database (for retention).
    func auditTrail() -> AuditTrail {
        let fluent = db as! any Database
        return AuditTrail(
            service: "reception", engine: postgres ? .postgresql : .sqlite, keys: AuditKeys(current: key),
            checkpoints: nil, logger: Logger(label: "test")
        ) { fluent }
    }

    func disableGuards() async throws {
        if postgres {
            try await db.raw("ALTER TABLE audit_log DISABLE TRIGGER USER").run()
            try await db.raw("ALTER TABLE audit_sweeps DISABLE TRIGGER USER").run()
        } else {
            for trigger in ["audit_log_no_update", "audit_log_no_delete", "audit_sweeps_no_update", "audit_sweeps_no_delete"] {
                try await db.raw("DROP TRIGGER IF EXISTS \(unsafeRaw: trigger)").run()
            }
        }
    }

    /// Moves the event log (and with it the published checkpoints) out of the directory; it comes
    /// back with `restoreCheckpoints` (PostgreSQL attacks share the directory).
    func withoutCheckpoints() async throws {
        let log = directory.appendingPathComponent("events.sqlite")
        try FileManager.default.moveItem(at: log, to: directory.appendingPathComponent("events.sqlite.away"))
    }

    static func restoreCheckpoints(_ directory: URL) {
        let away = directory.appendingPathComponent("events.sqlite.away")
        guard FileManager.default.fileExists(atPath: away.path) else { return }
        try? FileManager.default.moveItem(at: away, to: directory.appendingPathComponent("events.sqlite"))
    }

    func count() async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM audit_log").first()?.decode(column: "n", as: Int.self) ?? -1
    }

    func update(seq: Int, user: String) async throws {
        try await db.raw("UPDATE audit_log SET user_name = \(bind: user) WHERE seq = \(bind: seq)").run()
    }

    func delete(_ condition: String) async throws {
        try await db.raw("DELETE FROM audit_log WHERE \(unsafeRaw: condition)").run()
    }

    /// Numbers the entries 1, 2, 3… again, in order.
    func renumber() async throws {
        let rows = try await db.raw("SELECT seq FROM audit_log ORDER BY seq").all()
        for (index, row) in rows.enumerated() {
            let seq = try row.decode(column: "seq", as: Int.self)
            try await db.raw("UPDATE audit_log SET seq = \(bind: index + 1) WHERE seq = \(bind: seq)").run()
        }
    }

    /// Recomputes the chain from entry `from` on, as the source code says: with the key when the
    /// attacker has it, else with the plain SHA-256 of entries written before there was a key.
    func reseal(from: Int, key: AuditKey?, anchor: String? = nil) async throws {
        var previous = anchor
        if previous == nil {
            previous =
                try await db.raw("SELECT hash FROM audit_log WHERE seq < \(bind: from) ORDER BY seq DESC LIMIT 1")
                .first()?.decode(column: "hash", as: String.self) ?? AuditTrail.genesis
        }
        let rows = try await db.raw("SELECT * FROM audit_log WHERE seq >= \(bind: from) ORDER BY seq").all()
        for row in rows {
            let entry = try AuditTrail.entry(row, service: "reception")
            let hash =
                key.map {
                    AuditEntry.seal(
                        previous: previous!, entry, key: $0, start: (try? row.decode(column: "chain_start", as: Int?.self)) == 1)
                }
                ?? AuditEntry.hash(previous: previous!, entry)
            try await db.raw(
                "UPDATE audit_log SET hash = \(bind: hash), key_id = \(bind: key?.id) WHERE seq = \(bind: entry.seq)"
            ).run()
            previous = hash
        }
    }
}
