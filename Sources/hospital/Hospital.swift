import ArgumentParser
import Foundation
import Logging
import Runtime
import ServiceLifecycle

/// `hospital`: one binary that runs any part of the outpatient system.
@main
struct Hospital: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The outpatient workflow: reception, diagnosis, examination and the desk's board.",
        subcommands: [
            Serve.self, Migrate.self, Rebuild.self, Users.self, Audit.self, BackupCommand.self, RestoreCommand.self,
            SettingsReference.self, Bench.self, BenchFloorServer.self, Dev.self,
        ])

    /// Reads the command line with each service's own port option (`--reception-port 8082`)
    /// spelled as the one option it stands for (`--port reception=8082`).
    static func main() async {
        await main(Serve.spellingPortOptions(Array(CommandLine.arguments.dropFirst())))
    }
}

/// Options every subcommand shares; each overrides its environment variable.
struct CommonOptions: ParsableArguments {
    @Option(
        name: .customLong("data-dir"),
        help: "Directory of the SQLite databases and the event log (HOSPITAL_DATA_DIR, default ./hospital-data).")
    var dataDir: String?

    @Option(
        name: .customLong("log-level"),
        help: "trace, debug, info, notice, warning, error or critical (HOSPITAL_LOG_LEVEL, default info).")
    var logLevel: String?

    @Option(
        name: .customLong("database"),
        help: "PostgreSQL URL of the one service this process runs (HOSPITAL_DATABASE_URL; default: a SQLite file).")
    var database: String?

    @Option(
        name: .customLong("kafka-brokers"),
        help: "Apache Kafka bootstrap servers, host:port[,…] (HOSPITAL_KAFKA_BROKERS; default: the local event log).")
    var kafkaBrokers: String?

    func configuration(overriding variables: [String: String] = [:]) throws -> HospitalConfiguration {
        var config = try HospitalConfiguration.from(
            environment: ProcessInfo.processInfo.environment.merging(variables) { $1 })
        if let kafkaBrokers { config.kafkaBrokers = kafkaBrokers }
        if let database { config.databaseURL = try HospitalConfiguration.postgresURL(database, "--database") }
        if let dataDir { config.dataDirectory = URL(fileURLWithPath: dataDir, isDirectory: true) }
        if let logLevel { config.logLevel = try HospitalConfiguration.logLevel(logLevel) }
        return config
    }

    func bootstrapLogging(_ level: Logger.Level) -> Logger {
        // Logs go to standard error; standard output carries only what the command reports.
        // HOSPITAL_LOG_FORMAT: text (default) or json (one object a line, for Loki).
        let raw = ProcessInfo.processInfo.environment["HOSPITAL_LOG_FORMAT"] ?? "text"
        let format = LogFormat(rawValue: raw) ?? .text
        LogFormat.bootstrap(format, level: level)
        let logger = Logger(label: "hospital")
        if LogFormat(rawValue: raw) == nil {
            logger.warning("HOSPITAL_LOG_FORMAT is text or json; using text", metadata: ["given": "\(raw)"])
        }
        return logger
    }
}

extension ServiceName: ExpressibleByArgument {}

struct Serve: AsyncParsableCommand {
    /// `--reception-port 8082` and `--reception-port=8082` as `--port reception=8082`, for every
    /// service of the catalog.
    static func spellingPortOptions(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            let (option, value) =
                argument.firstIndex(of: "=").map { (String(argument[..<$0]), String(argument[argument.index(after: $0)...])) }
                ?? (argument, nil)
            guard option.hasPrefix("--"), option.hasSuffix("-port"),
                let service = ServiceName(rawValue: String(option.dropFirst(2).dropLast(5)))
            else {
                result.append(argument)
                continue
            }
            if let value {
                result += ["--port", "\(service.rawValue)=\(value)"]
            } else if index < arguments.endIndex {
                result += ["--port", "\(service.rawValue)=\(arguments[index])"]
                index += 1
            } else {
                result.append(argument)  // the parser says what is missing
            }
        }
        return result
    }

    static let configuration = CommandConfiguration(
        abstract: "Run services (all of them if none is named).",
        discussion: "Services: \(ServiceName.allCases.map(\.rawValue).joined(separator: ", ")).")

    @Argument(help: "The services to run in this process.")
    var services: [ServiceName] = []

    @OptionGroup var common: CommonOptions

    @Option(help: "Address to listen on (HOSPITAL_HOST, default 127.0.0.1).")
    var host: String?

    @Flag(name: .customLong("no-migrate"), help: "Do not apply pending migrations (HOSPITAL_AUTO_MIGRATE=false).")
    var noMigrate = false

    @Option(
        name: .customLong("port"),
        help: ArgumentHelp(
            "Where a service listens, as SERVICE=PORT; may be repeated. Also written --SERVICE-port PORT.",
            valueName: "service=port"))
    var ports: [String] = []

    @Option(
        name: .customLong("attachments-dir"),
        help: "Where examination result files go (HOSPITAL_ATTACHMENTS_DIR, default: attachments in the data directory).")
    var attachmentsDir: String?

    @Option(
        name: .customLong("oidc-issuer"),
        help: "Sign in through this OpenID Connect provider; local accounts are off (HOSPITAL_OIDC_ISSUER).")
    var oidcIssuer: String?
    @Option(name: .customLong("oidc-client-id"), help: "This system's client id at the provider (HOSPITAL_OIDC_CLIENT_ID).")
    var oidcClientID: String?
    @Option(
        name: .customLong("oidc-audience"),
        help: "The audience API access tokens must carry (HOSPITAL_OIDC_AUDIENCE, default: the client id).")
    var oidcAudience: String?
    @Option(
        name: .customLong("oidc-roles-claim"),
        help: "The claim with the user's roles, dotted, e.g. realm_access.roles (HOSPITAL_OIDC_ROLES_CLAIM, default roles).")
    var oidcRolesClaim: String?

    @Option(
        name: .customLong("backup-every"),
        help: "Back up the data directory this often, e.g. 6h (HOSPITAL_BACKUP_EVERY; needs --backup-to; docs/backups.md).")
    var backupEvery: String?
    @Option(name: .customLong("backup-to"), help: "The directory of scheduled backups (HOSPITAL_BACKUP_TO).")
    var backupTo: String?

    func run() async throws {
        // The OIDC and backup options stand for their variables (the client secret has none:
        // never on a command line, where ps shows it).
        let overriding = [
            "HOSPITAL_OIDC_ISSUER": oidcIssuer, "HOSPITAL_OIDC_CLIENT_ID": oidcClientID,
            "HOSPITAL_OIDC_AUDIENCE": oidcAudience, "HOSPITAL_OIDC_ROLES_CLAIM": oidcRolesClaim,
            "HOSPITAL_BACKUP_EVERY": backupEvery, "HOSPITAL_BACKUP_TO": backupTo,
        ].compactMapValues { $0 }
        var config = try common.configuration(overriding: overriding)
        if let host { config.host = host }
        if let attachmentsDir { config.attachmentsDirectory = URL(fileURLWithPath: attachmentsDir, isDirectory: true) }
        if noMigrate { config.autoMigrate = false }
        for entry in ports {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let service = ServiceName(rawValue: parts[0]) else {
                throw ValidationError(
                    "--port takes SERVICE=PORT, a service being one of \(ServiceName.allCases.map(\.rawValue).joined(separator: ", ")); not \(entry)")
            }
            config.ports[service] = try HospitalConfiguration.port(parts[1], "--\(service.rawValue)-port")
        }
        let logger = common.bootstrapLogging(config.logLevel)
        let dataDirectory = config.dataDirectory.path
        // While it runs, a restore into this data directory is refused.
        let servingLock = try HospitalBackups.holdServing(config.dataDirectory)
        defer { close(servingLock) }
        let serving = ServingSystem(services: services, configuration: config, logger: logger) { system in
            var lines = system.services.compactMap { service in
                system.url(of: service).map { "\(service.rawValue) listening on \($0.absoluteString)" }
            }
            lines.append("data directory: \(dataDirectory)")
            // Unbuffered: tests and supervisors read these lines while the process runs.
            FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        }
        // Traces (when an OTLP endpoint is set) are exported until the services have stopped.
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let tracing = try TracingSetup.bootstrap(
            services: services.isEmpty ? ServiceName.allCases : services, logger: logger)
        {
            members.append(.init(service: tracing))
        }
        members.append(.init(service: serving))
        let group = ServiceGroup(
            configuration: .init(services: members, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct SettingsReference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settings",
        abstract: "Print every HOSPITAL_* setting: option, default, who reads it, what it means (docs/configuration.md).")

    func run() throws {
        print(Settings.markdown(), terminator: "")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending schema migrations and exit.")

    @Argument(help: "The services whose databases to migrate (all if none is named).")
    var services: [ServiceName] = []

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let config = try common.configuration()
        let logger = common.bootstrapLogging(config.logLevel)
        try await HospitalSystem.migrate(services, configuration: config, logger: logger)
        print(
            "migrated: \((services.isEmpty ? ServiceName.allCases.filter { $0 != .gateway } : services).map(\.rawValue).joined(separator: ", "))"
        )
    }
}

struct Rebuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild a read model from the event history.",
        discussion: "Safe while the system runs: the rebuilt rows replace the old ones in one transaction.")

    @Argument(help: "The read model to rebuild: patient-management.")
    var readModel: ServiceName

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard readModel == .patientManagement else { throw ValidationError("only patient-management is a read model") }
    }

    func run() async throws {
        let config = try common.configuration()
        let logger = common.bootstrapLogging(config.logLevel)
        let report = try await HospitalSystem.rebuildPatientManagement(configuration: config, logger: logger)
        print("rebuilt patient-management from \(report.events) events: \(report.visits) visits")
    }
}
