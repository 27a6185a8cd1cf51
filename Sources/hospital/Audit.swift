import ArgumentParser
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
                database (HOSPITAL_<SERVICE>_DATABASE_URL, or --database with --service). Safe while the system runs.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: "With --database: the service whose database it is.")
        var service: ServiceName?

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let results = try await HospitalSystem.verifyAuditTrails(
                configuration: config, logger: logger, service: service)
            guard !results.isEmpty else { throw ValidationError("No audit trail in \(config.dataDirectory.path).") }
            var broken = false
            for result in results {
                if let entry = result.broken {
                    print("\(result.service): BROKEN at entry \(entry) (\(result.checked) entries before it check out)")
                    broken = true
                } else {
                    print("\(result.service): ok, \(result.checked) entries")
                }
            }
            if broken { throw ExitCode(1) }
        }
    }
}
