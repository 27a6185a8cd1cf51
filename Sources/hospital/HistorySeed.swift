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
        return added
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
