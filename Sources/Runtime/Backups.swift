import Audit
import Backup
import Foundation
import Logging
import MessagingLocal
import ServiceKit

/// Backups of the embedded default's data directory, and restores from them (docs/backups.md).
///
/// What is backed up: every SQLite database of the data directory (each service's, their audit
/// trails, the local event log, the accounts and sessions), all as of one moment; the result
/// files; the installation's id; and, only when the backup is encrypted, the keys (the
/// resident numbers', the audit trail's, the tokens' signing key). A backup without a key holds
/// no key: a copy of the resident numbers' key beside their ciphertext would open them.
public enum HospitalBackups {
    /// The key files of the data directory a backup may hold.
    static let keyFiles = ["pii-key", "audit-key", "signing-key.pem"]
    /// The data directory's id, created once.
    static let installationFile = "installation-id"

    /// The data directory's id (`installation-id`, made on first use): a backup names it, and a
    /// directory of backups may hold several installations' backups.
    static func installation(_ configuration: HospitalConfiguration) throws -> String {
        try DataDirectory.secret(configuration.dataDirectory.appendingPathComponent(installationFile)) {
            UUID().uuidString.lowercased()
        }.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `serve` holds a shared lock on `.serve.lock` in its data directory for as long as it runs
    /// (the system lets it go however the process ends); a restore refuses a directory that
    /// something serves from. Returns the descriptor to close when serving ends.
    public static func holdServing(_ dataDirectory: URL) throws -> Int32 {
        try DataDirectory.prepare(dataDirectory)
        let fd = open(dataDirectory.appendingPathComponent(".serve.lock").path, O_RDWR | O_CREAT, 0o600)
        guard fd >= 0, flock(fd, LOCK_SH) == 0 else {
            throw ConfigurationError("cannot lock \(dataDirectory.path)/.serve.lock")
        }
        return fd
    }

    static func isServed(_ dataDirectory: URL) -> Bool {
        let fd = open(dataDirectory.appendingPathComponent(".serve.lock").path, O_RDWR)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return true }
        flock(fd, LOCK_UN)
        return false
    }

    /// The backup key the configuration names, if any (a file wins over the variable).
    public static func key(_ configuration: HospitalConfiguration) throws -> BackupKey? {
        if let file = configuration.backup.keyFile {
            guard let text = try? String(contentsOf: file, encoding: .utf8) else {
                throw ConfigurationError("cannot read the backup key file \(file.path)")
            }
            return try BackupKey(base64: text, name: file.path)
        }
        return try configuration.backup.key.map { try BackupKey(base64: $0, name: "HOSPITAL_BACKUP_KEY") }
    }

    /// One backup of the data directory into `directory` (a directory of backups), leaving the
    /// newest `configuration.backup.keep`.
    public static func backup(
        _ configuration: HospitalConfiguration, into directory: URL, logger: Logger
    ) async throws -> BackupResult {
        let key = try key(configuration)
        let data = configuration.dataDirectory
        guard FileManager.default.fileExists(atPath: data.path) else {
            throw ConfigurationError("no data directory at \(data.path)")
        }
        try refuseInside(data, directory)
        let installation = try installation(configuration)
        let names = (try FileManager.default.contentsOfDirectory(atPath: data.path)).sorted()
        let databases = names.filter { $0.hasSuffix(".sqlite") }.map { (name: $0, file: data.appendingPathComponent($0)) }
        var files: [(name: String, kind: String, file: URL)] = [
            (installationFile, "installation", data.appendingPathComponent(installationFile))
        ]
        var notIncluded: [String] = []
        let keys = keyFiles.filter { names.contains($0) }
        if key != nil {
            files += keys.map { ($0, "key", data.appendingPathComponent($0)) }
        } else if !keys.isEmpty {
            notIncluded.append(
                "the keys (\(keys.joined(separator: ", "))): the backup is not encrypted, and a key must not lie beside what it opens; keep a copy of them apart, or give a backup key")
        }
        let auth = configuration.auth
        for (variable, set) in [
            ("HOSPITAL_PII_KEY", auth.piiKey != nil), ("HOSPITAL_AUDIT_KEY", auth.auditKey != nil),
            ("HOSPITAL_SIGNING_KEY", auth.signingKeyPEM != nil || auth.signingKeyFile != nil),
        ] where set {
            notIncluded.append("\(variable): given from outside the data directory; keep it apart")
        }
        let postgres = postgresDatabases(configuration)
        let attachments = configuration.attachmentsDirectory ?? data.appendingPathComponent("attachments", isDirectory: true)
        if configuration.attachmentsDirectory != nil, !FileManager.default.fileExists(atPath: attachments.path) {
            throw ConfigurationError("the attachments directory \(attachments.path) is not there (not mounted?)")
        }
        let plan = BackupPlan(
            databases: databases, postgres: postgres, files: files,
            attachments: FileManager.default.fileExists(atPath: attachments.path) ? attachments : nil,
            installation: installation, notIncluded: notIncluded
        ) { copies in
            let log = copies.appendingPathComponent(LocalEventLog.fileName)
            let end = FileManager.default.fileExists(atPath: log.path)
                ? try await LocalEventLog.lastPosition(in: log, logger: logger) : nil
            var migrations: [String] = []
            for database in databases {
                let copy = copies.appendingPathComponent(database.name)
                let fluent = try await SQLiteSnapshot.strings(
                    "SELECT name FROM sqlite_schema WHERE name = '_fluent_migrations'", in: copy, logger: logger)
                guard !fluent.isEmpty else { continue }
                migrations += try await SQLiteSnapshot.strings(
                    "SELECT name FROM _fluent_migrations", in: copy, logger: logger)
            }
            return (end, Array(Set(migrations)))
        } postgresMigrations: { database in
            guard try await !database.read("SELECT tablename::text FROM pg_tables WHERE tablename = '_fluent_migrations'").isEmpty
            else { return [] }
            return try await database.read("SELECT name FROM _fluent_migrations")
        } storedFiles: { copies, snapshots in
            // The services that keep files say which rows name them.
            var names = Set<String>()
            for service in ServiceCatalog.domain {
                guard let query = service.storedFilesQuery else { continue }
                if let snapshot = snapshots.first(where: { $0.name == service.name }) {
                    names.formUnion(try await snapshot.read(query))
                    continue
                }
                let copy = copies.appendingPathComponent("\(service.name).sqlite")
                guard FileManager.default.fileExists(atPath: copy.path) else { continue }
                let table = try await SQLiteSnapshot.strings(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'attachments'", in: copy, logger: logger)
                guard !table.isEmpty else { continue }
                names.formUnion(try await SQLiteSnapshot.strings(query, in: copy, logger: logger))
            }
            return names
        }
        return try await Backups.make(
            plan, into: directory, scratch: data, lock: data.appendingPathComponent(".backup.lock"), key: key,
            keep: configuration.backup.keep, logger: logger)
    }

    /// The PostgreSQL databases of the configuration, by the name of what owns them: each
    /// service's (`HOSPITAL_<SERVICE>_DATABASE_URL`) and the gateway's.
    static func postgresDatabases(_ configuration: HospitalConfiguration) -> [(name: String, url: URL)] {
        ServiceName.allCases.compactMap { service in
            let url = service == .gateway ? configuration.gatewayDatabaseURL : configuration.serviceDatabaseURLs[service]
            return url.map { (service.rawValue, $0) }
        }
    }

    /// Backups inside the data directory they back up would be lost with it (and backed up again).
    static func refuseInside(_ data: URL, _ directory: URL) throws {
        let inside = data.standardizedFileURL.path
        let target = directory.standardizedFileURL.path
        guard target != inside, !target.hasPrefix(inside + "/") else {
            throw ConfigurationError("the backups cannot go inside the data directory they back up (\(directory.path))")
        }
    }

    /// Every migration this build has: a backup whose databases have had another was made by
    /// a newer build.
    static var knownMigrations: Set<String> {
        var names = Set(ServiceCatalog.domain.flatMap { $0.migrations.map(\.name) })
        names.formUnion(AuditTrail.migrations(engine: .sqlite).map(\.name))
        return names
    }

    public struct RestoreOptions: Sendable {
        /// Restore into a data directory that is not empty: it is kept, renamed aside.
        public var replace = false
        /// Where the keys are, for a backup that holds none (it was not encrypted).
        public var keysFrom: URL?
        /// The keys are given by the environment (`HOSPITAL_PII_KEY`, `HOSPITAL_AUDIT_KEY`).
        public var keysInEnvironment = false
        /// A backup key is configured, and the backup is one made without it.
        public var allowUnencrypted = false
        public init() {}
    }

    public struct RestoreReport: Sendable {
        public var manifest: BackupManifest
        public var dataDirectory: URL
        /// Where the data directory that was replaced now is.
        public var setAside: URL?
        public var sessionsEnded: Int
    }

    /// Restores the backup at `source` into the configuration's data directory (and its
    /// attachments directory), after checking all of it; nothing is written when a check fails.
    public static func restore(
        from source: URL, _ configuration: HospitalConfiguration, options: RestoreOptions, logger: Logger
    ) async throws -> RestoreReport {
        let manager = FileManager.default
        let key = try key(configuration)
        let manifest = try BackupReader.check(source, key: key, allowUnencrypted: options.allowUnencrypted)
        let unknown = Set(manifest.migrations).subtracting(knownMigrations)
        guard unknown.isEmpty else {
            throw ConfigurationError(
                "the backup was made by a newer build: its databases have migrations this build does not know (\(unknown.sorted().joined(separator: ", "))); restore it with that build")
        }
        let hasKeys = manifest.files.contains { $0.kind == "key" }
        if !hasKeys, options.keysFrom == nil, !options.keysInEnvironment {
            throw ConfigurationError(
                "the backup holds no keys (it is not encrypted): give --keys-from DIR (a directory with pii-key and audit-key), or --keys-in-environment when HOSPITAL_PII_KEY and HOSPITAL_AUDIT_KEY are set where it will run")
        }
        if let keysFrom = options.keysFrom {
            for required in ["pii-key", "audit-key"] where !manager.fileExists(atPath: keysFrom.appendingPathComponent(required).path) {
                throw ConfigurationError("no \(required) in \(keysFrom.path)")
            }
        }
        // Each PostgreSQL database of the backup goes into the configuration's database of its
        // owner, which must be empty.
        let configured = Dictionary(postgresDatabases(configuration), uniquingKeysWith: { first, _ in first })
        var postgres: [(entry: BackupManifest.Entry, name: String, url: URL)] = []
        for entry in manifest.files where entry.kind == "postgres" {
            let name = String(entry.path.dropFirst("postgres/".count).dropLast(".pgdump".count))
            guard let url = configured[name] else {
                let variable = name == "gateway" ? "HOSPITAL_GATEWAY_DATABASE_URL" : "HOSPITAL_\(name.uppercased().replacingOccurrences(of: "-", with: "_"))_DATABASE_URL"
                throw ConfigurationError("the backup holds the \(name) database (PostgreSQL): give \(variable), an empty database to restore it into")
            }
            guard try await PostgresSnapshot.isEmpty(url, logger: logger) else {
                throw ConfigurationError("the \(name) database to restore into is not empty: restore into an empty database")
            }
            postgres.append((entry, name, url))
        }
        let target = configuration.dataDirectory.standardizedFileURL
        guard !isServed(target) else {
            throw ConfigurationError("\(target.path) is being served (hospital serve runs on it): stop it before restoring")
        }
        let customAttachments = configuration.attachmentsDirectory?.standardizedFileURL
        let nonEmpty = [target, customAttachments].compactMap { $0 }.filter {
            !((try? manager.contentsOfDirectory(atPath: $0.path)) ?? []).isEmpty
        }
        if !nonEmpty.isEmpty, !options.replace {
            throw ConfigurationError(
                "\(nonEmpty.map(\.path).joined(separator: " and ")) is not empty: restore into an empty directory, or give --replace (the directory is kept, renamed aside)")
        }
        // Everything goes into a directory beside the target first, renamed into place at the end.
        let stamp = String(manifest.backupID.prefix(8))
        let staging = target.deletingLastPathComponent().appendingPathComponent(
            ".\(target.lastPathComponent).restoring-\(stamp)", isDirectory: true)
        let stagingAttachments = customAttachments.map {
            $0.deletingLastPathComponent().appendingPathComponent(".\($0.lastPathComponent).restoring-\(stamp)", isDirectory: true)
        }
        try? manager.removeItem(at: staging)
        if let stagingAttachments { try? manager.removeItem(at: stagingAttachments) }
        // What has been written so far, undone if a later step fails: nothing is left half done.
        var restoredDatabases: [(name: String, url: URL)] = []
        var moved: [(from: URL, to: URL)] = []
        do {
            try manager.createDirectory(at: staging, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try BackupReader.extract(
                source, manifest: manifest, key: key, dataDirectory: staging,
                attachments: stagingAttachments ?? staging.appendingPathComponent("attachments", isDirectory: true),
                postgres: staging.appendingPathComponent(".postgres", isDirectory: true))
            if let keysFrom = options.keysFrom {
                for name in keyFiles where manager.fileExists(atPath: keysFrom.appendingPathComponent(name).path) {
                    let destination = staging.appendingPathComponent(name)
                    try? manager.removeItem(at: destination)
                    try manager.copyItem(at: keysFrom.appendingPathComponent(name), to: destination)
                    chmod(destination.path, 0o600)
                }
            }
            for entry in manifest.files where entry.kind == "database" {
                let file = staging.appendingPathComponent(String(entry.path.dropFirst("data/".count)))
                let check = try await SQLiteSnapshot.strings("PRAGMA quick_check", in: file, logger: logger)
                guard check == ["ok"] else {
                    throw ConfigurationError("\(entry.path): the restored database fails SQLite's check: \(check.prefix(3))")
                }
            }
            // The PostgreSQL databases last, each in one transaction.
            for database in postgres {
                let dump = staging.appendingPathComponent(".postgres/\(database.name).pgdump")
                restoredDatabases.append((database.name, database.url))
                try await PostgresSnapshot.restore(dump, into: database.url, name: database.name)
                try manager.removeItem(at: dump)
            }
            try? manager.removeItem(at: staging.appendingPathComponent(".postgres"))
            // Sessions ended after the backup was made would live again: every session ends.
            var restored = configuration
            restored.dataDirectory = staging
            let ended =
                manager.fileExists(atPath: staging.appendingPathComponent("accounts.sqlite").path)
                    || configuration.gatewayDatabaseURL != nil && postgres.contains { $0.name == "gateway" }
                ? try await endEverySession(restored, logger: logger) : 0
            var setAside: URL?
            for (from, to) in [(staging, target), (stagingAttachments, customAttachments)] {
                guard let from, let to else { continue }
                if manager.fileExists(atPath: to.path) {
                    if ((try? manager.contentsOfDirectory(atPath: to.path)) ?? []).isEmpty {
                        try manager.removeItem(at: to)
                    } else {
                        let aside = to.deletingLastPathComponent().appendingPathComponent(
                            "\(to.lastPathComponent).before-restore-\(stamp)", isDirectory: true)
                        try manager.moveItem(at: to, to: aside)
                        moved.append((to, aside))
                        if to == target { setAside = aside }
                    }
                }
                try manager.moveItem(at: from, to: to)
                moved.append((from, to))
            }
            return RestoreReport(manifest: manifest, dataDirectory: target, setAside: setAside, sessionsEnded: ended)
        } catch {
            for (from, to) in moved.reversed() { try? manager.moveItem(at: to, to: from) }
            for database in restoredDatabases {
                do {
                    try await PostgresSnapshot.empty(database.url, logger: logger)
                } catch {
                    logger.error(
                        "restore: could not empty a database it had begun to restore; empty it before trying again",
                        metadata: ["database": "\(database.name)", "error": "\(error)"])
                }
            }
            try? manager.removeItem(at: staging)
            if let stagingAttachments { try? manager.removeItem(at: stagingAttachments) }
            throw error
        }
    }

    /// Ends every live session and voids every token issued until now, of every account.
    private static func endEverySession(_ configuration: HospitalConfiguration, logger: Logger) async throws -> Int {
        try await HospitalSystem.withAccounts(configuration: configuration, logger: logger) { accounts, sessions in
            var names = Set(try await accounts.list().map(\.username))
            names.formUnion(try await sessions.list().map(\.username))
            var ended = 0
            for name in names.sorted() {
                ended += try await sessions.endAll(username: name, reason: "restored from a backup")
            }
            return ended
        }
    }
}
