import Crypto
import Foundation
import Logging
import PostgresNIO
import SQLiteNIO
import Synchronization
import Testing

@testable import Backup

private let logger = Logger(label: "backup-tests")

private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("hospital-backup-tests-\(UUID())")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

private func open(_ url: URL) async throws -> SQLiteConnection {
    try await SQLiteConnection.open(storage: .file(path: url.path), logger: logger)
}

private func integer(_ sql: String, _ connection: SQLiteConnection) async throws -> Int {
    Int(try await connection.query(sql, []).first?.columns.first?.data.integer ?? -1)
}

@Suite("Backup: consistent copies")
struct SQLiteSnapshotTests {
    @Test("Copies of eight databases are of one moment, while a writer keeps going from one to the next")
    func oneMoment() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let files = (0..<8).map { directory.appendingPathComponent("db\($0).sqlite") }
        var writers: [SQLiteConnection] = []
        for file in files {
            let connection = try await open(file)
            for sql in [
                "PRAGMA journal_mode = WAL", "PRAGMA synchronous = OFF", "CREATE TABLE counter (n INTEGER NOT NULL)",
                "INSERT INTO counter VALUES (0)",
            ] { _ = try await connection.query(sql, []) }
            writers.append(connection)
        }
        // The writer adds one to each database in turn, each in its own transaction (as a relay
        // publishes, then marks published): at any moment the counters, in order, are k … k,
        // k - 1 … k - 1. Copies of different moments show another shape.
        let stop = Atomic(false)
        let writer = Task { [writers] in
            var rounds = 0
            while !stop.load(ordering: .relaxed) {
                for connection in writers {
                    _ = try await connection.query("BEGIN IMMEDIATE", [])
                    _ = try await connection.query("UPDATE counter SET n = n + 1", [])
                    _ = try await connection.query("COMMIT", [])
                }
                rounds += 1
            }
            return rounds
        }
        var seen: [[Int]] = []
        for attempt in 0..<40 {
            let copies = files.map { directory.appendingPathComponent("copy-\(attempt)-\($0.lastPathComponent)") }
            // A millisecond between one file's snapshot and the next: the writer would go on
            // in between, if it were not held.
            _ = try await SQLiteSnapshot.copy(
                zip(files, copies).map { .init(source: $0, destination: $1) }, pinSpacing: .milliseconds(1),
                logger: logger)
            var values: [Int] = []
            for copy in copies {
                let connection = try await open(copy)
                values.append(try await integer("SELECT n FROM counter", connection))
                try await connection.close()
            }
            seen.append(values)
        }
        stop.store(true, ordering: .relaxed)
        let rounds = try await writer.value
        for connection in writers { try await connection.close() }
        #expect(rounds > 100, "the writer hardly ran: \(rounds) rounds")
        #expect(Set(seen.map(\.[0])).count > 10, "the copies did not happen while the writer ran: \(seen)")
        let torn = seen.filter { values in
            values.first! - values.last! > 1 || zip(values, values.dropFirst()).contains { $0 < $1 }
        }
        #expect(torn.isEmpty, "copies of different moments: \(torn.prefix(5))")
    }

    @Test("A copy keeps every object: rows, the AUTOINCREMENT counter, indexes, views, triggers, the user version")
    func everyObject() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("source.sqlite")
        let connection = try await open(source)
        for sql in [
            "PRAGMA journal_mode = WAL",
            #"CREATE TABLE "entries" (seq INTEGER PRIMARY KEY AUTOINCREMENT, "the text" TEXT NOT NULL, at REAL)"#,
            #"CREATE UNIQUE INDEX entries_text ON "entries" ("the text")"#,
            #"CREATE VIEW recent AS SELECT seq FROM "entries" WHERE seq > 1"#,
            #"CREATE TRIGGER append_only BEFORE DELETE ON "entries" BEGIN SELECT RAISE(ABORT, 'append-only'); END"#,
            "CREATE TABLE blobs (id TEXT PRIMARY KEY, body BLOB) WITHOUT ROWID",
            #"INSERT INTO "entries" ("the text", at) VALUES ('one', 1.5), ('two', 2.5), ('three', NULL)"#,
            "INSERT INTO blobs VALUES ('x', x'00ff10')",
            "PRAGMA user_version = 7",
        ] { _ = try await connection.query(sql, []) }
        // The counter is past the last row: a removed row's number is never given again.
        _ = try await connection.query("UPDATE sqlite_sequence SET seq = 10 WHERE name = 'entries'", [])
        let copy = directory.appendingPathComponent("copy.sqlite")
        _ = try await SQLiteSnapshot.copy([.init(source: source, destination: copy)], logger: logger)
        try await connection.close()

        let copied = try await open(copy)
        #expect(try await integer("SELECT count(*) FROM entries", copied) == 3)
        #expect(try await integer("SELECT count(*) FROM recent", copied) == 2)
        #expect(try await integer("SELECT count(*) FROM blobs WHERE body = x'00ff10'", copied) == 1)
        #expect(try await integer("PRAGMA user_version", copied) == 7)
        _ = try await copied.query(#"INSERT INTO entries ("the text") VALUES ('four')"#, [])
        #expect(try await integer("SELECT max(seq) FROM entries", copied) == 11)
        await #expect(throws: (any Error).self) {
            try await copied.query(#"INSERT INTO entries ("the text") VALUES ('one')"#, [])
        }
        await #expect(throws: (any Error).self) { try await copied.query("DELETE FROM entries", []) }
        #expect(try await copied.query("PRAGMA integrity_check", []).first?.columns.first?.data.string == "ok")
        try await copied.close()
    }
}

@Suite("Backup: sealed files")
struct SealedFileTests {
    @Test("A sealed file opens to the same bytes at every size around a chunk's", arguments: [
        0, 1, BackupFiles.chunkBytes - 1, BackupFiles.chunkBytes, BackupFiles.chunkBytes + 1, 2 * BackupFiles.chunkBytes + 5,
    ])
    func roundTrip(size: Int) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let original = directory.appendingPathComponent("original")
        let bytes = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try bytes.write(to: original)
        let key = try BackupKey(base64: BackupKey.random(), name: "test")
        let sealed = directory.appendingPathComponent("sealed")
        let (entry, read) = try BackupFiles.store(original, to: sealed, path: "data/x", kind: "database", key: key, backupID: "b1")
        #expect(read == SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined())
        try BackupFiles.check(sealed, against: entry)
        let stored = try Data(contentsOf: sealed)
        #expect(size < 64 || stored.range(of: bytes.prefix(64)) == nil, "the plaintext is in the sealed file")
        let opened = directory.appendingPathComponent("opened")
        try BackupFiles.restore(sealed, path: "data/x", to: opened, key: key, backupID: "b1")
        #expect(try Data(contentsOf: opened) == bytes)
    }

    @Test("A sealed file does not open cut short, under another path or backup, or with another key")
    func refusals() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let original = directory.appendingPathComponent("original")
        try Data(repeating: 42, count: 2 * BackupFiles.chunkBytes + 100).write(to: original)
        let key = try BackupKey(base64: BackupKey.random(), name: "test")
        let sealed = directory.appendingPathComponent("sealed")
        _ = try BackupFiles.store(original, to: sealed, path: "data/x", kind: "database", key: key, backupID: "b1")

        func opens(_ file: URL, path: String = "data/x", backup: String = "b1", with key: BackupKey) -> String? {
            let out = directory.appendingPathComponent("out-\(UUID())")
            do {
                try BackupFiles.restore(file, path: path, to: out, key: key, backupID: backup)
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(opens(sealed, with: key) == nil)
        // Without its last chunk (whole chunks are 4 + 1 MiB + 16 bytes after the 8-byte magic).
        let cut = directory.appendingPathComponent("cut")
        try Data(contentsOf: sealed).prefix(8 + 2 * (4 + BackupFiles.chunkBytes + 16)).write(to: cut)
        #expect(opens(cut, with: key)?.contains("cut short") == true)
        #expect(opens(sealed, path: "data/y", with: key)?.contains("does not open") == true)
        #expect(opens(sealed, backup: "b2", with: key)?.contains("does not open") == true)
        #expect(opens(sealed, with: try BackupKey(base64: BackupKey.random(), name: "other"))?.contains("does not open") == true)
    }
}

@Suite("Backup: PostgreSQL in the same moment")
struct PostgresSnapshotTests {
    static let server = ProcessInfo.processInfo.environment["HOSPITAL_TEST_POSTGRES_URL"].flatMap(URL.init(string:))

    @Test(
        "Snapshots of four PostgreSQL databases are of one moment, while a writer goes from one to the next",
        .enabled(if: server != nil, "needs HOSPITAL_TEST_POSTGRES_URL"))
    func oneMoment() async throws {
        let server = try #require(Self.server)
        let admin = try await PostgresConnection.connect(
            configuration: try PostgresSnapshot.configuration(server), id: 1, logger: logger)
        let prefix = "snapshot_\(UInt32.random(in: 0...UInt32.max))"
        var urls: [URL] = []
        for index in 0..<4 {
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(prefix)_\(index)"), logger: logger)
            urls.append(server.deletingLastPathComponent().appendingPathComponent("\(prefix)_\(index)"))
        }
        var writers: [PostgresConnection] = []
        for (index, url) in urls.enumerated() {
            let connection = try await PostgresConnection.connect(
                configuration: try PostgresSnapshot.configuration(url), id: 10 + index, logger: logger)
            try await connection.query("CREATE TABLE counter (n integer NOT NULL)", logger: logger)
            try await connection.query("INSERT INTO counter VALUES (0)", logger: logger)
            writers.append(connection)
        }
        // Each database in turn, each in its own transaction. (A writer that also wrote a SQLite
        // file of the cut would wait there: the SQLite side is `oneMoment` of the suite above.)
        let stop = Atomic(false)
        let writer = Task { [writers] in
            while !stop.load(ordering: .relaxed) {
                for connection in writers { try await connection.query("UPDATE counter SET n = n + 1", logger: logger) }
            }
        }
        var seen: [[Int]] = []
        for _ in 0..<15 {
            let snapshots = urls.enumerated().map { PostgresSnapshot(name: "db\($0.offset)", url: $0.element, logger: logger) }
            for snapshot in snapshots { try await snapshot.open() }
            // A few milliseconds between one snapshot and the next: the writer would go on in between.
            _ = try await SQLiteSnapshot.copy([], alsoPinning: snapshots, pinSpacing: .milliseconds(3), logger: logger)
            var values: [Int] = []
            for snapshot in snapshots {
                values.append(Int(try await snapshot.read("SELECT n::text FROM counter").first ?? "") ?? -1)
                await snapshot.close()
            }
            seen.append(values)
        }
        stop.store(true, ordering: .relaxed)
        try await writer.value
        for connection in writers { try await connection.close() }
        for index in 0..<4 {
            try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(prefix)_\(index) WITH (FORCE)"), logger: logger)
        }
        try await admin.close()
        #expect(Set(seen.map(\.[0])).count > 5, "the snapshots did not happen while the writer ran: \(seen)")
        let torn = seen.filter { values in
            values.first! - values.last! > 1 || zip(values, values.dropFirst()).contains { $0 < $1 }
        }
        #expect(torn.isEmpty, "snapshots of different moments: \(torn.prefix(5))")
    }
}
