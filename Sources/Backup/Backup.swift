import Crypto
import Foundation
import Logging
import SQLiteNIO

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

    public init(
        databases: [(name: String, file: URL)], postgres: [(name: String, url: URL)] = [],
        files: [(name: String, kind: String, file: URL)], attachments: URL?, installation: String, notIncluded: [String],
        describe: @escaping @Sendable (URL) async throws -> (eventLogEnd: Int64?, migrations: [String]),
        postgresMigrations: @escaping @Sendable (PostgresSnapshot) async throws -> [String] = { _ in [] }
    ) {
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
    public static func make(
        _ plan: BackupPlan, into parent: URL, lock lockFile: URL, key: BackupKey?, keep: Int?, logger: Logger
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
        removeLeftovers(in: parent, logger: logger)
        let backupID = UUID().uuidString.lowercased()
        let partial = parent.appendingPathComponent(".partial-\(backupID)", isDirectory: true)
        do {
            try manager.createDirectory(at: partial, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            let result = try await write(plan, to: partial, backupID: backupID, key: key, logger: logger)
            let name = "\(compactStamp(result.createdAt))-\(backupID.prefix(8))"
            let final = parent.appendingPathComponent(name, isDirectory: true)
            try rename(partial, to: final)
            syncDirectory(parent)
            if let keep { prune(parent, keep: keep, logger: logger) }
            return BackupResult(directory: final, manifest: result, duration: clock.now - started)
        } catch {
            try? manager.removeItem(at: partial)
            throw error
        }
    }

    private static func write(
        _ plan: BackupPlan, to directory: URL, backupID: String, key: BackupKey?, logger: Logger
    ) async throws -> BackupManifest {
        let manager = FileManager.default
        let work = directory.appendingPathComponent(".work", isDirectory: true)
        let data = directory.appendingPathComponent("data", isDirectory: true)
        try manager.createDirectory(at: work, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try manager.createDirectory(at: data, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let createdAt = Date()
        let postgres = plan.postgres.map { PostgresSnapshot(name: $0.name, url: $0.url, logger: logger) }
        let report: SQLiteSnapshot.Report
        var postgresMigrations: [String] = []
        do {
            for database in postgres { try await database.open() }
            report = try await SQLiteSnapshot.copy(
                plan.databases.map { .init(source: $0.file, destination: work.appendingPathComponent($0.name)) },
                alsoPinning: postgres, logger: logger)
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
        // pool's: a scheduled backup must not take a serving thread for minutes.
        let entries = try await offloaded { () throws -> [BackupManifest.Entry] in
            var entries: [BackupManifest.Entry] = []
            for database in plan.databases {
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
                for database in postgres {
                    let dump = work.appendingPathComponent("\(database.name).pgdump")
                    entries.append(
                        try BackupFiles.store(
                            dump, to: folder.appendingPathComponent("\(database.name).pgdump"),
                            path: "postgres/\(database.name).pgdump", kind: "postgres", key: key, backupID: backupID
                        ).entry)
                    try manager.removeItem(at: dump)
                }
            }
            try manager.removeItem(at: work)
            for file in plan.files {
                entries.append(
                    try BackupFiles.store(
                        file.file, to: data.appendingPathComponent(file.name), path: "data/\(file.name)", kind: file.kind,
                        key: key, backupID: backupID
                    ).entry)
            }
            if let attachments = plan.attachments {
                entries += try storeAttachments(attachments, into: directory, key: key, backupID: backupID)
            }
            return entries
        }
        var manifest = BackupManifest(
            format: BackupManifest.currentFormat, product: "hospital", backupID: backupID,
            installation: plan.installation, createdAt: isoStamp(createdAt),
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
        for folder in Set(entries.map { directory.appendingPathComponent($0.path).deletingLastPathComponent() }) {
            syncDirectory(folder)
        }
        syncDirectory(directory)
        return manifest
    }

    /// Every content file (`sha256/ab/ab…`), checked against its name as it is copied: a file
    /// whose bytes no longer match its name is damaged, and the backup says so rather than
    /// keeping it. Temporary uploads are not backed up.
    private static func storeAttachments(
        _ attachments: URL, into directory: URL, key: BackupKey?, backupID: String
    ) throws -> [BackupManifest.Entry] {
        let manager = FileManager.default
        let content = attachments.appendingPathComponent("sha256", isDirectory: true)
        guard let prefixes = try? manager.contentsOfDirectory(atPath: content.path) else { return [] }
        var entries: [BackupManifest.Entry] = []
        for prefix in prefixes.sorted() {
            let folder = content.appendingPathComponent(prefix, isDirectory: true)
            let target = directory.appendingPathComponent("attachments/sha256/\(prefix)", isDirectory: true)
            try manager.createDirectory(at: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for name in (try manager.contentsOfDirectory(atPath: folder.path)).sorted() {
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

    /// The whole backups in `parent`, oldest first (a directory with a readable manifest).
    public static func list(_ parent: URL) -> [(directory: URL, manifest: BackupManifest)] {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: parent.path) else { return [] }
        return names.filter { !$0.hasPrefix(".") }.sorted().compactMap { name in
            let directory = parent.appendingPathComponent(name, isDirectory: true)
            guard let data = try? Data(contentsOf: directory.appendingPathComponent(BackupManifest.fileName)),
                let manifest = try? JSONDecoder().decode(BackupManifest.self, from: data)
            else { return nil }
            return (directory, manifest)
        }.sorted { $0.manifest.createdAt < $1.manifest.createdAt }
    }

    private static func prune(_ parent: URL, keep: Int, logger: Logger) {
        let whole = list(parent)
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

    /// What failed backups left (the lock is held: none is being written now).
    private static func removeLeftovers(in parent: URL, logger: Logger) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        for name in names where name.hasPrefix(".partial-") {
            try? FileManager.default.removeItem(at: parent.appendingPathComponent(name))
            logger.info("backup: removed what an unfinished backup left", metadata: ["directory": "\(name)"])
        }
    }

    static func sha256(of file: URL) throws -> String {
        let input = try FileHandle(forReadingFrom: file)
        defer { try? input.close() }
        var hash = SHA256()
        while let data = try input.read(upToCount: BackupFiles.chunkBytes), !data.isEmpty { hash.update(data: data) }
        return hash.finalize().hex
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

    static func isoStamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// The moment a manifest's `createdAt` names.
    public static func date(_ iso: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: iso)
    }

    static func compactStamp(_ iso: String) -> String {
        String(iso.filter { $0.isNumber || $0 == "T" }.prefix(15)) + "Z"
    }
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
