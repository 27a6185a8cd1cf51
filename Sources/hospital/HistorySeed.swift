import Foundation
import Logging
import Runtime
import SQLiteNIO

/// Fills a stopped system's SQLite databases with history for `hospital bench --seed-history`:
/// the rows the bench's own visits left are copied, each copy a day further in the past with
/// fresh ids, until every list table holds the wanted number of visits. The messaging tables
/// are left as they are: retention keeps only days of them (published outbox rows 7, inbox 30),
/// whatever the history. So is the event log: new entries there would be consumed as new events.
enum HistorySeed {
    /// Each service database and its tables of visits, as the catalog's services declare them;
    /// the first (the service where visits begin) counts the visits.
    static let tables: [(file: String, table: String)] = ServiceCatalog.domain.flatMap { service in
        service.visitTables.map { ("\(service.name).sqlite", $0) }
    }

    /// Grows every table so that the visit tables hold `visits` rows; returns rows added.
    static func grow(dataDirectory: URL, to visits: Int) async throws -> Int {
        let logger = Logger(label: "bench.seed")
        guard let first = tables.first else { return 0 }
        let receptions = try await count(first.table, in: dataDirectory.appendingPathComponent(first.file))
        guard receptions > 0, visits > receptions else { return 0 }
        let copies = (visits - receptions + receptions - 1) / receptions
        var added = 0
        for (file, table) in tables {
            let connection = try await SQLiteConnection.open(
                storage: .file(path: dataDirectory.appendingPathComponent(file).path), logger: logger)
            let columns = try await connection.query("PRAGMA table_info(\(table))", []).compactMap { row in
                row.column("name")?.string.map { ($0, row.column("type")?.string?.uppercased() ?? "", row.column("pk")?.integer ?? 0) }
            }
            // Fresh ids for every UUID key and reference (Fluent keeps them as text); dates (REAL,
            // seconds since 1970) a day earlier per copy; an integer key is left to SQLite.
            let insertColumns = columns.filter { !($0.2 > 0 && $0.1 == "INTEGER") }
            let randomUUID =
                "hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' || "
                + "hex(randomblob(2)) || '-' || hex(randomblob(6))"
            let selected = insertColumns.map { name, type, _ -> String in
                let quoted = "\"\(name)\""
                if type == "UUID" { return "CASE WHEN \(quoted) IS NULL THEN NULL ELSE \(randomUUID) END" }
                if type == "REAL" && name.hasSuffix("_at") { return "\(quoted) - seq.k * 86400.0" }
                return quoted
            }
            let list = insertColumns.map { "\"\($0.0)\"" }.joined(separator: ", ")
            _ = try await connection.query("BEGIN", [])
            _ = try await connection.query(
                """
                WITH RECURSIVE seq(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM seq WHERE k < \(copies))
                INSERT INTO \(table) (\(list))
                SELECT \(selected.joined(separator: ", ")) FROM (SELECT * FROM \(table)) AS original, seq
                """, [])
            _ = try await connection.query("COMMIT", [])
            added += try await count(table, in: connection)
            try await connection.close()
        }
        added += try await growPatients(dataDirectory: dataDirectory, to: visits / 2)
        return added
    }

    /// The registry's patients of such a history: one for every two visits, with names as
    /// common as Korean names are, birth dates from 1930 on, and eight-digit chart numbers
    /// beginning with 9 (the running numbers the registry issues begin with 1).
    static func growPatients(dataDirectory: URL, to patients: Int) async throws -> Int {
        let connection = try await SQLiteConnection.open(
            storage: .file(path: dataDirectory.appendingPathComponent("reception.sqlite").path),
            logger: Logger(label: "bench.seed"))
        defer { Task { try? await connection.close() } }
        guard !(try await connection.query("SELECT name FROM sqlite_master WHERE name = 'patients'", [])).isEmpty
        else { return 0 }
        let existing = try await count("patients", in: connection)
        guard patients > existing else { return 0 }
        let randomUUID =
            "hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' || "
            + "hex(randomblob(2)) || '-' || hex(randomblob(6))"
        func pick(_ letters: String) -> String {
            "substr('\(letters)', abs(random()) % \(letters.count) + 1, 1)"
        }
        let surname = pick("김김김김이이이박박최정강조윤장임한오서신권황안송류홍")
        let first = pick("민서지현수영준우하은도예유진")
        let second = pick("민서지현수영준우하은도예유진훈연빈호")
        _ = try await connection.query("BEGIN", [])
        _ = try await connection.query(
            """
            WITH RECURSIVE seq(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM seq WHERE k < \(patients - existing))
            INSERT INTO patients (id, version, chart_number, name, birth_date, sex, created_at, updated_at)
            SELECT \(randomUUID), 1, printf('9%07d', k), \(surname) || \(first) || \(second),
                   date('1930-01-01', '+' || (abs(random()) % 33000) || ' days'),
                   CASE WHEN abs(random()) % 2 = 0 THEN 'M' ELSE 'F' END,
                   CAST(strftime('%s', 'now') AS REAL) - k * 60.0, CAST(strftime('%s', 'now') AS REAL) - k * 60.0
            FROM seq
            """, [])
        _ = try await connection.query("COMMIT", [])
        return patients - existing
    }

    private static func count(_ table: String, in file: URL) async throws -> Int {
        let connection = try await SQLiteConnection.open(storage: .file(path: file.path), logger: Logger(label: "bench.seed"))
        let n = try await count(table, in: connection)
        try await connection.close()
        return n
    }

    private static func count(_ table: String, in connection: SQLiteConnection) async throws -> Int {
        try await connection.query("SELECT COUNT(*) AS n FROM \(table)", []).first?.column("n")?.integer ?? 0
    }
}
