import Crypto
import Foundation
import Logging
import SQLiteNIO
import Synchronization

/// What to back up, decided by the caller (which knows the data directory's layout).
public struct BackupPlan: Sendable {
    /// SQLite databases, by the name they have in the data directory.
    public var databases: [(name: String, file: URL)]
    /// PostgreSQL databases, by name (a service's, the gateway's): dumped as of the same moment.
    public var postgres: [(name: String, url: URL)]
    /// Small files copied as they are (keys, the installation id), by name and kind.
    public var files: [(name: String, kind: String, file: URL)]
    /// The result files' content-addressed directory (`<dir>/sha256/ab/ab…`), if any.
    public var attachments: URL?
    /// The data directory's id, recorded in the manifest.
    public var installation: String
    /// Recorded in the manifest: what is deliberately left out.
    public var notIncluded: [String]
    /// Reads what the manifest records of the copied databases (their directory given): the
    /// event log's end and the migrations they have had.
    public var describe: @Sendable (URL) async throws -> (eventLogEnd: Int64?, migrations: [String])
    /// The migrations a PostgreSQL database has had, read from its snapshot.
    public var postgresMigrations: @Sendable (PostgresSnapshot) async throws -> [String]
    /// The result files (SHA-256) the databases' rows name, read from the copies (their
    /// directory) and the PostgreSQL snapshots: the backup fails rather than lack one.
    public var storedFiles: @Sendable (URL, [PostgresSnapshot]) async throws -> Set<String>

    public init(
        databases: [(name: String, file: URL)], postgres: [(name: String, url: URL)] = [],
        files: [(name: String, kind: String, file: URL)], attachments: URL?, installation: String, notIncluded: [String],
        describe: @escaping @Sendable (URL) async throws -> (eventLogEnd: Int64?, migrations: [String]),
        postgresMigrations: @escaping @Sendable (PostgresSnapshot) async throws -> [String] = { _ in [] },
        storedFiles: @escaping @Sendable (URL, [PostgresSnapshot]) async throws -> Set<String> = { _, _ in [] }
    ) {
        self.storedFiles = storedFiles
        self.databases = databases
        self.postgres = postgres
        self.postgresMigrations = postgresMigrations
        self.files = files
        self.attachments = attachments
        self.installation = installation
        self.notIncluded = notIncluded
        self.describe = describe
    }
}

/// One finished backup.
public struct BackupResult: Sendable {
    public var directory: URL
    public var manifest: BackupManifest
    public var duration: Duration
}

/// Makes backups into a directory of backups, one subdirectory each (`20261206T101500Z-1a2b3c4d`),
/// and keeps the newest `keep`.
///
/// A backup is written into a hidden `.partial-…` directory and renamed to its name only when
/// every file and the manifest are written and fsynced: a directory with a manifest is a whole
/// backup; a failed one (full disk, read-only disk, a crash) leaves no directory that looks
/// complete, and the next backup removes what it left. One backup of a data directory runs at a
/// time (a lock file in it): a second is refused.
public enum Backups {
    /// - Parameters:
    ///   - scratch: where the databases' copies are made before they are sealed into the
    ///     backup: beside the data they copy (the data directory), never on the backup's medium,
    ///     where an interrupted backup would leave them in clear.
    public static func make(
        _ plan: BackupPlan, into parent: URL, scratch: URL, lock lockFile: URL, key: BackupKey?, keep: Int?,
        logger: Logger
    ) async throws -> BackupResult {
        let lock = try BackupLock(lockFile)
        defer { lock.release() }
        let clock = ContinuousClock()
        let started = clock.now
        let manager = FileManager.default
        do {
            try manager.createDirectory(at: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw BackupFiles.Failure("cannot create \(parent.path): \(error.localizedDescription)")
        }
        let mine = ".partial-\(plan.installation.prefix(8))-"
        removeLeftovers(in: parent, prefix: mine, logger: logger)
        removeLeftovers(in: scratch, prefix: ".backup-work-", logger: logger)
        let backupID = UUID().uuidString.lowercased()
        let partial = parent.appendingPathComponent(mine + backupID, isDirectory: true)
        let work = scratch.appendingPathComponent(".backup-work-\(backupID)", isDirectory: true)
        defer { try? manager.removeItem(at: work) }
        do {
            try manager.createDirectory(at: partial, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            try manager.createDirectory(at: work, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            let result = try await write(plan, to: partial, work: work, backupID: backupID, key: key, logger: logger)
            let name = "\(compactStamp(result.createdAt))-\(backupID.prefix(8))"
            let final = parent.appendingPathComponent(name, isDirectory: true)
            try rename(partial, to: final)
            syncDirectory(parent)
            if let keep { prune(parent, installation: plan.installation, keep: keep, logger: logger) }
            return BackupResult(directory: final, manifest: result, duration: clock.now - started)
        } catch {
            try? manager.removeItem(at: partial)
            throw error
        }
    }

    private static func write(
        _ plan: BackupPlan, to directory: URL, work: URL, backupID: String, key: BackupKey?, logger: Logger
    ) async throws -> BackupManifest {
        let manager = FileManager.default
        let data = directory.appendingPathComponent("data", isDirectory: true)
        try manager.createDirectory(at: data, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let postgres = plan.postgres.map { PostgresSnapshot(name: $0.name, url: $0.url, logger: logger) }
        let report: SQLiteSnapshot.Report
        var postgresMigrations: [String] = []
        let named: Set<String>
        do {
            for database in postgres { try await database.open() }
            report = try await SQLiteSnapshot.copy(
                plan.databases.map { .init(source: $0.file, destination: work.appendingPathComponent($0.name)) },
                alsoPinning: postgres, logger: logger)
            named = try await plan.storedFiles(work, postgres)
            for database in postgres {
                postgresMigrations += try await plan.postgresMigrations(database)
                try await database.dump(to: work.appendingPathComponent("\(database.name).pgdump"))
                await database.close()
            }
        } catch {
            for database in postgres { await database.close() }
            throw error
        }
        let described = try await plan.describe(work)
        // The copying, hashing and sealing run on a thread of their own, not the concurrency
        // pool's: a scheduled backup must not take a serving thread for minutes. A stop of the
        // process cancels it between two files.
        let stop = StopFlag()
        let entries = try await withTaskCancellationHandler {
            try await offloaded {
                try storeAll(
                    plan, into: directory, work: work, postgres: postgres.map(\.name), named: named, key: key,
                    backupID: backupID, stop: stop)
            }
        } onCancel: {
            stop.set()
        }
        var manifest = BackupManifest(
            format: BackupManifest.currentFormat, product: "hospital", backupID: backupID,
            installation: plan.installation, createdAt: isoStamp(report.at),
            writePauseMilliseconds: report.pause.wholeMilliseconds, eventLogEnd: described.eventLogEnd,
            migrations: Set(described.migrations + postgresMigrations).sorted(),
            encryption: key.map { .init(cipher: "AES-256-GCM", keyID: $0.id, chunkBytes: BackupFiles.chunkBytes) },
            notIncluded: plan.notIncluded, files: entries, seal: nil)
        if let key { manifest.seal = try key.seal(manifest) }
        let manifestFile = directory.appendingPathComponent(BackupManifest.fileName)
        let output = try BackupFiles.createFile(manifestFile)
        try output.write(contentsOf: try manifest.encoded())
        try output.synchronize()
        try output.close()
        // Every folder a file was written into, and each folder above it up to the backup's.
        var folders = Set<String>()
        for entry in entries {
            var parts = entry.path.split(separator: "/").dropLast()
            while !parts.isEmpty {
                folders.insert(parts.joined(separator: "/"))
                parts = parts.dropLast()
            }
        }
        for folder in folders.sorted(by: { $0.count > $1.count }) {
            syncDirectory(directory.appendingPathComponent(folder, isDirectory: true))
        }
        syncDirectory(directory)
        return manifest
    }

    /// Seals (or copies) everything into the backup's directory, the databases' working copies
    /// removed as they go; fails if a result file the databases name is not among those stored.
    private static func storeAll(
        _ plan: BackupPlan, into directory: URL, work: URL, postgres: [String], named: Set<String>, key: BackupKey?,
        backupID: String, stop: StopFlag
    ) throws -> [BackupManifest.Entry] {
        let manager = FileManager.default
        let data = directory.appendingPathComponent("data", isDirectory: true)
        var entries: [BackupManifest.Entry] = []
        for database in plan.databases {
            try stop.check()
            let copy = work.appendingPathComponent(database.name)
            entries.append(
                try BackupFiles.store(
                    copy, to: data.appendingPathComponent(database.name), path: "data/\(database.name)",
                    kind: "database", key: key, backupID: backupID
                ).entry)
            try manager.removeItem(at: copy)
        }
        if !postgres.isEmpty {
            let folder = directory.appendingPathComponent("postgres", isDirectory: true)
            try manager.createDirectory(at: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            for name in postgres {
                let dump = work.appendingPathComponent("\(name).pgdump")
                entries.append(
                    try BackupFiles.store(
                        dump, to: folder.appendingPathComponent("\(name).pgdump"), path: "postgres/\(name).pgdump",
                        kind: "postgres", key: key, backupID: backupID
                    ).entry)
                try manager.removeItem(at: dump)
            }
        }
        for file in plan.files {
            entries.append(
                try BackupFiles.store(
                    file.file, to: data.appendingPathComponent(file.name), path: "data/\(file.name)", kind: file.kind,
                    key: key, backupID: backupID
                ).entry)
        }
        if let attachments = plan.attachments {
            entries += try storeAttachments(attachments, into: directory, key: key, backupID: backupID, stop: stop)
        }
        let stored = Set(entries.filter { $0.kind == "attachment" }.map { String($0.path.split(separator: "/").last!) })
        let missing = named.subtracting(stored)
        guard missing.isEmpty else {
            throw BackupFiles.Failure(
                "\(missing.count) result file(s) named by the database are not in the attachments directory (\(plan.attachments?.path ?? "none")): the backup would not be whole")
        }
        return entries
    }

    /// Every content file (`sha256/ab/ab…`), checked against its name as it is copied: a file
    /// whose bytes no longer match its name is damaged, and the backup says so rather than
    /// keeping it. Temporary uploads are not backed up.
    private static func storeAttachments(
        _ attachments: URL, into directory: URL, key: BackupKey?, backupID: String, stop: StopFlag
    ) throws -> [BackupManifest.Entry] {
        let manager = FileManager.default
        let content = attachments.appendingPathComponent("sha256", isDirectory: true)
        guard manager.fileExists(atPath: content.path) else { return [] }
        let prefixes = try manager.contentsOfDirectory(atPath: content.path)
        var entries: [BackupManifest.Entry] = []
        for prefix in prefixes.sorted() {
            let folder = content.appendingPathComponent(prefix, isDirectory: true)
            let target = directory.appendingPathComponent("attachments/sha256/\(prefix)", isDirectory: true)
            try manager.createDirectory(at: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for name in (try manager.contentsOfDirectory(atPath: folder.path)).sorted() {
                try stop.check()
                let stored = try BackupFiles.store(
                    folder.appendingPathComponent(name), to: target.appendingPathComponent(name),
                    path: "attachments/sha256/\(prefix)/\(name)", kind: "attachment", key: key, backupID: backupID)
                guard stored.sourceSHA256 == name else {
                    throw BackupFiles.Failure(
                        "attachments/sha256/\(prefix)/\(name): its bytes no longer match its name (the file is damaged); restore it from an earlier backup")
                }
                entries.append(stored.entry)
            }
        }
        return entries
    }

    /// The whole backups of `installation` in `parent`, oldest first (a directory with a
    /// readable manifest; other installations' backups in the same place are not theirs).
    public static func list(_ parent: URL, installation: String) -> [(directory: URL, manifest: BackupManifest)] {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: parent.path) else { return [] }
        return names.filter { !$0.hasPrefix(".") }.sorted().compactMap { name in
            let directory = parent.appendingPathComponent(name, isDirectory: true)
            guard let data = try? Data(contentsOf: directory.appendingPathComponent(BackupManifest.fileName)),
                let manifest = try? JSONDecoder().decode(BackupManifest.self, from: data),
                manifest.installation == installation
            else { return nil }
            return (directory, manifest)
        }.sorted { $0.manifest.createdAt < $1.manifest.createdAt }
    }

    private static func prune(_ parent: URL, installation: String, keep: Int, logger: Logger) {
        let whole = list(parent, installation: installation)
        guard keep > 0, whole.count > keep else { return }
        for old in whole.prefix(whole.count - keep) {
            do {
                try FileManager.default.removeItem(at: old.directory)
                logger.info("backup: removed an old backup (retention)", metadata: ["backup": "\(old.directory.lastPathComponent)"])
            } catch {
                logger.warning(
                    "backup: could not remove an old backup", metadata: ["backup": "\(old.directory.path)", "error": "\(error)"])
            }
        }
    }

    /// What this installation's failed backups left (its lock is held: none is being written now).
    private static func removeLeftovers(in parent: URL, prefix: String, logger: Logger) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        for name in names where name.hasPrefix(prefix) {
            if (try? FileManager.default.removeItem(at: parent.appendingPathComponent(name))) != nil {
                logger.info("backup: removed what an unfinished backup left", metadata: ["directory": "\(name)"])
            }
        }
    }

    static func rename(_ from: URL, to: URL) throws {
        guard Foundation.rename(from.path, to.path) == 0 else {
            throw BackupFiles.Failure("cannot rename \(from.path) to \(to.path): \(String(cString: strerror(errno)))")
        }
    }

    static func syncDirectory(_ url: URL) {
        let fd = open(url.path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// A manifest's moments: ISO 8601 in UTC, with milliseconds.
    private static func isoFormatter() -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter
    }

    static func isoStamp(_ date: Date) -> String { isoFormatter().string(from: date) }

    /// The moment a manifest's `createdAt` names.
    public static func date(_ iso: String) -> Date? { isoFormatter().date(from: iso) }

    static func compactStamp(_ iso: String) -> String {
        String(iso.filter { $0.isNumber || $0 == "T" }.prefix(15)) + "Z"
    }
}

/// Set when the task that waits for offloaded work is canceled; the work checks it between files.
final class StopFlag: Sendable {
    private let stopped = Atomic(false)
    func set() { stopped.store(true, ordering: .relaxed) }
    func check() throws { if stopped.load(ordering: .relaxed) { throw CancellationError() } }
}

/// Runs `work` on a thread of its own (blocking file work), not on the concurrency pool's.
func offloaded<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// One backup of a data directory at a time: an exclusive `flock` on a file in it, which the
/// system lets go when the process ends, however it ends.
struct BackupLock {
    let fd: Int32

    init(_ file: URL) throws {
        fd = open(file.path, O_RDWR | O_CREAT, 0o600)
        guard fd >= 0 else { throw BackupFiles.Failure("cannot open \(file.path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw BackupFiles.Failure("another backup of this data directory is running (\(file.path) is locked); try again when it ends")
        }
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
