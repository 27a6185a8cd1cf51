import Audit
import Fluent
import FluentPostgresDriver
import FluentSQLiteDriver
import Foundation
import Gateway
import HTTPProxy
import Identity
import Logging
import Messaging
import MessagingLocal
import NIOCore
import NIOPosix
import SQLKit
import ServiceKit
import Storage
import Synchronization
import Vapor
import Web

/// One running service: its HTTP server, database, outbox relay and consumer.
final class ServiceHost: Sendable {
    let name: ServiceName
    let app: Application
    /// The domain service it runs (nil for the gateway).
    let service: (any HospitalService)?
    private let relay: OutboxRelay?
    private let consumer: EventConsumer?
    private let transport: (any EventTransport)?
    private let store: ServiceStore?
    private let retention: RetentionSettings
    private let audit: AuditTrail?
    /// What its port's metrics path serves.
    let metrics: ServiceMetrics

    private init(
        name: ServiceName, app: Application, metrics: ServiceMetrics, service: (any HospitalService)?, relay: OutboxRelay?,
        consumer: EventConsumer?, transport: (any EventTransport)?, store: ServiceStore? = nil,
        retention: RetentionSettings = .init(), audit: AuditTrail? = nil
    ) {
        self.audit = audit
        self.metrics = metrics
        self.name = name
        self.app = app
        self.service = service
        self.relay = relay
        self.consumer = consumer
        self.transport = transport
        self.store = store
        self.retention = retention
    }

    /// The port the server is bound to (differs from the configured one when that was 0).
    var port: Int? { app.http.server.shared.localAddress?.port }

    /// Builds a domain service with its own database: PostgreSQL at `database`, or else a
    /// SQLite file under the data directory.
    static func service<S: HospitalService>(
        _ type: S.Type, name: ServiceName, database: URL?, configuration: HospitalConfiguration,
        transport: any EventTransport, verifier: TokenVerifier, readiness: Readiness = Readiness(),
        clinic: ClinicSource
    ) async throws -> ServiceHost {
        let (app, metrics) = try await makeApplication(name: name, configuration: configuration)
        // Every route of a service's own port: a verified token and a role the table allows.
        app.middleware.use(
            AccessControl(verifier: verifier, openPaths: Set([configuration.metricsPath].compactMap { $0 })))
        // SQL is logged at trace (PostgreSQL) or not at all (SQLite), and the service's own
        // database handle never logs below info: bound values would put patient data in the logs.
        if let database {
            app.databases.use(
                try .postgres(
                    url: database, maxConnectionsPerEventLoop: configuration.databasePoolSize, sqlLogLevel: .trace),
                as: .psql)
        } else {
            // A thread for each SQLite connection (the data and audit files, one connection per
            // event loop each): a statement waiting for a lock never holds back another connection's.
            let loops = Array(app.eventLoopGroup.makeIterator()).count
            app.threadPool = NIOThreadPool(numberOfThreads: 2 * loops)
            let path = configuration.dataDirectory.appendingPathComponent("\(S.name).sqlite").path
            // Patient data: the directory 0700, the file 0600 (SQLite gives its journals the same).
            try DataDirectory.prepare(configuration.dataDirectory)
            try DataDirectory.createPrivateFile(URL(fileURLWithPath: path))
            app.databases.use(
                .sqlite(.file(path), dataEncoder: .init(), dataDecoder: .init(), sqlLogLevel: nil), as: .sqlite)
        }
        app.migrations.add(S.migrations)
        var databaseLogger = app.logger
        databaseLogger.logLevel = max(app.logger.logLevel, .info)
        let quietLogger = databaseLogger
        // The audit trail. SQLite: a file of its own, so its writes never wait for the commands'
        // or hold them up. PostgreSQL (no write queue there): a table in the service's database,
        // migrated with it (a second migrator on the same database would race the first).
        let auditDatabase: DatabaseID
        if database == nil {
            let path = configuration.dataDirectory.appendingPathComponent("audit-\(S.name).sqlite").path
            try DataDirectory.createPrivateFile(URL(fileURLWithPath: path))
            app.databases.use(
                .sqlite(.file(path), dataEncoder: .init(), dataDecoder: .init(), sqlLogLevel: nil), as: .audit)
            auditDatabase = .audit
        } else {
            auditDatabase = .psql
        }
        let engine: DatabaseEngine = database == nil ? .sqlite : .postgresql
        let auditMigrations = AuditTrail.migrations(engine: engine.kind)
        if database == nil {
            app.migrations.add(auditMigrations, to: .audit)
        } else {
            // The default database's migrations, in order.
            app.migrations.add(auditMigrations)
        }
        // The SQLite files must stay what they were opened as: every write checks them.
        let file = database == nil
            ? DatabaseFile(
                path: configuration.dataDirectory.appendingPathComponent("\(S.name).sqlite").path, logger: app.logger)
            : nil
        let auditFile = database == nil
            ? DatabaseFile(
                path: configuration.dataDirectory.appendingPathComponent("audit-\(S.name).sqlite").path,
                logger: app.logger) : nil
        let trail = AuditTrail(
            service: S.name, engine: engine.kind, retention: configuration.auth.auditRetention, keys: try AuditKeyring.keys(configuration),
            checkpoints: transport, checkpointInterval: configuration.auth.auditCheckpointInterval,
            storage: { @Sendable in try auditFile?.check() }, logger: app.logger
        ) {
            app.databases.database(auditDatabase, logger: quietLogger, on: app.eventLoopGroup.any(), withTracing: false)!
        }
        app.gatewayAddresses = configuration.auth.gatewayAddresses
        app.middleware.use(AuditMiddleware(trail: trail))
        app.auditTrail = trail
        AuditRoutes.register(on: app.routes, trail: trail)
        // SQLite has a single writer: the service serializes its writes. PostgreSQL does not
        // need that; aggregate versions and the inbox's key guard concurrent writers there.
        let store = ServiceStore(
            engine: engine,
            storage: { @Sendable in
                try file?.check()
                // A command is audited: without its trail's file, nothing is accepted either.
                try auditFile?.check()
            }
        ) {
            app.databases.database(logger: quietLogger, on: app.eventLoopGroup.any(), withTracing: false)!
        }
        let relay = OutboxRelay(
            store: store, publisher: transport,
            settings: .init(pollInterval: configuration.relayPollInterval), logger: app.logger, observer: metrics)
        var context = ServiceContext(
            store: store, nudgeRelay: { relay.nudge() }, timeZone: configuration.timeZone, logger: app.logger,
            history: transport, residentNumberKeys: S.needs.contains(.residentNumberKeys) ? try PIIKeys.keys(configuration) : nil,
            metrics: metrics,
            attachments: S.needs.contains(.attachmentStore)
                ? AttachmentSettings(
                    directory: configuration.attachmentsDirectory
                        ?? configuration.dataDirectory.appendingPathComponent("attachments", isDirectory: true),
                    maxBytes: configuration.attachmentMaxBytes, grace: configuration.attachmentGrace) : nil)
        context.clinicSource = clinic
        let service = S(context: context)
        service.registerRoutes(on: app.routes)
        let consumer =
            service.handledEventTypes.isEmpty
            ? nil
            : EventConsumer(
                group: S.name, store: store, handledTypes: service.handledEventTypes,
                settings: .init(
                    maxAttempts: configuration.consumerMaxAttempts, batchSize: configuration.consumerBatchSize),
                logger: app.logger,
                afterCommit: {
                    relay.nudge()
                    service.eventsCommitted()
                }, observer: metrics, handler: service.handle)
        MessagingGauges(metrics: metrics, relay: relay, consumer: consumer, store: store, transport: transport).install()
        OperationsRoutes.register(on: app.routes) {
            try readiness.check()
            try file?.check()
            try auditFile?.check()
            let sql = try app.db.sql
            if engine.kind == .postgresql {
                // PostgreSQL: a standby, or a database set read-only, takes no writes.
                let row = try await sql.raw("SHOW transaction_read_only").first()
                if (try? row?.decode(column: "transaction_read_only", as: String.self)) == "on" {
                    throw AppError.notReady("The database is read-only.")
                }
            } else {
                _ = try await sql.raw("SELECT 1").all()
            }
            // A consumer that can move on neither by handling a message nor by dead-lettering
            // it (its database refuses writes, say) makes the service unready until it can.
            if let failure = consumer?.failure {
                throw AppError.notReady("The event consumer is stuck: \(failure)")
            }
        }
        if let consumer { DeadLetterRoutes.register(on: app.routes, consumer: consumer, store: store) }
        return ServiceHost(
            name: name, app: app, metrics: metrics, service: service, relay: relay, consumer: consumer, transport: transport,
            store: store, retention: configuration.retention, audit: trail)
    }

    /// Builds the gateway, routing to `routes`.
    static func gateway(
        routes: [Gateway.Route], configuration: HospitalConfiguration, authentication: Authentication,
        clinic: ClinicLayouts, readiness: Readiness = Readiness(), local: LocalServices? = nil
    ) async throws -> ServiceHost {
        let (app, metrics) = try await makeApplication(name: .gateway, configuration: configuration)
        app.localServices = local
        app.http.client.configuration.timeout = .init(connect: .seconds(2), read: .seconds(30))
        // Idle connections to the services are dropped before the services drop them (their idle
        // timeout is 60 s): reusing one the other side is closing fails (see `Resend`).
        app.http.client.configuration.connectionPool.idleTimeout = .seconds(20)
        // The client makes no spans of its own: a call's `traceparent` names the request's span
        // (`Traces.propagate`), so the service's span is its child; the client's would hang
        // beside it, and the readiness probe's calls would each be a trace of their own.
        app.http.client.configuration.tracing.tracer = nil
        let auth = configuration.auth
        app.trustedProxies = auth.trustedProxies
        app.middleware.use(AllowedHosts(auth.allowedHosts + [configuration.host], exempt: configuration.metricsPath))
        app.middleware.use(
            RateLimit(
                settings: .init(
                    rate: auth.rateLimit, burst: auth.rateLimit * 2, signInRate: auth.signInRateLimit,
                    signInBurst: auth.signInRateLimit * 10)))
        let access = AccessControl(verifier: authentication.verifier)
        Gateway(routes: routes).register(on: app, access: access)
        Gateway(routes: routes).registerAudit(on: app, access: access)
        // The screens are served here too: the one entry for people as for programs.
        if let issuer = authentication.issuer, let sessions = authentication.sessions {
            let signIn = SignIn(
                issuer: issuer, accounts: authentication.accounts, sessions: sessions,
                departments: authentication.departments)
            SignInRoutes(signIn: signIn, revocations: authentication.revocations)
                .register(on: app.routes, admin: app.routes.grouped(access))
            clinic.register(on: app.routes, admin: app.routes.grouped(access))
            try WebScreens(
                upstreams: Dictionary(
                    routes.map { ($0.prefix, WebScreens.Upstream(service: $0.service, url: $0.upstream)) },
                    uniquingKeysWith: { first, _ in first }),
                timeZone: configuration.timeZone, clinic: clinic.source,
                sessions: ScreenSessions(
                    signIn: signIn, verifier: authentication.verifier, provider: authentication.providerSignIn)
            ).register(on: app.routes)
        }
        // Ready while it can reach a service: with none answering, it would only answer 503s.
        let client = app.client
        OperationsRoutes.register(on: app.routes) {
            try readiness.check()
            var asked: Set<String> = []
            for route in routes where asked.insert(route.service).inserted {
                let answer = try? await client.get(URI(string: route.upstream.absoluteString + "/health/live")) {
                    $0.timeout = .seconds(1)
                }
                if answer?.status == .ok { return }
            }
            throw AppError.notReady("No service answers behind the gateway.")
        }
        return ServiceHost(
            name: .gateway, app: app, metrics: metrics, service: nil, relay: nil, consumer: nil, transport: nil)
    }

    private static func makeApplication(
        name: ServiceName, configuration: HospitalConfiguration
    ) async throws -> (Application, ServiceMetrics) {
        APIJSON.install()
        let app = try await Application.make(
            Environment(name: "production", arguments: ["hospital"]), .shared(MultiThreadedEventLoopGroup.singleton))
        var logger = Logger(label: "hospital.\(name.rawValue)")
        logger.logLevel = configuration.logLevel
        app.logger = logger
        app.http.server.configuration.hostname = configuration.host
        app.http.server.configuration.port = configuration.port(of: name)
        app.http.server.configuration.serverName = nil
        app.routes.defaultMaxBodySize = "64kb"
        app.middleware = Middlewares()
        let metrics = ServiceMetrics(service: name.rawValue)
        app.middleware.use(MetricsMiddleware(metrics: metrics))
        if Traces.isOn {
            app.traceAutoPropagation = true
            app.middleware.use(ServerSpans(service: name.rawValue, metricsPath: configuration.metricsPath))
        }
        if let path = configuration.metricsPath { metrics.register(on: app.routes, path: path) }
        app.middleware.use(RouteLoggingMiddleware(logLevel: .debug))
        app.middleware.use(SecurityHeaders())
        app.middleware.use(ProblemMiddleware())
        app.middleware.use(HeaderLimit())
        // A connection that says nothing for a minute is closed (half-open clients).
        app.http.server.configuration.idleTimeout = .seconds(configuration.idleTimeoutSeconds)
        return (app, metrics)
    }

    /// Bounds how long the SQLite files' connections wait for a lock (``SQLiteLockWait``).
    private func boundLockWaits() async throws {
        for id in [DatabaseID.sqlite, .audit] where app.databases.ids().contains(id) {
            try await app.databases.boundSQLiteLockWaits(id, on: app.eventLoopGroup, logger: app.logger)
        }
    }

    /// Migrates the database (if any) without serving.
    func migrate() async throws {
        guard app.databases.ids().isEmpty == false else { return }
        try await boundLockWaits()
        // Fluent's own migrator (`app.autoMigrate()`) traces every query, outside any trace:
        // a process's start would be a hundred root spans that say nothing.
        let databases = app.databases, logger = app.logger, loop = app.eventLoopGroup.any()
        let migrator = Migrator(
            databaseFactory: { databases.database($0, logger: logger, on: loop, withTracing: false)! },
            migrations: app.migrations, on: loop, migrationLogLevel: app.fluent.migrationLogLevel)
        try await migrator.setupIfNeeded().flatMap { migrator.prepareBatch() }.get()
        if app.databases.ids().contains(.sqlite) {
            // WAL lets the read side (and `hospital rebuild`) read while the service writes.
            _ = try await app.db.sql.raw("PRAGMA journal_mode = WAL").all()
            _ = try await app.db(.audit).sql.raw("PRAGMA journal_mode = WAL").all()
        }
    }

    /// Migrates (unless told not to) and starts serving HTTP; the loops (`loops`) run in the
    /// process's service group.
    func start(migrating: Bool = true) async throws {
        if migrating { try await migrate() } else { try await boundLockWaits() }
        try await app.asyncBoot()
        try await app.server.start(address: nil)
    }

    /// Its long-running work by kind, each in the order a stop must end it in reverse: consumers,
    /// relays, sweeps and maintenance, and last the audit writer, whose `finish` writes what the
    /// requests answered before the stop left queued.
    var loops: (consumers: [Loop], relays: [Loop], upkeep: [Loop], audit: [Loop]) {
        let service = name.rawValue
        var loops: (consumers: [Loop], relays: [Loop], upkeep: [Loop], audit: [Loop]) = ([], [], [], [])
        if let consumer, let transport {
            loops.consumers.append(Loop("\(service): event consumer") { try await consumer.run(on: transport) })
        }
        if let relay {
            loops.relays.append(Loop("\(service): outbox relay") { await relay.run() })
        }
        // Keeping both for good needs no sweep (a loop that returned at once would be restarted).
        if let store, retention.outbox != nil || retention.inbox != nil {
            let (settings, logger) = (retention, app.logger)
            loops.upkeep.append(
                Loop("\(service): outbox and inbox retention") {
                    await Retention.run(store, settings: settings, logger: logger)
                })
        }
        if let service = self.service, let maintain = service.maintenance {
            loops.upkeep.append(Loop("\(name.rawValue): maintenance", body: maintain))
        }
        if let audit {
            loops.audit.append(Loop("\(service): audit writer", finish: { try await audit.finish() }) { await audit.run() })
        }
        return loops
    }

    /// Closes its databases (after the server and the loops have stopped).
    func close() async {
        try? await app.asyncShutdown()
    }
}

extension DatabaseID {
    /// The audit trail's database (see `AuditTrail`).
    static let audit = DatabaseID(string: "audit")
}
