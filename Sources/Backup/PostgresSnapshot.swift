import Foundation
import Logging
import PostgresNIO

/// Something besides the SQLite files that a backup copies as of the same moment: it holds its
/// writers, takes its snapshot while every participant holds theirs, and lets them go.
public protocol CutParticipant: Sendable {
    /// Makes writers wait, giving up (throwing `CutBusy`) after about `wait`.
    func hold(wait: Duration) async throws
    /// Takes the snapshot the copy will be made from (writers are held everywhere).
    func pin() async throws
    /// Lets the writers go; the snapshot stays.
    func letGo() async
    /// Undoes `hold` and `pin` after a failed attempt.
    func abort() async
}

/// A participant could not hold its writers in time: the attempt is undone and tried again.
public struct CutBusy: Error {}

/// A PostgreSQL database in a backup: its writers held by `LOCK TABLE … IN EXCLUSIVE MODE` on
/// every table (readers go on; a writer waits), its snapshot exported from a repeatable-read
/// transaction (`pg_export_snapshot`), and `pg_dump --snapshot` dumping exactly that snapshot
/// afterwards, however long it takes.
public actor PostgresSnapshot: CutParticipant {
    public nonisolated let name: String
    private let url: URL
    private let logger: Logger
    private var lock: PostgresConnection?
    private var snapshot: PostgresConnection?
    private var snapshotID: String?

    public init(name: String, url: URL, logger: Logger) {
        self.name = name
        self.url = url
        self.logger = logger
    }

    static func configuration(_ url: URL) throws -> PostgresConnection.Configuration {
        // URLComponents decodes the user and the password (`p%40ss` is `p@ss`), as libpq does.
        guard let parts = URLComponents(url: url, resolvingAgainstBaseURL: false), let host = parts.host,
            let user = parts.user, parts.path.count > 1
        else {
            throw BackupFiles.Failure("not a PostgreSQL URL with a host, a user and a database: \(redacted(url))")
        }
        return .init(
            host: host, port: parts.port ?? 5432, username: user, password: parts.password,
            database: String(parts.path.dropFirst()), tls: .disable)
    }

    static func redacted(_ url: URL) -> String {
        guard url.password != nil, var parts = URLComponents(url: url, resolvingAgainstBaseURL: false) else {
            return url.absoluteString
        }
        parts.password = "***"
        return parts.string ?? "?"
    }

    private func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(configuration: Self.configuration(url), id: Int.random(in: 1...Int.max), logger: logger)
    }

    public func open() async throws {
        lock = try await connect()
        snapshot = try await connect()
    }

    public func close() async {
        try? await lock?.close()
        try? await snapshot?.close()
        lock = nil
        snapshot = nil
    }

    public func hold(wait: Duration) async throws {
        guard let lock else { throw BackupFiles.Failure("\(name): not open") }
        let tables = try await Self.strings(
            """
            SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
            WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
            """, on: lock, logger: logger)
        try await lock.query("BEGIN", logger: logger)
        try await lock.query(PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(max(1, wait.wholeMilliseconds))ms'"), logger: logger)
        guard !tables.isEmpty else { return }
        do {
            try await lock.query(
                PostgresQuery(unsafeSQL: "LOCK TABLE \(tables.joined(separator: ", ")) IN EXCLUSIVE MODE"), logger: logger)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "55P03" {
            throw CutBusy()
        }
    }

    public func pin() async throws {
        guard let snapshot else { throw BackupFiles.Failure("\(name): not open") }
        try await snapshot.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
        snapshotID = try await Self.strings("SELECT pg_export_snapshot()", on: snapshot, logger: logger).first
    }

    public func letGo() async {
        _ = try? await lock?.query("ROLLBACK", logger: logger)
    }

    public func abort() async {
        _ = try? await lock?.query("ROLLBACK", logger: logger)
        _ = try? await snapshot?.query("ROLLBACK", logger: logger)
        snapshotID = nil
    }

    /// What `sql` returns from the snapshot (its first column, as text).
    public func read(_ sql: String) async throws -> [String] {
        guard let snapshot else { throw BackupFiles.Failure("\(name): not open") }
        return try await Self.strings(sql, on: snapshot, logger: logger)
    }

    /// `pg_dump` of the pinned snapshot into `file` (custom format, no owners or grants).
    public func dump(to file: URL) async throws {
        guard let snapshotID else { throw BackupFiles.Failure("\(name): no snapshot") }
        try await PostgresTools.run(
            "pg_dump",
            ["--snapshot=\(snapshotID)", "--format=custom", "--no-owner", "--no-privileges", "--file=\(file.path)"],
            url: url, what: "dumping the \(name) database")
        _ = try? await snapshot?.query("COMMIT", logger: logger)
    }

    static func strings(_ sql: String, on connection: PostgresConnection, logger: Logger) async throws -> [String] {
        var result: [String] = []
        for try await (value) in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            .decode(String.self)
        {
            result.append(value)
        }
        return result
    }

    /// Whether the database at `url` has no table of its own (a restore goes only into such).
    public static func isEmpty(_ url: URL, logger: Logger) async throws -> Bool {
        try await withConnection(url, logger: logger) { connection in
            try await strings(
                "SELECT tablename::text FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                on: connection, logger: logger
            ).isEmpty
        }
    }

    /// Removes what a restore put into the database at `url` (its `public` schema, made anew).
    public static func empty(_ url: URL, logger: Logger) async throws {
        try await withConnection(url, logger: logger) { connection in
            try await connection.query("DROP SCHEMA public CASCADE", logger: logger)
            try await connection.query("CREATE SCHEMA public", logger: logger)
        }
    }

    /// One connection to `url` for `body`, closed after it, however it ends.
    private static func withConnection<T>(
        _ url: URL, logger: Logger, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await PostgresConnection.connect(
            configuration: configuration(url), id: Int.random(in: 1...Int.max), logger: logger)
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// `pg_restore` of `file` into the (empty) database at `url`, in one transaction: all or nothing.
    public static func restore(_ file: URL, into url: URL, name: String) async throws {
        try await PostgresTools.run(
            "pg_restore", ["--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges", file.path],
            url: url, what: "restoring the \(name) database")
    }
}

/// PostgreSQL's client programs, found on the PATH; the password goes through the environment,
/// never the command line.
enum PostgresTools {
    static func run(_ program: String, _ arguments: [String], url: URL, what: String) async throws {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else {
            throw BackupFiles.Failure("\(program) is needed for \(what) (Debian: apt-get install postgresql-client)")
        }
        var parts = URLComponents(url: url, resolvingAgainstBaseURL: false)
        let password = parts?.password
        parts?.password = nil
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments + ["--dbname=\(parts?.string ?? url.absoluteString)"]
        // Only what the client programs read: never the process's keys (HOSPITAL_*_KEY).
        var environment = ProcessInfo.processInfo.environment.filter { name, _ in
            name == "PATH" || name == "HOME" || name.hasPrefix("PG") || name.hasPrefix("LC_") || name == "LANG"
        }
        if let password { environment["PGPASSWORD"] = password }
        process.environment = environment
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("hospital-\(program)-\(UUID()).err")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil, attributes: [.posixPermissions: 0o600])
        defer { try? FileManager.default.removeItem(at: errors) }
        process.standardError = try FileHandle(forWritingTo: errors)
        process.standardOutput = FileHandle.nullDevice
        // Waited for without holding a thread of the concurrency pool (a dump can take minutes),
        // and stopped if the backup is canceled.
        nonisolated(unsafe) let child = process
        let status: Int32 = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                child.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
                do {
                    try child.run()
                } catch {
                    child.terminationHandler = nil
                    continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            if child.isRunning { child.terminate() }
        }
        try Task.checkCancellation()
        guard status == 0 else {
            let said = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            let text = said.split(separator: "\n").prefix(3).joined(separator: "; ")
            throw BackupFiles.Failure("\(what): \(program) failed: \(text)")
        }
    }
}
