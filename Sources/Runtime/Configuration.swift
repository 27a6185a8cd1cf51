import Foundation
import Identity
import Logging
import Messaging
import ServiceKit

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

    /// The defaults, overridden by the environment.
    public static func from(environment env: [String: String]) throws -> HospitalConfiguration {
        var config = HospitalConfiguration(
            dataDirectory: URL(fileURLWithPath: env["HOSPITAL_DATA_DIR"] ?? "hospital-data", isDirectory: true))
        if let host = env["HOSPITAL_HOST"] { config.host = host }
        for service in ServiceName.allCases {
            if let raw = env["HOSPITAL_\(service.environmentStem)_PORT"] {
                config.ports[service] = try port(raw, "HOSPITAL_\(service.environmentStem)_PORT")
            }
            if let raw = env["HOSPITAL_\(service.environmentStem)_URL"] {
                config.upstreams[service] = try url(raw, "HOSPITAL_\(service.environmentStem)_URL")
            }
        }
        if let raw = env["HOSPITAL_LOG_LEVEL"] { config.logLevel = try logLevel(raw) }
        if let raw = env["HOSPITAL_TIME_ZONE"] {
            guard let zone = TimeZone(identifier: raw) else {
                throw ConfigurationError("HOSPITAL_TIME_ZONE: unknown time zone \(raw)")
            }
            config.timeZone = zone
        }
        if let raw = env["HOSPITAL_ATTACHMENTS_DIR"], !raw.isEmpty {
            config.attachmentsDirectory = URL(fileURLWithPath: raw, isDirectory: true)
        }
        if let raw = env["HOSPITAL_ATTACHMENT_MAX_MB"] {
            config.attachmentMaxBytes = Int64(try positive(raw, "HOSPITAL_ATTACHMENT_MAX_MB")) * 1_048_576
        }
        if let raw = env["HOSPITAL_ATTACHMENT_GRACE_SECONDS"] {
            config.attachmentGrace = TimeInterval(try positive(raw, "HOSPITAL_ATTACHMENT_GRACE_SECONDS"))
        }
        if let raw = env["HOSPITAL_SHUTDOWN_DELAY_SECONDS"] {
            guard let n = Int(raw), (0...120).contains(n) else {
                throw ConfigurationError("HOSPITAL_SHUTDOWN_DELAY_SECONDS: 0 to 120, not \(raw)")
            }
            config.shutdownDelay = .seconds(n)
        }
        if let raw = env["HOSPITAL_METRICS_PATH"] {
            if raw == "off" {
                config.metricsPath = nil
            } else {
                guard raw.hasPrefix("/"), raw.count > 1, raw.count < 100,
                    raw.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "/-_.".contains($0)) }),
                    !raw.contains("//")
                else {
                    throw ConfigurationError("HOSPITAL_METRICS_PATH: a path such as /metrics, or off, not \(raw)")
                }
                config.metricsPath = raw
            }
        }
        if let raw = env["HOSPITAL_IDLE_TIMEOUT_SECONDS"] {
            config.idleTimeoutSeconds = Int64(try positive(raw, "HOSPITAL_IDLE_TIMEOUT_SECONDS"))
        }
        if let raw = env["HOSPITAL_RELAY_POLL_MS"] {
            config.relayPollInterval = .milliseconds(try positive(raw, "HOSPITAL_RELAY_POLL_MS"))
        }
        if let raw = env["HOSPITAL_LOG_POLL_MS"] {
            config.logPollInterval = .milliseconds(try positive(raw, "HOSPITAL_LOG_POLL_MS"))
        }
        if let raw = env["HOSPITAL_CONSUMER_MAX_ATTEMPTS"] {
            config.consumerMaxAttempts = try positive(raw, "HOSPITAL_CONSUMER_MAX_ATTEMPTS")
        }
        if let raw = env["HOSPITAL_CONSUMER_BATCH_SIZE"] {
            config.consumerBatchSize = try positive(raw, "HOSPITAL_CONSUMER_BATCH_SIZE")
        }
        if let raw = env["HOSPITAL_OUTBOX_RETENTION_DAYS"] {
            config.retention.outbox = try days(raw, "HOSPITAL_OUTBOX_RETENTION_DAYS")
        }
        if let raw = env["HOSPITAL_INBOX_RETENTION_DAYS"] {
            config.retention.inbox = try days(raw, "HOSPITAL_INBOX_RETENTION_DAYS")
        }
        if let raw = env["HOSPITAL_EVENT_LOG_RETENTION_DAYS"] {
            config.eventLogRetention = try days(raw, "HOSPITAL_EVENT_LOG_RETENTION_DAYS")
        }
        if let raw = env["HOSPITAL_DATABASE_URL"] { config.databaseURL = try postgresURL(raw, "HOSPITAL_DATABASE_URL") }
        for service in ServiceName.allCases where service != .gateway {
            let name = "HOSPITAL_\(service.environmentStem)_DATABASE_URL"
            if let raw = env[name] { config.serviceDatabaseURLs[service] = try postgresURL(raw, name) }
        }
        if let raw = env["HOSPITAL_GATEWAY_DATABASE_URL"] {
            config.gatewayDatabaseURL = try postgresURL(raw, "HOSPITAL_GATEWAY_DATABASE_URL")
        }
        if let raw = env["HOSPITAL_DATABASE_POOL_SIZE"] {
            config.databasePoolSize = try positive(raw, "HOSPITAL_DATABASE_POOL_SIZE")
        }
        if let raw = env["HOSPITAL_KAFKA_BROKERS"], !raw.isEmpty { config.kafkaBrokers = raw }
        if let raw = env["HOSPITAL_KAFKA_TOPIC"], !raw.isEmpty { config.kafkaTopic = raw }
        if let raw = env["HOSPITAL_KAFKA_GROUP_PREFIX"] { config.kafkaGroupPrefix = raw }
        if let raw = env["HOSPITAL_KAFKA_PARTITIONS"] {
            config.kafkaPartitions = try positive(raw, "HOSPITAL_KAFKA_PARTITIONS")
        }
        if let raw = env["HOSPITAL_KAFKA_REPLICATION_FACTOR"] {
            config.kafkaReplicationFactor = try positive(raw, "HOSPITAL_KAFKA_REPLICATION_FACTOR")
        }
        if let raw = env["HOSPITAL_KAFKA_DELIVERY_TIMEOUT_MS"] {
            config.kafkaDeliveryTimeout = .milliseconds(try positive(raw, "HOSPITAL_KAFKA_DELIVERY_TIMEOUT_MS"))
        }
        if let raw = env["HOSPITAL_KAFKA_PROPERTIES"] { config.kafkaProperties = try properties(raw) }
        if let raw = env["HOSPITAL_KAFKA_SESSION_TIMEOUT_MS"] {
            config.kafkaSessionTimeout = .milliseconds(try positive(raw, "HOSPITAL_KAFKA_SESSION_TIMEOUT_MS"))
        }
        if let raw = env["HOSPITAL_KAFKA_INSTANCE_ID"] ?? env["POD_NAME"], !raw.isEmpty {
            config.kafkaInstanceId = raw
        }
        try config.auth.read(env)
        if let raw = env["HOSPITAL_AUTO_MIGRATE"] {
            guard let value = Bool(raw.lowercased()) else {
                throw ConfigurationError("HOSPITAL_AUTO_MIGRATE: true or false, not \(raw)")
            }
            config.autoMigrate = value
        }
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

    /// A whole number of days; 0 means "keep for good" (nil).
    private static func days(_ raw: String, _ name: String) throws -> Duration? {
        guard let n = Int(raw), (0...36_500).contains(n) else {
            throw ConfigurationError("\(name): a whole number of days from 0 (keep for good) to 36500, not \(raw)")
        }
        return n == 0 ? nil : .days(n)
    }

    private static func positive(_ raw: String, _ name: String) throws -> Int {
        guard let n = Int(raw), n > 0 else { throw ConfigurationError("\(name): not a positive number: \(raw)") }
        return n
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

    mutating func read(_ env: [String: String]) throws {
        if let raw = env["HOSPITAL_AUTH_ISSUER"], !raw.isEmpty { issuer = raw }
        if let raw = env["HOSPITAL_AUTH_AUDIENCE"], !raw.isEmpty { audience = raw }
        if let raw = env["HOSPITAL_TOKEN_MINUTES"] {
            guard let n = Int(raw), (1...720).contains(n) else {
                throw ConfigurationError("HOSPITAL_TOKEN_MINUTES: a whole number of minutes from 1 to 720, not \(raw)")
            }
            tokenLifetime = TimeInterval(n * 60)
        }
        if let raw = env["HOSPITAL_SESSION_IDLE_MINUTES"] {
            guard let n = Int(raw), (1...720).contains(n) else {
                throw ConfigurationError("HOSPITAL_SESSION_IDLE_MINUTES: a whole number of minutes from 1 to 720, not \(raw)")
            }
            sessions.idle = TimeInterval(n * 60)
        }
        if let raw = env["HOSPITAL_SESSION_HOURS"] {
            guard let n = Int(raw), (1...24).contains(n) else {
                throw ConfigurationError("HOSPITAL_SESSION_HOURS: a whole number of hours from 1 to 24, not \(raw)")
            }
            sessions.absolute = TimeInterval(n * 3600)
        }
        if let raw = env["HOSPITAL_SIGNING_KEY"], !raw.isEmpty { signingKeyPEM = raw }
        if let raw = env["HOSPITAL_SIGNING_KEY_FILE"], !raw.isEmpty { signingKeyFile = URL(fileURLWithPath: raw) }
        if let raw = env["HOSPITAL_AUTH_JWKS_URL"] {
            jwksURL = try HospitalConfiguration.url(raw, "HOSPITAL_AUTH_JWKS_URL")
        }
        if let raw = env["HOSPITAL_ALLOWED_HOSTS"] {
            allowedHosts = Self.commaList(raw)
        }
        for (name, keyPath) in [
            ("HOSPITAL_TRUSTED_PROXIES", \AuthConfiguration.trustedProxies),
            ("HOSPITAL_GATEWAY_ADDRESSES", \.gatewayAddresses),
        ] {
            guard let raw = env[name] else { continue }
            switch TrustedProxies.parse(Self.commaList(raw)) {
            case .success(let proxies): self[keyPath: keyPath] = proxies
            case .failure(let invalid):
                throw ConfigurationError(
                    "\(name): addresses or CIDR blocks (127.0.0.6/32, 192.0.2.0/28), not \(invalid.entry)")
            }
        }
        for (name, keyPath) in [
            ("HOSPITAL_RATE_LIMIT", \AuthConfiguration.rateLimit), ("HOSPITAL_SIGN_IN_RATE_LIMIT", \.signInRateLimit),
        ] {
            guard let raw = env[name] else { continue }
            guard let n = Double(raw), n >= 0, n.isFinite else {
                throw ConfigurationError("\(name): requests a second, 0 or more, not \(raw)")
            }
            self[keyPath: keyPath] = n
        }
        if let raw = env["HOSPITAL_PII_KEY"], !raw.isEmpty { piiKey = raw }
        if let raw = env["HOSPITAL_PII_OLD_KEYS"] { piiOldKeys = raw.split(separator: ",").map(String.init) }
        if let raw = env["HOSPITAL_PII_INDEX_KEY"], !raw.isEmpty { piiIndexKey = raw }
        if let raw = env["HOSPITAL_AUDIT_RETENTION_DAYS"] {
            guard let n = Int(raw), n == 0 || n >= 730, n <= 36_500 else {
                throw ConfigurationError(
                    "HOSPITAL_AUDIT_RETENTION_DAYS: at least 730 days (two years), or 0 to keep for good, not \(raw)")
            }
            auditRetention = n == 0 ? nil : .days(n)
        }
        if let raw = env["HOSPITAL_AUDIT_KEY"], !raw.isEmpty { auditKey = raw }
        if let raw = env["HOSPITAL_AUDIT_KEY_FILE"], !raw.isEmpty {
            guard let text = try? String(contentsOfFile: raw, encoding: .utf8) else {
                throw ConfigurationError("HOSPITAL_AUDIT_KEY_FILE: cannot read \(raw)")
            }
            auditKey = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let raw = env["HOSPITAL_AUDIT_OLD_KEYS"] { auditOldKeys = Self.commaList(raw) }
        if let raw = env["HOSPITAL_AUDIT_CHECKPOINT_SECONDS"] {
            guard let n = Int(raw), (1...3600).contains(n) else {
                throw ConfigurationError("HOSPITAL_AUDIT_CHECKPOINT_SECONDS: from 1 to 3600, not \(raw)")
            }
            auditCheckpointInterval = .seconds(n)
        }
        if let raw = env["HOSPITAL_BCRYPT_COST"] {
            guard let n = Int(raw), (10...31).contains(n) else {
                throw ConfigurationError("HOSPITAL_BCRYPT_COST: from 10 to 31, not \(raw)")
            }
            bcryptCost = n
        }
        if let raw = env["HOSPITAL_OIDC_ISSUER"], !raw.isEmpty {
            var oidc = try OIDCSettings(
                issuer: raw, clientID: env["HOSPITAL_OIDC_CLIENT_ID"] ?? "", audience: env["HOSPITAL_OIDC_AUDIENCE"])
            if let raw = env["HOSPITAL_OIDC_CLIENT_SECRET"], !raw.isEmpty { oidc.clientSecret = raw }
            if let raw = env["HOSPITAL_OIDC_CLIENT_SECRET_FILE"], !raw.isEmpty {
                guard let text = try? String(contentsOfFile: raw, encoding: .utf8) else {
                    throw ConfigurationError("HOSPITAL_OIDC_CLIENT_SECRET_FILE: cannot read \(raw)")
                }
                oidc.clientSecret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if let raw = env["HOSPITAL_OIDC_ROLES_CLAIM"] { oidc.rolesClaim = try OIDCSettings.claimPath(raw, "HOSPITAL_OIDC_ROLES_CLAIM") }
            if let raw = env["HOSPITAL_OIDC_DEPARTMENTS_CLAIM"] {
                oidc.departmentsClaim = try OIDCSettings.claimPath(raw, "HOSPITAL_OIDC_DEPARTMENTS_CLAIM")
            }
            if let raw = env["HOSPITAL_OIDC_USERNAME_CLAIM"] {
                oidc.usernameClaim = try OIDCSettings.claimPath(raw, "HOSPITAL_OIDC_USERNAME_CLAIM")
            }
            if let raw = env["HOSPITAL_OIDC_OPAQUE_TOKENS"] {
                guard let choice = OIDCSettings.OpaqueTokens(rawValue: raw) else {
                    throw ConfigurationError("HOSPITAL_OIDC_OPAQUE_TOKENS: refuse or userinfo, not \(raw)")
                }
                oidc.opaqueTokens = choice
            }
            if let raw = env["HOSPITAL_OIDC_REDIRECT_URL"], !raw.isEmpty {
                oidc.redirectURL = try HospitalConfiguration.url(raw, "HOSPITAL_OIDC_REDIRECT_URL").absoluteString
            }
            self.oidc = oidc
        }
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
