import Backup
import Foundation
import Logging
import ServiceKit

/// `serve --backup-every 6h --backup-to DIR`: a backup of the data directory whenever the newest
/// in the directory is that old (at once, if there is none), the newest `keep` kept.
///
/// Metrics (on the gateway's port where it runs in the process, else the last service's): when the newest whole backup
/// was made, the interval, how long the last took, its size and how long it held writers, and
/// the failures. `HospitalBackupTooOld` fires when the newest is older than two intervals.
/// A failed backup is logged and counted, and tried again after a fifth of the interval (at most
/// five minutes); it does not make the process unready: serving goes on.
struct BackupSchedule {
    let configuration: HospitalConfiguration
    let every: Duration
    let directory: URL
    let metrics: ServiceMetrics
    let logger: Logger

    init?(_ configuration: HospitalConfiguration, metrics: ServiceMetrics, logger: Logger) {
        guard let every = configuration.backup.every, let directory = configuration.backup.directory else { return nil }
        self.configuration = configuration
        self.every = every
        self.directory = directory
        self.metrics = metrics
        self.logger = logger
    }

    var loop: Loop { Loop("scheduled backups") { try await run() } }

    private func run() async throws {
        let lastSuccess = metrics.gauge(
            "hospital_backup_last_success_timestamp_seconds",
            help: "When the newest whole backup in the backup directory was made (Unix time; 0: none).")
        let interval = metrics.gauge("hospital_backup_interval_seconds", help: "How often a backup is due.")
        let duration = metrics.gauge("hospital_backup_duration_seconds", help: "How long the last backup took.")
        let size = metrics.gauge("hospital_backup_size_bytes", help: "The size of the last backup.")
        let pause = metrics.gauge(
            "hospital_backup_write_pause_seconds", help: "How long the last backup held the databases' writers.")
        let failures = metrics.counter("hospital_backup_failures_total", help: "Backups that failed.")
        let seconds = Double(every.components.seconds)
        interval.set(seconds)
        let installation = try HospitalBackups.installation(configuration)
        var newest = Backups.list(directory, installation: installation).last.flatMap {
            Backups.date($0.manifest.createdAt)
        }
        lastSuccess.set(newest?.timeIntervalSince1970 ?? 0)
        while true {
            let wait = (newest?.addingTimeInterval(seconds) ?? Date()).timeIntervalSinceNow
            if wait > 0 { try await Task.sleep(for: .milliseconds(Int64(wait * 1000))) }
            do {
                let result = try await HospitalBackups.backup(configuration, into: directory, logger: logger)
                let made = Backups.date(result.manifest.createdAt) ?? Date()
                newest = made
                lastSuccess.set(made.timeIntervalSince1970)
                duration.set(Double(result.duration.components.seconds) + Double(result.duration.components.attoseconds) / 1e18)
                size.set(Double(result.manifest.totalBytes))
                pause.set(Double(result.manifest.writePauseMilliseconds) / 1000)
                logger.info(
                    "backup made",
                    metadata: [
                        "backup": "\(result.directory.lastPathComponent)", "bytes": "\(result.manifest.totalBytes)",
                        "write_pause_ms": "\(result.manifest.writePauseMilliseconds)",
                    ])
            } catch {
                // A stop of the process is not a failed backup.
                if Task.isCancelled || error is CancellationError { throw CancellationError() }
                failures.increment()
                logger.error("backup failed; serving goes on", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(min(300, max(1, seconds / 5))))
            }
        }
    }
}
