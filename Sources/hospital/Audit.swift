import ArgumentParser
import Audit
import Foundation
import Runtime

/// `hospital audit verify`: checks every service's audit trail for tampering.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The audit trail of patient data.", subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check each service's audit chain; name the first entry that was changed or removed.",
            discussion: """
                Reads the audit-<service>.sqlite files of the data directory, or on PostgreSQL each service's \
                database (HOSPITAL_<SERVICE>_DATABASE_URL, or --database with --service), with the audit key \
                (HOSPITAL_AUDIT_KEY, or audit-key in the data directory; HOSPITAL_AUDIT_OLD_KEYS for retired ones). \
                Holds each trail against the checkpoints published on the event log (Kafka, or the data \
                directory's events.sqlite) and, with --log, those in log files of `hospital serve`. \
                Safe while the system runs. Exits 1 if a trail was changed, cut or rewritten.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "With --database: the service whose database it is.")
        var service: ServiceName?

        @Option(name: .customLong("log"), help: "A log file of `hospital serve` to read checkpoints from (repeatable).")
        var logFiles: [String] = []

        @Flag(help: "Pass although the event log's checkpoints could not be read (the newest entries then go unchecked).")
        var withoutCheckpoints = false

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let (results, source) = try await HospitalSystem.verifyAuditTrails(
                configuration: config, logger: logger, service: service,
                logFiles: logFiles.map { URL(fileURLWithPath: $0) })
            guard !results.isEmpty else { throw ValidationError("No audit trail in \(config.dataDirectory.path).") }
            print("checkpoints: \(source.description)")
            var broken = false
            for (service, result) in results {
                if let entry = result.broken {
                    print(
                        "\(service): BROKEN at entry \(entry): \(result.reason ?? "") (\(result.checked) entries before it check out)"
                    )
                    broken = true
                    continue
                }
                var notes: [String] = []
                if let checkpoint = result.checkpoint {
                    notes.append("matches its checkpoint of \(checkpoint.date) at entry \(checkpoint.seq)")
                } else {
                    notes.append("no checkpoint found: its newest entries were not checked against one")
                }
                if result.legacy > 0 { notes.append("\(result.legacy) entries from before the audit key (unkeyed)") }
                if result.forgedCheckpoints > 0 {
                    notes.append("\(result.forgedCheckpoints) checkpoints not sealed by the audit key were ignored")
                }
                print("\(service): ok, \(result.checked) entries; " + notes.joined(separator: "; "))
            }
            if broken { throw ExitCode(1) }
            if source.failed, !withoutCheckpoints {
                print("NOT CHECKED: the newest entries were held against no checkpoint (\(source.description)); --without-checkpoints to pass anyway")
                throw ExitCode(1)
            }
        }
    }
}
