import DiagnosisService
import ExaminationService
import FluentKit
import Foundation
import HTTPProxy
import Gateway
import Identity
import Logging
import Messaging
import MessagingLocal
import PatientManagementService
import ReceptionService
import SQLKit
import ServiceKit
import ServiceLifecycle
import Storage

/// The composition root: builds the named services on the embedded default (SQLite files and
/// the local event log under the data directory), for `hospital serve` and for the tests alike.
///
/// Its long-running work (relays, consumers, sweeps, the audit writers, the HTTP servers) runs in
/// one swift-service-lifecycle `ServiceGroup` (`run`), which starts them in order and stops them
/// in reverse: unready first, then the servers (gateway first) once their requests are answered,
/// the audit writers' last entries, sweeps, relays, consumers; the databases close after.
public final class HospitalSystem: Sendable {
    public let configuration: HospitalConfiguration
    private let hosts: [ServiceHost]
    private let transport: Transport?
    private let authentication: Authentication
    /// The clinic layout this process works by, kept current.
    private let clinic: ClinicLayouts
    /// Turns every `/health/ready` of this process 503 when it begins to stop.
    let readiness: Readiness
    private let group: ServiceGroup

    private init(
        configuration: HospitalConfiguration, hosts: [ServiceHost], transport: Transport?,
        authentication: Authentication, clinic: ClinicLayouts, readiness: Readiness, local: LocalServices,
        logger: Logger
    ) {
        self.clinic = clinic
        self.readiness = readiness
        self.configuration = configuration
        self.hosts = hosts
        self.transport = transport
        self.authentication = authentication
        let loops = hosts.map(\.loops)
        // Scheduled backups report on the gateway's port where it runs here (the last host), else
        // on the last service's.
        let backups = (hosts.last?.metrics).flatMap { BackupSchedule(configuration, metrics: $0, logger: logger)?.loop }
        let supervised = ((transport?.loops ?? []) + [authentication.refresh, clinic.refresh] + loops.flatMap(\.consumers)
            + loops.flatMap(\.relays) + loops.flatMap(\.upkeep) + loops.flatMap(\.audit) + [backups].compactMap { $0 })
            .map { SupervisedLoop(loop: $0, readiness: readiness, logger: logger) as any Service }
        let servers = hosts.map { host in
            HTTPServerService(
                name: host.name.rawValue, app: host.app,
                stopping: {
                    // A stopping service is called over HTTP again, and refuses as its server does.
                    if let url = Self.localURL(of: host) { local.remove(at: url) }
                    await host.service?.serverStopping()
                }) as any Service
        }
        let drain = Draining(readiness: readiness, delay: configuration.shutdownDelay, logger: logger)
        group = ServiceGroup(
            configuration: .init(services: (supervised + servers + [drain]).map { .member($0) }, logger: logger))
    }

    /// The local accounts, where the gateway runs in this process.
    public var accounts: AccountStore? { authentication.accounts }

    /// The sessions, where the gateway runs in this process.
    public var sessions: SessionStore? { authentication.sessions }

    /// Staff's departments, where the gateway runs in this process.
    public var departments: Departments? { authentication.departments }

    /// The services of this process, in start order.
    public var services: [ServiceName] { hosts.map(\.name) }

    /// Where `service` listens in this process.
    public func url(of service: ServiceName) -> URL? {
        guard let host = hosts.first(where: { $0.name == service }), let port = host.port else { return nil }
        let name = configuration.host == "0.0.0.0" ? "127.0.0.1" : configuration.host
        return URL(string: "http://\(name):\(port)")
    }

    /// The database of `service` in this process, for inspection (tests, diagnostics).
    public func database(of service: ServiceName) -> (any SQLDatabase)? {
        hosts.first { $0.name == service }.flatMap { try? $0.app.db.sql }
    }

    /// The same database as Fluent sees it (its models' reads and writes).
    public func modelDatabase(of service: ServiceName) -> (any Database)? {
        hosts.first { $0.name == service }?.app.db
    }

    /// Begins the stop of what `run` runs (the graceful shutdown of its service group); `run`
    /// returns when everything has stopped.
    public func stop() async {
        await group.triggerGracefulShutdown()
    }

    /// Builds `services` (all of them if empty) and starts their HTTP servers: domain services
    /// first, the gateway last, so the gateway can route to the ports they actually got. Their
    /// loops start with `run`.
    public static func open(
        _ services: [ServiceName], configuration: HospitalConfiguration, logger: Logger
    ) async throws
        -> HospitalSystem
    {
        let wanted = services.isEmpty ? ServiceName.allCases : ServiceName.allCases.filter(services.contains)
        let domain = wanted.filter { $0 != .gateway }
        if configuration.backup.every != nil {
            guard let directory = configuration.backup.directory else {
                throw ConfigurationError("HOSPITAL_BACKUP_EVERY (--backup-every) needs HOSPITAL_BACKUP_TO (--backup-to)")
            }
            try HospitalBackups.refuseInside(configuration.dataDirectory, directory)
            _ = try HospitalBackups.key(configuration)
        }
        let transport: Transport? =
            domain.isEmpty
            ? nil
            : try await Transport.open(
                configuration, clientId: "hospital-" + domain.map(\.rawValue).joined(separator: "-"), logger: logger)
        let authentication: Authentication
        do {
            authentication = try await Authentication.make(
                runsGateway: wanted.contains(.gateway), configuration: configuration, logger: logger)
        } catch {
            await transport?.close()
            throw error
        }
        let clinic = await ClinicLayouts.make(
            configuration: configuration, gatewayDatabase: authentication.gatewayDatabase, logger: logger)
        var hosts: [ServiceHost] = []
        let readiness = Readiness()
        let local = LocalServices()
        do {
            for name in domain {
                let host = try await makeHost(
                    name, database: try configuration.database(of: name, among: wanted), configuration: configuration,
                    transport: transport!.events, verifier: authentication.verifier, readiness: readiness,
                    clinic: clinic.source)
                hosts.append(host)
                try await host.start(migrating: configuration.autoMigrate)
            }
            if wanted.contains(.gateway) {
                let routes = gatewayRoutes(configuration: configuration, running: hosts)
                // The services of this process are called in process (`LocalServices`).
                for running in hosts { if let url = localURL(of: running) { local.add(running.app, at: url) } }
                let host = try await ServiceHost.gateway(
                    routes: routes, configuration: configuration, authentication: authentication, clinic: clinic,
                    readiness: readiness, local: local)
                hosts.append(host)
                try await host.start()
            }
        } catch {
            // Said here: a server that failed to build may bring the process down as it goes.
            logger.error("the system did not start", metadata: ["error": "\(loggable(error))"])
            for host in hosts.reversed() {
                await host.app.server.shutdown()
                await host.close()
            }
            await transport?.close()
            await authentication.close()
            throw error
        }
        return HospitalSystem(
            configuration: configuration, hosts: hosts, transport: transport, authentication: authentication,
            clinic: clinic, readiness: readiness, local: local, logger: logger)
    }

    /// Runs the service group until a graceful shutdown (`stop`, or the enclosing group's:
    /// SIGTERM under `serve`), then closes the databases and the event log. Throws what made the
    /// stop fail (audit entries that could not be written), after closing.
    public func run() async throws {
        let outcome: Result<Void, any Error>
        do {
            try await group.run()
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        for host in hosts.reversed() { await host.close() }
        await transport?.close()
        await authentication.close()
        try outcome.get()
    }

    /// Applies pending migrations of `services` (all if empty) and returns.
    public static func migrate(
        _ services: [ServiceName], configuration: HospitalConfiguration, logger: Logger
    ) async throws {
        let wanted = (services.isEmpty ? ServiceName.allCases : services).filter { $0 != .gateway }
        guard !wanted.isEmpty else { return }
        for name in wanted {
            let host = try await makeHost(
                name, database: try configuration.database(of: name, among: wanted), configuration: configuration,
                transport: Transport.none.events)
            do {
                try await host.migrate()
                try await host.app.asyncShutdown()
            } catch {
                try? await host.app.asyncShutdown()
                throw error
            }
        }
    }

    /// Rebuilds the desk's read model from the event history, without serving.
    public static func rebuildPatientManagement(
        configuration: HospitalConfiguration, logger: Logger
    ) async throws
        -> PatientManagementService.RebuildReport
    {
        let transport = try await Transport.open(configuration, clientId: "hospital-rebuild", logger: logger)
        let host = try await makeHost(
            .patientManagement,
            database: try configuration.database(of: .patientManagement, among: [.patientManagement]),
            configuration: configuration, transport: transport.events)
        do {
            try await host.migrate()
            let report = try await (host.service as! PatientManagementService).rebuild()
            try await host.app.asyncShutdown()
            await transport.close()
            return report
        } catch {
            try? await host.app.asyncShutdown()
            await transport.close()
            throw error
        }
    }

    /// The rebuild, on a running system (used by tests; the admin endpoint does the same).
    public func rebuildPatientManagement() async throws -> PatientManagementService.RebuildReport {
        guard let service = hosts.first(where: { $0.name == .patientManagement })?.service as? PatientManagementService
        else { throw ConfigurationError("patient-management does not run in this process") }
        return try await service.rebuild()
    }

    private static func makeHost(
        _ name: ServiceName, database: URL?, configuration: HospitalConfiguration, transport: any EventTransport,
        verifier: TokenVerifier = .refusingEveryone, readiness: Readiness = Readiness(), clinic: ClinicSource? = nil
    ) async throws -> ServiceHost {
        guard let service = name.service else {
            throw ConfigurationError("\(name) is built by gatewayRoutes, not as a domain service")
        }
        return try await ServiceHost.service(
            service, name: name, database: database, configuration: configuration, transport: transport,
            verifier: verifier, readiness: readiness, clinic: clinic ?? ClinicSource(configuration.clinic))
    }

    /// Every prefix of every catalog service, to where that service listens: in this process
    /// where it actually listens, elsewhere its configured address.
    /// Where the gateway calls `host`, a service of this process.
    private static func localURL(of host: ServiceHost) -> URL? {
        host.port.map { URL(string: "http://127.0.0.1:\($0)")! }
    }

    private static func gatewayRoutes(configuration: HospitalConfiguration, running: [ServiceHost]) -> [Gateway.Route] {
        ServiceCatalog.domain.flatMap { service in
            let name = ServiceName(service)
            let upstream: URL
            if let local = running.first(where: { $0.name == name }).flatMap(localURL(of:)) {
                upstream = local
            } else {
                upstream = configuration.upstream(of: name)
            }
            return service.routePrefixes.map { prefix in
                Gateway.Route(
                    prefix: prefix, service: service.name, upstream: upstream,
                    streamed: service.streamedRoutes.filter { $0.path.split(separator: "/").first.map(String.init) == prefix })
            }
        }
    }
}

/// `hospital serve` under swift-service-lifecycle: SIGINT or SIGTERM shut it down gracefully.
public struct ServingSystem: Service, CustomStringConvertible {
    /// What the lifecycle logs of it: the services, never the configuration (it holds secrets).
    public var description: String { "ServingSystem(\(services.map(\.rawValue).joined(separator: ", ")))" }

    let services: [ServiceName]
    let configuration: HospitalConfiguration
    let logger: Logger
    let onStarted: @Sendable (HospitalSystem) -> Void

    public init(
        services: [ServiceName], configuration: HospitalConfiguration, logger: Logger,
        onStarted: @escaping @Sendable (HospitalSystem) -> Void
    ) {
        self.services = services
        self.configuration = configuration
        self.logger = logger
        self.onStarted = onStarted
    }

    public func run() async throws {
        let system = try await HospitalSystem.open(services, configuration: configuration, logger: logger)
        onStarted(system)
        // The system's own group stops when this one's does (SIGTERM, SIGINT).
        try await system.run()
    }
}
