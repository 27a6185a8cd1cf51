import Foundation
import Logging
import NIOPosix
import SQLiteNIO

/// Copies SQLite databases as they all were at one moment, while other connections (in this
/// process or others) go on reading and writing them.
///
/// Each database is copied from a read transaction of its own (WAL: a snapshot that later
/// commits do not change). For the snapshots to be of one moment across files, they are
/// pinned while every file's write lock is held by this copy: writers wait (they take the lock
/// at their first statement, `BEGIN IMMEDIATE`) for the few milliseconds that takes, readers
/// never wait. Then the locks are let go and the rows are copied from the snapshots, however
/// long that takes, without holding anybody up.
///
/// A copy is logical (each object's schema, then its rows), made in one transaction into a new
/// file: what a restore opens is a database SQLite wrote itself, never a file caught mid-write.
public enum SQLiteSnapshot {
    public struct Pair: Sendable {
        public var source: URL
        public var destination: URL
        public init(source: URL, destination: URL) {
            self.source = source
            self.destination = destination
        }
    }

    public struct Report: Sendable {
        /// How long writers were held: from the first write lock taken to the last let go.
        public var pause: Duration
        /// Tries it took to hold every lock at once.
        public var attempts: Int
        /// The moment the copies are of (every lock held, every snapshot taken).
        public var at: Date
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Copies every `source` into its `destination` (which must not exist), all as of one moment.
    ///
    /// - Parameters:
    ///   - lockWait: how long to wait for one file's write lock before letting go of the others
    ///     and trying again (a writer holding one file while it waits for another must not be
    ///     kept waiting on us).
    ///   - deadline: how long to keep trying before giving up.
    ///   - pinSpacing: a wait between one snapshot and the next (tests widen the moment with it).
    ///   - participants: other databases whose snapshots are taken in the same moment (their
    ///     copies are theirs to make afterwards).
    public static func copy(
        _ pairs: [Pair], alsoPinning participants: [any CutParticipant] = [], lockWait: Duration = .milliseconds(250),
        deadline: Duration = .seconds(60), pinSpacing: Duration = .zero, logger: Logger
    ) async throws -> Report {
        var copies: [SQLiteConnection] = []
        var locks: [SQLiteConnection] = []
        // Threads of its own: writers waiting for the locks wait on theirs (SQLiteNIO's busy
        // handler retries without end on the shared pool), and letting the locks go must not
        // queue behind them, or nobody moves again.
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        do {
            let report = try await copy(
                pairs, participants: participants, pool: pool, copies: &copies, locks: &locks, lockWait: lockWait,
                deadline: deadline, pinSpacing: pinSpacing, logger: logger)
            for connection in copies + locks { try? await connection.close() }
            try? await pool.shutdownGracefully()
            return report
        } catch {
            for connection in copies + locks { try? await connection.close() }
            try? await pool.shutdownGracefully()
            throw error
        }
    }

    private static func copy(
        _ pairs: [Pair], participants: [any CutParticipant], pool: NIOThreadPool, copies: inout [SQLiteConnection],
        locks: inout [SQLiteConnection], lockWait: Duration, deadline: Duration, pinSpacing: Duration, logger: Logger
    ) async throws -> Report {
        // Open everything first, so the pause holds only the locks and the snapshot reads.
        for pair in pairs {
            guard !FileManager.default.fileExists(atPath: pair.destination.path) else {
                throw Failure(description: "\(pair.destination.path) exists already")
            }
            let copy = try await SQLiteConnection.open(
                storage: .file(path: pair.destination.path), threadPool: pool, logger: logger,
                on: MultiThreadedEventLoopGroup.singleton.any())
            copies.append(copy)
            // Bounded too: it never waits for a lock, but should it, it must not spin for ever.
            _ = try await copy.query("PRAGMA busy_timeout = \(max(1, lockWait.wholeMilliseconds))", [])
            _ = try await copy.query("ATTACH DATABASE ? AS src", [.text(pair.source.path)])
            let mode = try await copy.query("PRAGMA src.journal_mode", []).first?.column("journal_mode")?.string
            if mode?.lowercased() != "wal" {
                // Without WAL a reader's lock keeps writers from committing until the copy ends.
                logger.warning(
                    "backup: a database is not in WAL mode; its writers wait for the whole copy",
                    metadata: ["file": "\(pair.source.lastPathComponent)", "journal_mode": "\(mode ?? "?")"])
            }
            let lock = try await SQLiteConnection.open(
                storage: .file(path: pair.source.path), threadPool: pool, logger: logger,
                on: MultiThreadedEventLoopGroup.singleton.any())
            locks.append(lock)
            // Replaces SQLiteNIO's busy handler (which waits for ever) with a bounded wait.
            _ = try await lock.query("PRAGMA busy_timeout = \(max(1, lockWait.wholeMilliseconds))", [])
        }

        let clock = ContinuousClock()
        let giveUp = clock.now.advanced(by: deadline)
        var attempts = 0
        var pause = Duration.zero
        var moment = Date()
        pinning: while true {
            attempts += 1
            var held: [SQLiteConnection] = []
            var holding: [any CutParticipant] = []
            // From the first lock taken (waiting for the next ones holds the first ones' writers).
            let started = clock.now
            func undo() async {
                for lock in held { _ = try? await lock.query("ROLLBACK", []) }
                for copy in copies { _ = try? await copy.query("ROLLBACK", []) }
                for participant in holding { await participant.abort() }
            }
            do {
                for lock in locks {
                    _ = try await lock.query("BEGIN IMMEDIATE", [])
                    held.append(lock)
                }
                for participant in participants {
                    holding.append(participant)
                    try await participant.hold(wait: lockWait)
                }
                for copy in copies {
                    if pinSpacing > .zero { try await Task.sleep(for: pinSpacing) }
                    _ = try await copy.query("BEGIN", [])
                    // The first read of `src` starts its read transaction: the snapshot.
                    _ = try await copy.query("SELECT count(*) FROM src.sqlite_schema", [])
                }
                for participant in participants {
                    if pinSpacing > .zero { try await Task.sleep(for: pinSpacing) }
                    try await participant.pin()
                }
                moment = Date()
                for participant in participants { await participant.letGo() }
                for lock in held { _ = try await lock.query("ROLLBACK", []) }
                pause = clock.now - started
                break pinning
            } catch let error where error is CutBusy || (error as? SQLiteError).map(Self.isBusy) == true {
                await undo()
                guard clock.now < giveUp else {
                    throw Failure(
                        description:
                            "could not hold every database's writers at once within \(deadline) (\(attempts) tries): writers kept them")
                }
                try await Task.sleep(for: .milliseconds(Int.random(in: 20...120)))
            } catch {
                await undo()
                throw error
            }
        }

        for (copy, pair) in zip(copies, pairs) {
            do {
                try await copyObjects(on: copy)
                _ = try await copy.query("COMMIT", [])
            } catch {
                _ = try? await copy.query("ROLLBACK", [])
                throw Failure(description: "copying \(pair.source.lastPathComponent): \(error)")
            }
            _ = try await copy.query("DETACH DATABASE src", [])
        }
        return Report(pause: pause, attempts: attempts, at: moment)
    }

    /// Tables with their rows, then AUTOINCREMENT counters, indexes, views and triggers (after
    /// the rows: an append-only guard must not see the copy's inserts), and the user version.
    private static func copyObjects(on copy: SQLiteConnection) async throws {
        let objects = try await copy.query(
            "SELECT type, name, sql FROM src.sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid", []
        ).map { row in
            (type: row.column("type")?.string ?? "", name: row.column("name")?.string ?? "",
             sql: row.column("sql")?.string ?? "")
        }
        let tables = objects.filter { $0.type == "table" && !$0.name.hasPrefix("sqlite_") }
        for table in tables {
            // The schema's text has no schema name and no IF NOT EXISTS: it creates in `main`.
            _ = try await copy.query(table.sql, [])
            _ = try await copy.query("INSERT INTO main.\(quoted(table.name)) SELECT * FROM src.\(quoted(table.name))", [])
        }
        if objects.contains(where: { $0.type == "table" && $0.name == "sqlite_sequence" }) {
            _ = try await copy.query("DELETE FROM main.sqlite_sequence", [])
            _ = try await copy.query("INSERT INTO main.sqlite_sequence SELECT * FROM src.sqlite_sequence", [])
        }
        for kind in ["index", "view", "trigger"] {
            for object in objects where object.type == kind && !object.name.hasPrefix("sqlite_") {
                _ = try await copy.query(object.sql, [])
            }
        }
        let version = try await copy.query("PRAGMA src.user_version", []).first?.column("user_version")?.integer ?? 0
        _ = try await copy.query("PRAGMA main.user_version = \(version)", [])
    }

    static func isBusy(_ error: SQLiteError) -> Bool {
        [.busy, .busyInRecovery, .busyInSnapshot, .busyTimeout, .locked].contains(error.reason)
    }

    static func quoted(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

extension Duration {
    /// Whole milliseconds.
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

extension SQLiteSnapshot {
    /// The first column of what `sql` returns from the database `file`, as text (the backup's
    /// copies are read this way, never opened by a service).
    public static func strings(_ sql: String, in file: URL, logger: Logger) async throws -> [String] {
        let connection = try await SQLiteConnection.open(storage: .file(path: file.path), logger: logger)
        do {
            let rows = try await connection.query(sql, [])
            try await connection.close()
            return rows.compactMap { row in
                guard let value = row.columns.first?.data else { return nil }
                return value.string ?? value.integer.map(String.init)
            }
        } catch {
            try? await connection.close()
            throw error
        }
    }
}
