import AsyncHTTPClient
import Audit
import FluentKit
import FluentPostgresDriver
import Foundation
import Identity
import JWTKit
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import Messaging
import ServiceKit
import Storage
import Synchronization

/// What a process needs to check callers and, where the gateway runs, to sign them in.
final class Authentication: Sendable {
    /// The token issuer, where the gateway runs (it owns the accounts and the signing key).
    let issuer: TokenIssuer?
    let accounts: AccountStore?
    /// The sessions, where the gateway runs.
    let sessions: SessionStore?
    let verifier: TokenVerifier
    /// What this process refuses although signed (kept fresh by `refresh`).
    let revocations: Revocations
    /// Signing in on the screens through an external OpenID provider (then no local accounts).
    let providerSignIn: ProviderSignIn?
    /// Staff's departments, where the gateway runs (its tokens name them).
    var departments: Departments? { store.map { Departments(database: $0.database) } }
    private let store: GatewayStore?
    /// The gateway's database, where the gateway runs in this process.
    var gatewayDatabase: (any SQLDatabase)? { store?.database }
    /// Reads the revocations again and again: a loop of the process's service group.
    let refresh: Loop

    private init(
        issuer: TokenIssuer?, accounts: AccountStore?, sessions: SessionStore?, verifier: TokenVerifier,
        revocations: Revocations, providerSignIn: ProviderSignIn? = nil, store: GatewayStore?,
        refresh: Loop
    ) {
        self.issuer = issuer
        self.accounts = accounts
        self.sessions = sessions
        self.verifier = verifier
        self.revocations = revocations
        self.providerSignIn = providerSignIn
        self.store = store
        self.refresh = refresh
    }

    /// With the gateway in this process: its signing key, accounts and sessions, and a verifier
    /// of its own keys. Without: a verifier that reads the gateway's key set over HTTP
    /// (HOSPITAL_AUTH_JWKS_URL). Either way, a list of revoked sessions and accounts, refreshed
    /// from the sessions (here) or from the gateway's `/auth/revocations` (elsewhere).
    static func make(
        runsGateway: Bool, configuration: HospitalConfiguration, logger: Logger
    ) async throws -> Authentication {
        let auth = configuration.auth
        let settings = TokenVerifier.Settings(issuer: auth.issuer, audience: auth.audience)
        let revocations = Revocations()
        // With an external provider: its tokens are trusted besides this system's own (which the
        // gateway still signs for the screens' sessions, after the provider signed the user in).
        var external: TokenVerifier.External?
        var providerSignIn: ProviderSignIn?
        if let oidc = auth.oidc {
            let provider = OpenIDProvider(issuer: oidc.issuer)
            external = .provider(
                provider,
                settings: .init(
                    issuer: provider.issuer, audience: oidc.audience, roleClaim: oidc.rolesClaim,
                    usernameClaim: oidc.usernameClaim, departmentsClaim: oidc.departmentsClaim,
                    audienceMayBeShared: true, requireLowS: false),
                askUserinfo: oidc.opaqueTokens == .userinfo)
            providerSignIn = ProviderSignIn(
                provider: provider, clientID: oidc.clientID, clientSecret: oidc.clientSecret,
                redirectURL: oidc.redirectURL, roleClaim: oidc.rolesClaim, usernameClaim: oidc.usernameClaim)
        }
        guard runsGateway else {
            // The signing key, when this process has it (a secret, or the data directory it shares
            // with the gateway), verifies locally; else the gateway's JWKS.
            let localKey: SigningKey? =
                auth.signingKeyPEM != nil || FileManager.default.fileExists(atPath: signingKeyFile(configuration).path)
                ? try signingKey(configuration) : nil
            let gateway = configuration.upstream(of: .gateway)
            let url = auth.jwksURL ?? gateway.appendingPathComponent(".well-known/jwks.json")
            let verifier = TokenVerifier(settings: settings, external: external, revocations: revocations) {
                if let localKey { return localKey.jwks }
                return try await fetchKeySet(from: url, logger: logger)
            }
            let revocationsURL = gateway.appendingPathComponent("auth/revocations")
            let refresh = Loop("revocations refresh") {
                await refreshing(revocations, every: .seconds(2), logger: logger) {
                    try await fetchRevocations(from: revocationsURL)
                }
            }
            return Authentication(
                issuer: nil, accounts: nil, sessions: nil, verifier: verifier, revocations: revocations, store: nil,
                refresh: refresh)
        }
        let key = try signingKey(configuration)
        let issuer = await TokenIssuer(
            key: key, issuer: auth.issuer, audience: auth.audience, lifetime: auth.tokenLifetime)
        let verifier = TokenVerifier(settings: settings, external: external, revocations: revocations) { key.jwks }
        let store = try await GatewayStore.open(configuration, logger: logger)
        // Nothing below throws: the store, once open, belongs to the Authentication returned.
        let sessions = SessionStore(
            database: store.database, settings: auth.sessions, localAccounts: providerSignIn == nil)
        // A revocation is listed as long as a token it voids can still be valid: this system's
        // tokens last `tokenLifetime`, a provider's are accepted with up to `maxLifetime` left.
        let window = (providerSignIn == nil ? auth.tokenLifetime : settings.maxLifetime) + settings.leeway + 60
        let refresh = Loop("revocations refresh and session sweep") {
            let lastSweep = Mutex(ContinuousClock.now)
            await refreshing(revocations, every: .seconds(1), logger: logger) {
                if lastSweep.withLock({ ContinuousClock.now - $0 > .seconds(3600) }) {
                    lastSweep.withLock { $0 = .now }
                    try await sessions.sweep()
                }
                return try await sessions.revoked(since: Date().addingTimeInterval(-window))
            }
        }
        if let providerSignIn {
            logger.info(
                "signing in through the identity provider; local accounts are off",
                metadata: ["issuer": "\(providerSignIn.provider.issuer)"])
            return Authentication(
                issuer: issuer, accounts: nil, sessions: sessions, verifier: verifier, revocations: revocations,
                providerSignIn: providerSignIn, store: store, refresh: refresh)
        }
        let accounts = store.accounts(configuration)
        if (try? await accounts.list().isEmpty) == true {
            logger.notice(
                "no accounts yet: nobody can sign in. Add one: hospital users add NAME --role desk|doctor|examiner|admin --data-dir \(configuration.dataDirectory.path)"
            )
        }
        return Authentication(
            issuer: issuer, accounts: accounts, sessions: sessions, verifier: verifier, revocations: revocations,
            store: store, refresh: refresh)
    }

    /// Closes the gateway's database (after the service group, and with it `refresh`, stopped).
    func close() async {
        await store?.close()
    }

    /// Replaces `revocations` with what `read` says, every `interval` until canceled; a failed
    /// read keeps the last list (and says so once until a read succeeds again).
    private static func refreshing(
        _ revocations: Revocations, every interval: Duration, logger: Logger,
        read: @Sendable () async throws -> Revocations.Snapshot
    ) async {
        var failing = false
        while !Task.isCancelled {
            do {
                revocations.replace(with: try await read())
                if failing { logger.notice("the list of revoked sessions is read again") }
                failing = false
            } catch {
                if !failing {
                    logger.warning(
                        "the list of revoked sessions could not be read; keeping the last one",
                        metadata: ["error": "\(loggable(error))"])
                }
                failing = true
            }
            try? await Task.sleep(for: interval)
        }
    }

    private static func fetchRevocations(from url: URL) async throws -> Revocations.Snapshot {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .GET
        let response = try await BackgroundClient.shared.execute(request, timeout: .seconds(2))
        guard response.status == .ok else {
            throw ConfigurationError("the revocations at \(url) answered \(response.status.code)")
        }
        let body = try await response.body.collect(upTo: 4 << 20)
        return try JSONDecoder().decode(Revocations.Snapshot.self, from: Data(buffer: body))
    }

    /// The local accounts of the data directory (or the gateway's database), for `hospital users`.
    static func withGatewayStore<T: Sendable>(
        _ configuration: HospitalConfiguration, logger: Logger, _ body: (GatewayStore) async throws -> T
    ) async throws -> T {
        let store = try await GatewayStore.open(configuration, logger: logger)
        do {
            let result = try await body(store)
            await store.close()
            return result
        } catch {
            await store.close()
            throw error
        }
    }

    private static func signingKey(_ configuration: HospitalConfiguration) throws -> SigningKey {
        if let pem = configuration.auth.signingKeyPEM { return try SigningKey(pem: pem) }
        try DataDirectory.prepare(configuration.dataDirectory)
        return try SigningKey.loadOrCreate(at: signingKeyFile(configuration))
    }

    private static func signingKeyFile(_ configuration: HospitalConfiguration) -> URL {
        configuration.auth.signingKeyFile ?? configuration.dataDirectory.appendingPathComponent("signing-key.pem")
    }

    private static func fetchKeySet(from url: URL, logger: Logger) async throws -> JWKS {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .GET
        let response = try await BackgroundClient.shared.execute(request, timeout: .seconds(5))
        guard response.status == .ok else {
            logger.warning("the key set could not be read", metadata: ["status": "\(response.status.code)"])
            throw ConfigurationError("the key set at \(url) answered \(response.status.code)")
        }
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONDecoder().decode(JWKS.self, from: Data(buffer: body))
    }
}

/// The data directory holds patient data and the signing key: only its owner may enter it.
enum DataDirectory {
    static func prepare(_ directory: URL) throws {
        let manager = FileManager.default
        if !manager.fileExists(atPath: directory.path) {
            try manager.createDirectory(
                at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    /// The text of the secret in `file`, which is created (mode 0600, never overwritten) with
    /// `make()` if there is none.
    static func secret(_ file: URL, make: () -> String) throws -> String {
        try prepare(file.deletingLastPathComponent())
        if let text = try? String(contentsOf: file, encoding: .utf8) { return text }
        let fd = open(file.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if fd >= 0 {
            // (Another process that created it first wins: its key is read below.)
            let data = Data(make().utf8)
            let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd) == 0
            close(fd)
            guard written == data.count, synced else { throw ConfigurationError("cannot write \(file.path)") }
        }
        return try String(contentsOf: file, encoding: .utf8)
    }

    /// Creates `file` empty with mode 0600 if it does not exist.
    static func createPrivateFile(_ file: URL) throws {
        let fd = open(file.path, O_WRONLY | O_CREAT, 0o600)
        guard fd >= 0 else { throw ConfigurationError("cannot create \(file.path)") }
        close(fd)
    }
}

extension HospitalSystem {
    /// The local accounts of the data directory (or the gateway's database), with the sessions
    /// they sign in to, for `hospital users` (safe while the system runs).
    public static func withAccounts<T: Sendable>(
        configuration: HospitalConfiguration, logger: Logger, _ body: (AccountStore, SessionStore) async throws -> T
    ) async throws -> T {
        try await Authentication.withGatewayStore(configuration, logger: logger) { store in
            let sessions = SessionStore(
                database: store.database, settings: configuration.auth.sessions, localAccounts: true)
            return try await body(store.accounts(configuration), sessions)
        }
    }

    /// Staff's departments in the gateway's database, for `hospital users departments`.
    public static func withDepartments<T: Sendable>(
        configuration: HospitalConfiguration, logger: Logger, _ body: (Departments) async throws -> T
    ) async throws -> T {
        try await Authentication.withGatewayStore(configuration, logger: logger) { store in
            try await body(Departments(database: store.database))
        }
    }
}

/// The gateway's own database: `accounts.sqlite` in the data directory (mode 0600), or
/// PostgreSQL at HOSPITAL_GATEWAY_DATABASE_URL. Accounts, sign-in failures and sessions.
final class GatewayStore: Sendable {
    let database: any SQLDatabase
    private let sqlite: SQLiteConnection?
    private let databases: Databases?

    private init(database: any SQLDatabase, sqlite: SQLiteConnection?, databases: Databases?) {
        self.database = database
        self.sqlite = sqlite
        self.databases = databases
    }

    static func open(_ configuration: HospitalConfiguration, logger: Logger) async throws -> GatewayStore {
        let store: GatewayStore
        if let url = configuration.gatewayDatabaseURL {
            let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
            databases.use(try .postgres(url: url, maxConnectionsPerEventLoop: 2, sqlLogLevel: .trace), as: .psql)
            var quiet = logger
            quiet.logLevel = max(logger.logLevel, .info)
            let db = databases.database(.psql, logger: quiet, on: MultiThreadedEventLoopGroup.singleton.any(), withTracing: false)!
            store = GatewayStore(database: try db.sql, sqlite: nil, databases: databases)
        } else {
            try DataDirectory.prepare(configuration.dataDirectory)
            let file = configuration.dataDirectory.appendingPathComponent("accounts.sqlite")
            try DataDirectory.createPrivateFile(file)
            let source = SQLiteConnectionSource(
                configuration: .init(storage: .file(path: file.path), enableForeignKeys: true), threadPool: .singleton)
            let connection = try await source.makeConnection(
                logger: logger, on: MultiThreadedEventLoopGroup.singleton.any()
            ).get()
            store = GatewayStore(database: connection.sql(), sqlite: connection, databases: nil)
            do {
                _ = try await connection.sql().raw("PRAGMA journal_mode = WAL").all()
                // Replicas of the gateway share the file: a writer waits for another's lock.
                _ = try await connection.sql().raw("PRAGMA busy_timeout = 5000").all()
            } catch {
                await store.close()
                throw error
            }
        }
        do {
            try await store.prepare(configuration)
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    /// Creates the tables if they are missing; on PostgreSQL one replica at a time (two
    /// `CREATE TABLE IF NOT EXISTS` at once can both try to create the table).
    private func prepare(_ configuration: HospitalConfiguration) async throws {
        let sessions: @Sendable (any SQLDatabase) -> SessionStore = { [settings = configuration.auth.sessions] db in
            SessionStore(database: db, settings: settings, localAccounts: true)
        }
        guard databases != nil, let fluent = database as? any Database else {
            try await accounts(configuration).prepare()
            try await sessions(database).prepare()
            try await Departments(database: database).prepare()
            try await ClinicStore(database: database).prepare()
            return
        }
        try await fluent.transaction { transaction in
            let db = try transaction.sql
            try await db.raw("SELECT pg_advisory_xact_lock(7412002)").run()
            try await AccountStore(database: db).prepare()
            try await sessions(db).prepare()
            try await Departments(database: db).prepare()
            try await ClinicStore(database: db).prepare()
        }
    }

    func accounts(_ configuration: HospitalConfiguration) -> AccountStore {
        var settings = AccountStore.Settings()
        settings.bcryptCost = configuration.auth.bcryptCost
        return AccountStore(database: database, settings: settings)
    }

    func close() async {
        try? await sqlite?.close().get()
        await databases?.shutdownAsync()
    }
}

/// The keys that protect resident registration numbers (see `AuthConfiguration.piiKey`).
enum PIIKeys {
    static func keys(_ configuration: HospitalConfiguration) throws -> ResidentNumberKeys {
        let auth = configuration.auth
        func key(_ base64: String, _ name: String) throws -> (Data, String) {
            guard let data = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw ConfigurationError("\(name): not base64")
            }
            return (data, name)
        }
        let current: (Data, String)
        if let raw = auth.piiKey {
            current = try key(raw, "HOSPITAL_PII_KEY")
        } else {
            let file = configuration.dataDirectory.appendingPathComponent("pii-key")
            current = try key(
                try DataDirectory.secret(file) { ResidentNumberKeys.random().base64EncodedString() }, file.path)
        }
        do {
            return try ResidentNumberKeys(
                current: current, previous: try auth.piiOldKeys.map { try key($0, "HOSPITAL_PII_OLD_KEYS") },
                indexSecret: try auth.piiIndexKey.map { try key($0, "HOSPITAL_PII_INDEX_KEY") })
        } catch let error as ResidentNumberKeys.KeyError {
            throw ConfigurationError(error.description)
        }
    }
}

/// The keys that seal the audit trail (see `AuthConfiguration.auditKey`).
enum AuditKeyring {
    static func keys(_ configuration: HospitalConfiguration, create: Bool = true) throws -> AuditKeys {
        let auth = configuration.auth
        let current: AuditKey
        if let raw = auth.auditKey {
            current = try AuditKey(base64: raw, name: "HOSPITAL_AUDIT_KEY")
        } else {
            let file = configuration.dataDirectory.appendingPathComponent("audit-key")
            guard create || FileManager.default.fileExists(atPath: file.path) else {
                throw ConfigurationError(
                    "no audit key: HOSPITAL_AUDIT_KEY is not set and there is no \(file.path) (give the data directory the services run with)")
            }
            current = try AuditKey(
                base64: try DataDirectory.secret(file) { AuditKey.random().base64EncodedString() }, name: file.path)
        }
        return AuditKeys(
            current: current,
            previous: try auth.auditOldKeys.map { try AuditKey(base64: $0, name: "HOSPITAL_AUDIT_OLD_KEYS") })
    }
}
