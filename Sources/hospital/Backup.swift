import ArgumentParser
import Backup
import Foundation
import Runtime

/// `hospital backup`: the data directory, as of one moment, while the system serves.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up the data directory while the system serves (docs/backups.md).",
        discussion: """
            Copies every SQLite database of the data directory (the services', their audit trails, the \
            event log, the accounts) as of one moment, holding writers for a few milliseconds; the result \
            files; and, when a backup key is given (HOSPITAL_BACKUP_KEY or --key-file), the keys, every \
            file then encrypted. Writes a new subdirectory of --to with a manifest (sizes, SHA-256), and \
            keeps the newest --keep. Prints the backup's directory. One backup of a data directory at a time.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The directory of backups (HOSPITAL_BACKUP_TO); each backup is a new subdirectory.")
    var to: String?

    @Option(help: "A file holding the backup key, base64 of 32 bytes (HOSPITAL_BACKUP_KEY_FILE).")
    var keyFile: String?

    @Option(help: "How many whole backups to leave in the directory (HOSPITAL_BACKUP_KEEP, default 14).")
    var keep: Int?

    @Flag(help: "Print a new backup key and exit (keep it apart from the backups).")
    var newKey = false

    @Option(
        name: .customLong("attachments-dir"),
        help: "Where the result files are (HOSPITAL_ATTACHMENTS_DIR; default: attachments in the data directory).")
    var attachmentsDir: String?

    func run() async throws {
        if newKey {
            print(BackupKey.random())
            return
        }
        var config = try common.configuration()
        if let keyFile { config.backup.keyFile = URL(fileURLWithPath: keyFile) }
        if let keep {
            guard keep > 0 else { throw ValidationError("--keep: at least 1") }
            config.backup.keep = keep
        }
        if let attachmentsDir { config.attachmentsDirectory = URL(fileURLWithPath: attachmentsDir, isDirectory: true) }
        guard let directory = to.map({ URL(fileURLWithPath: $0, isDirectory: true) }) ?? config.backup.directory else {
            throw ValidationError("--to DIR (or HOSPITAL_BACKUP_TO): where the backups go")
        }
        let logger = common.bootstrapLogging(config.logLevel)
        let result: BackupResult
        do {
            result = try await HospitalBackups.backup(config, into: directory, logger: logger)
        } catch {
            print("backup failed: \(error)")
            throw ExitCode(1)
        }
        let manifest = result.manifest
        print("backup: \(result.directory.path)")
        print(
            "  as of \(manifest.createdAt): \(manifest.files.count) files, \(manifest.totalBytes) bytes, "
                + "writers held \(manifest.writePauseMilliseconds) ms, took \(result.duration.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1))))"
        )
        if let end = manifest.eventLogEnd { print("  event log through position \(end)") }
        print("  " + (manifest.encryption.map { "encrypted with key \($0.keyID)" } ?? "NOT encrypted (no backup key)"))
        for note in manifest.notIncluded { print("  not included: \(note)") }
    }
}

/// `hospital restore`: a backup into an empty data directory, after checking all of it.
struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a backup into a data directory (docs/backups.md).",
        discussion: """
            Checks the whole backup first (manifest, format, seal, every file's size and SHA-256, the \
            build's migrations) and writes nothing if a check fails. Restores into an empty data \
            directory (--replace keeps a non-empty one, renamed aside). Every session ends: people sign \
            in again. Work done after the backup was made is not in it. Start the system on the \
            directory afterwards: the services take up the event log from their own positions.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The backup's directory (a subdirectory that `hospital backup` printed).")
    var from: String

    @Option(help: "A file holding the backup key, for an encrypted backup (HOSPITAL_BACKUP_KEY_FILE).")
    var keyFile: String?

    @Option(help: "For a backup without keys: a directory holding pii-key and audit-key (and signing-key.pem).")
    var keysFrom: String?

    @Flag(help: "For a backup without keys: HOSPITAL_PII_KEY and HOSPITAL_AUDIT_KEY are set where it will run.")
    var keysInEnvironment = false

    @Flag(help: "Restore although the data directory is not empty; it is kept, renamed aside.")
    var replace = false

    @Flag(help: "The backup was made without a backup key, though one is configured now.")
    var unencrypted = false

    @Option(
        name: .customLong("attachments-dir"),
        help: "Where the result files go (HOSPITAL_ATTACHMENTS_DIR; default: attachments in the data directory).")
    var attachmentsDir: String?

    func run() async throws {
        var config = try common.configuration()
        if let keyFile { config.backup.keyFile = URL(fileURLWithPath: keyFile) }
        if let attachmentsDir { config.attachmentsDirectory = URL(fileURLWithPath: attachmentsDir, isDirectory: true) }
        let logger = common.bootstrapLogging(config.logLevel)
        var options = HospitalBackups.RestoreOptions()
        options.replace = replace
        options.keysFrom = keysFrom.map { URL(fileURLWithPath: $0, isDirectory: true) }
        options.keysInEnvironment = keysInEnvironment
        options.allowUnencrypted = unencrypted
        let report: HospitalBackups.RestoreReport
        do {
            report = try await HospitalBackups.restore(
                from: URL(fileURLWithPath: from, isDirectory: true), config, options: options, logger: logger)
        } catch {
            print("restore refused: \(error)")
            throw ExitCode(1)
        }
        let manifest = report.manifest
        print("restored: \(report.dataDirectory.path), as of \(manifest.createdAt) (\(manifest.files.count) files)")
        if let aside = report.setAside { print("  the directory that was there: \(aside.path)") }
        print("  sessions ended: \(report.sessionsEnded) (everyone signs in again)")
        print("  lost: whatever was done after \(manifest.createdAt)")
        if let end = manifest.eventLogEnd {
            print("  on start the services take up the event log (through position \(end)) from their own positions")
        }
    }
}
