import Foundation
import Identity
import Logging
import Messaging
import ServiceKit
import SharedKernel

/// Every setting of a `hospital` process, with development defaults. Each setting's
/// environment variable is named next to it; command-line flags override the environment.
public struct HospitalConfiguration: Sendable, CustomStringConvertible {
    /// For logs: database URLs without their passwords, no keys.
    public var description: String {
        let databases = ([databaseURL].compactMap { $0 } + serviceDatabaseURLs.values).map(\.redactingPassword)
        return "HospitalConfiguration(dataDirectory: \(dataDirectory.path), host: \(host), databases: \(databases), "
            + "kafka: \(kafkaBrokers ?? "none"), \(auth))"
    }

    /// HOSPITAL_DATA_DIR: where the services' SQLite databases and the local event log live.
    public var dataDirectory: URL
    /// HOSPITAL_HOST: the address to listen on (0.0.0.0 in a container).
    public var host: String
    /// HOSPITAL_<SERVICE>_PORT: the port of each service (0 picks a free one).
    public var ports: [ServiceName: Int]
    /// HOSPITAL_<SERVICE>_URL: where the gateway finds a service that runs in another process.
    public var upstreams: [ServiceName: URL]
    /// HOSPITAL_LOG_LEVEL: trace, debug, info, notice, warning, error, critical.
    public var logLevel: Logger.Level
    /// HOSPITAL_TIME_ZONE: the hospital's time zone, for "today" and date filters.
    public var timeZone: TimeZone
    /// HOSPITAL_ATTACHMENTS_DIR / --attachments-dir: where examination result files go (by
    /// default `attachments` in the data directory); every examination replica must see the same
    /// directory (a ReadWriteMany volume).
    public var attachmentsDirectory: URL?
    /// HOSPITAL_ATTACHMENT_MAX_MB: the largest file (50 MB).
    public var attachmentMaxBytes: Int64 = 50 * 1_048_576
    /// HOSPITAL_ATTACHMENT_GRACE_SECONDS: how long a temporary or unreferenced file is left alone
    /// before a sweep removes it (600).
    public var attachmentGrace: TimeInterval = 600
    /// HOSPITAL_SHUTDOWN_DELAY_SECONDS: on SIGTERM, how long `/health/ready` answers 503 while
    /// the process still serves, before the servers stop (0 here; a few seconds in a cluster).
    public var shutdownDelay: Duration = .zero
    /// HOSPITAL_METRICS_PATH: where each port serves its Prometheus metrics (`/metrics`); `off`
    /// serves none.
    public var metricsPath: String? = "/metrics"
    /// HOSPITAL_IDLE_TIMEOUT_SECONDS: a connection that sends and receives nothing for this long
    /// is closed (60).
    public var idleTimeoutSeconds: Int64 = 60
    /// HOSPITAL_RELAY_POLL_MS: how often the outbox relay looks for rows committed elsewhere.
    public var relayPollInterval: Duration
    /// HOSPITAL_LOG_POLL_MS: how often consumers look for events appended by other processes.
    public var logPollInterval: Duration
    /// HOSPITAL_CONSUMER_MAX_ATTEMPTS: attempts before a failing event goes to the dead-letter store.
    public var consumerMaxAttempts: Int
    /// HOSPITAL_CONSUMER_BATCH_SIZE: the most events a consumer applies in one transaction.
    public var consumerBatchSize: Int
    /// HOSPITAL_OUTBOX_RETENTION_DAYS (7) and HOSPITAL_INBOX_RETENTION_DAYS (30): how long a
    /// service keeps published outbox rows and handled-event ids; 0 keeps them for good.
    public var retention: RetentionSettings
    /// HOSPITAL_EVENT_LOG_RETENTION_DAYS: how long the local event log keeps events; unset or 0
    /// keeps them for good, which a rebuild of the desk's board needs (it refuses a trimmed log).
    public var eventLogRetention: Duration?
    /// HOSPITAL_DATABASE_URL: the PostgreSQL database of the one service this process runs
    /// (postgres://USER[:PASSWORD]@HOST:PORT/DB). Without it, services use SQLite files.
    public var databaseURL: URL?
    /// HOSPITAL_<SERVICE>_DATABASE_URL: a service's own PostgreSQL database, when a process runs several.
    public var serviceDatabaseURLs: [ServiceName: URL]
    /// HOSPITAL_GATEWAY_DATABASE_URL: the gateway's PostgreSQL database (accounts and sessions,
    /// shared by its replicas). Without it, `accounts.sqlite` in the data directory: replicas of
    /// the gateway then share the data directory.
    public var gatewayDatabaseURL: URL?
    /// HOSPITAL_DATABASE_POOL_SIZE: PostgreSQL connections per event loop.
    public var databasePoolSize: Int
    /// HOSPITAL_AUTO_MIGRATE: whether `serve` applies pending migrations (true) or expects
    /// `hospital migrate` to have done it (false).
    public var autoMigrate: Bool
    /// HOSPITAL_KAFKA_BROKERS: `host:port[,…]` of Apache Kafka; without it, events travel
    /// through the local event log under the data directory.
    public var kafkaBrokers: String?
    /// HOSPITAL_KAFKA_TOPIC: the topic of the visit events.
    public var kafkaTopic: String
    /// HOSPITAL_KAFKA_GROUP_PREFIX: consumer groups are this prefix and the service's name.
    public var kafkaGroupPrefix: String
    /// HOSPITAL_KAFKA_PARTITIONS and HOSPITAL_KAFKA_REPLICATION_FACTOR: for the topic, if it
    /// must be created.
    public var kafkaPartitions: Int
    public var kafkaReplicationFactor: Int
    /// HOSPITAL_KAFKA_DELIVERY_TIMEOUT_MS: how long a publish may wait for the brokers before the
    /// relay retries it.
    public var kafkaDeliveryTimeout: Duration
    /// HOSPITAL_KAFKA_PROPERTIES: further librdkafka properties, `key=value,key=value`.
    public var kafkaProperties: [String: String]
    /// HOSPITAL_KAFKA_SESSION_TIMEOUT_MS: how long a consumer group waits for a silent member.
    public var kafkaSessionTimeout: Duration
    /// HOSPITAL_KAFKA_INSTANCE_ID, else POD_NAME: this process's static group membership
    /// (`group.instance.id`), unique per replica; a restarted replica takes its partitions back
    /// at once. None: dynamic membership.
    public var kafkaInstanceId: String?
    /// Sign-in and tokens (HOSPITAL_AUTH_*).
    public var auth: AuthConfiguration
    /// Backups of the data directory (HOSPITAL_BACKUP_*; docs/backups.md).
    public var backup = BackupSettings()
    /// HOSPITAL_CLINIC_FILE: departments' queue letters and rooms, and the rules of calling.
    public var clinic: ClinicLayout = .standard

    public init(dataDirectory: URL) {
        self.dataDirectory = dataDirectory
        host = "127.0.0.1"
        ports = Dictionary(uniqueKeysWithValues: ServiceName.allCases.map { ($0, $0.defaultPort) })
        upstreams = [:]
        logLevel = .info
        timeZone = TimeZone(identifier: "Asia/Seoul")!
        relayPollInterval = .milliseconds(200)
        logPollInterval = .milliseconds(100)
        consumerMaxAttempts = 8
        consumerBatchSize = 100
        retention = RetentionSettings()
        eventLogRetention = nil
        databaseURL = nil
        serviceDatabaseURLs = [:]
        gatewayDatabaseURL = nil
        databasePoolSize = 2
        autoMigrate = true
        kafkaBrokers = nil
        kafkaTopic = "hospital.visit-events"
        kafkaGroupPrefix = "hospital."
        kafkaPartitions = 6
        kafkaReplicationFactor = 3
        kafkaDeliveryTimeout = .seconds(30)
        kafkaProperties = [:]
        kafkaSessionTimeout = .seconds(6)
        kafkaInstanceId = nil
        auth = AuthConfiguration()
    }

    /// The defaults, overridden by the environment: every row of the settings table
    /// (`Settings.table`) whose variable is set.
    public static func from(environment env: [String: String]) throws -> HospitalConfiguration {
        var config = HospitalConfiguration(dataDirectory: URL(fileURLWithPath: "hospital-data", isDirectory: true))
        for setting in Settings.table {
            guard let apply = setting.apply, let raw = env[setting.variable] else { continue }
            try apply(raw, setting.variable, &config)
        }
        // Kubernetes names each replica: its static Kafka membership unless one is given.
        if config.kafkaInstanceId == nil, let pod = env["POD_NAME"], !pod.isEmpty { config.kafkaInstanceId = pod }
        try config.auth.settleProvider()
        return config
    }

    public func port(of service: ServiceName) -> Int { ports[service] ?? service.defaultPort }

    /// Where the gateway reaches `service` when it is not in this process.
    public func upstream(of service: ServiceName) -> URL {
        upstreams[service] ?? URL(string: "http://127.0.0.1:\(port(of: service))")!
    }

    public static func port(_ raw: String, _ name: String) throws -> Int {
        guard let n = Int(raw), (0...65535).contains(n) else { throw ConfigurationError("\(name): not a port: \(raw)") }
        return n
    }

    public static func url(_ raw: String, _ name: String) throws -> URL {
        guard let url = URL(string: raw), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ConfigurationError("\(name): not an http URL: \(raw)")
        }
        return url
    }

    /// Where `service` keeps its data: a PostgreSQL URL, or nil for its SQLite file. A single
    /// HOSPITAL_DATABASE_URL belongs to the one service of the process; with several services,
    /// each needs its own database.
    public func database(of service: ServiceName, among services: [ServiceName]) throws -> URL? {
        if let own = serviceDatabaseURLs[service] { return own }
        guard let shared = databaseURL else { return nil }
        let domain = services.filter { $0 != .gateway }
        guard domain == [service] else {
            throw ConfigurationError(
                "--database / HOSPITAL_DATABASE_URL names the database of one service, but this process runs "
                    + domain.map(\.rawValue).joined(separator: ", ")
                    + "; give each its own with HOSPITAL_<SERVICE>_DATABASE_URL")
        }
        return shared
    }

    /// `key=value,key=value`, as HOSPITAL_KAFKA_PROPERTIES has it.
    static func properties(_ raw: String) throws -> [String: String] {
        var result: [String: String] = [:]
        for pair in raw.split(separator: ",") where !pair.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else {
                throw ConfigurationError("HOSPITAL_KAFKA_PROPERTIES: expected key=value, got \(pair)")
            }
            result[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        return result
    }

    public static func postgresURL(_ raw: String, _ name: String) throws -> URL {
        guard let url = URL(string: raw), url.scheme == "postgres" || url.scheme == "postgresql", url.host != nil,
            url.path.count > 1
        else {
            throw ConfigurationError("\(name): not a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE)")
        }
        return url
    }

    public static func logLevel(_ raw: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: raw.lowercased()) else {
            throw ConfigurationError(
                "log level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }
}

/// How people and programs sign in, and how every service checks who is calling.
public struct AuthConfiguration: Sendable, CustomStringConvertible {
    /// Never the signing key.
    public var description: String {
        "AuthConfiguration(issuer: \(issuer), audience: \(audience), signingKey: \(signingKeyPEM == nil ? "file" : "<secret>"), "
            + "piiKey: \(piiKey == nil ? "file" : "<secret>"), auditKey: \(auditKey == nil ? "file" : "<secret>"))"
    }

    /// HOSPITAL_AUTH_ISSUER: the `iss` of the tokens this system issues (and expects).
    public var issuer = "hospital"
    /// HOSPITAL_AUTH_AUDIENCE: the `aud` they are issued for (and that every service expects).
    public var audience = "hospital-api"
    /// HOSPITAL_TOKEN_MINUTES: how long an access token is valid (15): also how long after a
    /// revocation the list of revoked sessions keeps it.
    public var tokenLifetime: TimeInterval = 15 * 60
    /// HOSPITAL_SESSION_IDLE_MINUTES (15, for shared ward PCs) and HOSPITAL_SESSION_HOURS (12):
    /// a screen session ends after this long without a request, and this long after sign-in.
    public var sessions = SessionSettings()
    /// HOSPITAL_SIGNING_KEY: the ES256 private key (PEM) that signs tokens, from a secret. Without
    /// it, HOSPITAL_SIGNING_KEY_FILE, by default `signing-key.pem` in the data directory, created
    /// on first start with mode 0600.
    public var signingKeyPEM: String?
    public var signingKeyFile: URL?
    /// HOSPITAL_AUTH_JWKS_URL: where a service in a process without the gateway reads the keys that
    /// verify tokens; by default the gateway's `/.well-known/jwks.json`.
    public var jwksURL: URL?
    /// HOSPITAL_BCRYPT_COST: the cost of password hashes (12; at least 10 outside tests).
    public var bcryptCost = 12
    /// HOSPITAL_ALLOWED_HOSTS: the host names the gateway serves (`Host`), comma-separated, besides
    /// localhost, 127.0.0.1, ::1 and the address it listens on.
    public var allowedHosts: [String] = []
    /// HOSPITAL_TRUSTED_PROXIES: the addresses of the proxies in front of the gateway, as
    /// comma-separated addresses or CIDR blocks (`127.0.0.6/32` behind Istio's sidecar); never a
    /// network clients are in. Their `X-Forwarded-For` names the client for the rate limits and
    /// the audit trail; by default none is believed, and the client is the socket's peer.
    public var trustedProxies = TrustedProxies.none
    /// HOSPITAL_GATEWAY_ADDRESSES: where a service believes `X-Forwarded-For` from, as addresses
    /// or CIDR blocks; by default loopback (the gateway in the same process or pod, the mesh's
    /// sidecar). From any other peer the header is ignored and the audit trail names the peer.
    /// Without the mesh, the gateway pods' network.
    public var gatewayAddresses = TrustedProxies.loopback
    /// HOSPITAL_RATE_LIMIT (1000) and HOSPITAL_SIGN_IN_RATE_LIMIT (2): requests a second per
    /// client address on the gateway (bursts of twice as many; sign-in: 20); 0 turns a limit off.
    public var rateLimit: Double = 1000
    public var signInRateLimit: Double = 2
    /// HOSPITAL_PII_KEY (base64 of 32 bytes, from a secret) encrypts resident registration
    /// numbers; without it, `pii-key` in the data directory (created 0600 on first start).
    /// HOSPITAL_PII_OLD_KEYS (comma-separated) still open what they sealed; HOSPITAL_PII_INDEX_KEY
    /// keys the lookup hash (by default the key itself: keep it when rotating).
    public var piiKey: String?
    public var piiOldKeys: [String] = []
    public var piiIndexKey: String?
    /// HOSPITAL_AUDIT_RETENTION_DAYS: how long the audit trail is kept (730, two years; 0 for good).
    public var auditRetention: Duration? = .days(730)
    /// HOSPITAL_AUDIT_KEY (base64 of 32 bytes, from a secret; or HOSPITAL_AUDIT_KEY_FILE, a file
    /// holding it) seals the audit trail's entries and checkpoints; without either, `audit-key` in
    /// the data directory (created 0600 on first start). Replicas of a service share it.
    /// HOSPITAL_AUDIT_OLD_KEYS (comma-separated) still check what retired keys sealed.
    public var auditKey: String?
    public var auditOldKeys: [String] = []
    /// HOSPITAL_AUDIT_CHECKPOINT_SECONDS: how often each service publishes a sealed checkpoint of
    /// its trail's head when it moved (10): entries newer than the last checkpoint are the ones
    /// that can be cut from the end without a trace.
    public var auditCheckpointInterval: Duration = .seconds(10)
    /// An external OpenID Connect provider; nil: local accounts.
    public var oidc: OIDCSettings?

    public init() {}

    /// `a, b,,c` → `["a", "b", "c"]`.
    static func commaList(_ raw: String) -> [String] {
        raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The provider's settings as the table read them (`HOSPITAL_OIDC_*`); `settleProvider`
    /// turns them into `oidc` when an issuer is given.
    var provider = ProviderSettings()

    struct ProviderSettings: Sendable {
        var issuer = ""
        var clientID = ""
        var clientSecret: String?
        var audience: String?
        var rolesClaim: [String]?
        var usernameClaim: [String]?
        var departmentsClaim: [String]?
        var opaqueTokens: OIDCSettings.OpaqueTokens?
        var redirectURL: String?
    }

    /// With an issuer: the provider's settings, checked together (an issuer needs a client id).
    mutating func settleProvider() throws {
        guard !provider.issuer.isEmpty else { return }
        var oidc = try OIDCSettings(issuer: provider.issuer, clientID: provider.clientID, audience: provider.audience)
        oidc.clientSecret = provider.clientSecret
        if let claim = provider.rolesClaim { oidc.rolesClaim = claim }
        if let claim = provider.usernameClaim { oidc.usernameClaim = claim }
        if let claim = provider.departmentsClaim { oidc.departmentsClaim = claim }
        if let choice = provider.opaqueTokens { oidc.opaqueTokens = choice }
        oidc.redirectURL = provider.redirectURL
        self.oidc = oidc
    }
}

/// Signing in through an external OpenID Connect provider instead of local accounts.
public struct OIDCSettings: Sendable, CustomStringConvertible {
    /// Never the client secret.
    public var description: String {
        "OIDCSettings(issuer: \(issuer), clientID: \(clientID), audience: \(audience), secret: \(clientSecret == nil ? "none" : "<secret>"))"
    }

    /// What an opaque access token (not a JWT) is worth. Its audience cannot be checked at the
    /// userinfo endpoint, so it is refused unless the operator chooses otherwise.
    public enum OpaqueTokens: String, Sendable {
        case refuse
        case userinfo
    }

    /// HOSPITAL_OIDC_ISSUER / --oidc-issuer: the provider's issuer URL (its discovery document is
    /// at `/.well-known/openid-configuration` under it). Setting it turns local accounts off.
    public var issuer: String
    /// HOSPITAL_OIDC_CLIENT_ID / --oidc-client-id: this system's client at the provider.
    public var clientID: String
    /// HOSPITAL_OIDC_CLIENT_SECRET (or HOSPITAL_OIDC_CLIENT_SECRET_FILE, a file holding it): its secret, from a secret store; none for a public
    /// client (PKCE protects the code either way).
    public var clientSecret: String?
    /// HOSPITAL_OIDC_AUDIENCE / --oidc-audience: the `aud` an access token must carry to call the
    /// API (by default the client id).
    public var audience: String
    /// HOSPITAL_OIDC_ROLES_CLAIM / --oidc-roles-claim: the claim with the user's roles, dotted
    /// (`realm_access.roles` for Keycloak); by default `roles`.
    public var rolesClaim = ["roles"]
    /// HOSPITAL_OIDC_USERNAME_CLAIM: the claim that names the user (`preferred_username`; `sub`
    /// when absent).
    public var usernameClaim = ["preferred_username"]
    /// HOSPITAL_OIDC_DEPARTMENTS_CLAIM: the claim with the user's departments in an access
    /// token, dotted (`departments` by default); those of a screen session are the ones an
    /// administrator assigned (`hospital users departments`).
    public var departmentsClaim = ["departments"]
    /// HOSPITAL_OIDC_OPAQUE_TOKENS: `refuse` (default) or `userinfo`.
    public var opaqueTokens = OpaqueTokens.refuse
    /// HOSPITAL_OIDC_REDIRECT_URL: the callback registered at the provider; by default
    /// `<scheme>://<Host>/login/oidc/callback` of the request.
    public var redirectURL: String?

    public init(issuer: String, clientID: String, audience: String? = nil) throws {
        _ = try HospitalConfiguration.url(issuer, "HOSPITAL_OIDC_ISSUER")
        guard !clientID.isEmpty else {
            throw ConfigurationError("HOSPITAL_OIDC_CLIENT_ID (--oidc-client-id): needed with an OIDC issuer")
        }
        self.issuer = issuer
        self.clientID = clientID
        self.audience = audience.flatMap { $0.isEmpty ? nil : $0 } ?? clientID
    }

    public static func claimPath(_ raw: String, _ name: String) throws -> [String] {
        let path = raw.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !raw.isEmpty, path.allSatisfy({ !$0.isEmpty }) else {
            throw ConfigurationError("\(name): a claim name, or names joined by dots, not \(raw)")
        }
        return path
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension URL {
    /// The URL with its password, if any, replaced by `***`: for logs.
    public var redactingPassword: String {
        guard var components = URLComponents(url: self, resolvingAgainstBaseURL: false), components.password != nil
        else { return absoluteString }
        components.password = "***"
        return components.string ?? "(a URL)"
    }
}

/// Backups of the data directory: the meanings are the settings table's (HOSPITAL_BACKUP_*).
public struct BackupSettings: Sendable {
    /// How often `serve` makes one; nil: it makes none.
    public var every: Duration?
    /// The directory of backups (each a subdirectory).
    public var directory: URL?
    /// How many whole backups a backup leaves in the directory.
    public var keep = 14
    /// The backup key, base64 of 32 bytes; or the file holding it.
    public var key: String?
    public var keyFile: URL?

    public init() {}
}

