import Foundation
import Identity
import Logging
import ServiceKit
import SharedKernel

/// One row of the settings table: a `HOSPITAL_*` environment variable, the command-line option
/// that overrides it, what it means, its default (read from a default configuration, so the
/// reference cannot drift from the code), which processes read it, and how its value enters the
/// configuration (a bad value throws, naming the variable, and nothing starts).
///
/// `HospitalConfiguration.from(environment:)` applies the rows in order; `hospital settings`
/// prints them, and docs/configuration.md is that print (`ConfigurationReferenceTests`).
public struct Setting: Sendable {
    public let variable: String
    /// The command-line option that overrides it, if there is one.
    public let option: String?
    public let meaning: String
    public let readers: Readers
    /// Its default, as the default configuration has it.
    let defaultValue: @Sendable (HospitalConfiguration) -> String
    /// Nil for a setting read where it is used (named with the reader).
    let apply: (@Sendable (_ raw: String, _ variable: String, _ config: inout HospitalConfiguration) throws -> Void)?

    /// Which processes read a setting.
    public enum Readers: String, Sendable {
        case every = "every process"
        case gateway = "the gateway"
        case services = "every service"
        case reception
        case examination
        case kafka = "every service on Kafka"
        case commands = "every command (`serve`, `migrate`, `users`, `audit`, …)"
        case bench = "`hospital bench`"
        case backups = "`hospital backup`, `hospital restore`, and `serve` with scheduled backups"
    }

    init(
        _ variable: String, option: String? = nil, default defaultValue: @escaping @Sendable (HospitalConfiguration) -> String,
        _ readers: Readers, _ meaning: String,
        apply: (@Sendable (_ raw: String, _ variable: String, _ config: inout HospitalConfiguration) throws -> Void)?
    ) {
        self.variable = variable
        self.option = option
        self.defaultValue = defaultValue
        self.readers = readers
        self.meaning = meaning
        self.apply = apply
    }

    /// A default that is a phrase, not a value of the configuration.
    init(
        _ variable: String, option: String? = nil, default text: String, _ readers: Readers, _ meaning: String,
        apply: (@Sendable (_ raw: String, _ variable: String, _ config: inout HospitalConfiguration) throws -> Void)?
    ) {
        self.init(variable, option: option, default: { _ in text }, readers, meaning, apply: apply)
    }
}

/// The one table of settings.
public enum Settings {
    /// Every setting, in the order they are applied (a file setting after its value's, which it
    /// overrides).
    public static let table: [Setting] = general + perService + storage + messaging + kafka + authentication
        + keys + provider + backups

    /// The reference page (docs/configuration.md).
    public static func markdown() -> String {
        let defaults = HospitalConfiguration(dataDirectory: URL(fileURLWithPath: "hospital-data", isDirectory: true))
        var lines = [
            "# Configuration",
            "",
            "Every `HOSPITAL_*` environment variable a `hospital` process reads (\(table.count)): its command-line",
            "option where there is one (the option wins), its default, which processes read it, and what it",
            "means. A value that does not parse stops the process at start with a message naming the variable.",
            "Per service (`\(ServiceName.allCases.map(\.environmentStem).joined(separator: "`, `"))`) there are a port, an",
            "address and a database setting each, listed one by one.",
            "",
            "Printed by `hospital settings` from the one table of settings (`Sources/Runtime/Settings.swift`),",
            "which is also what reads them; `ConfigurationReferenceTests` fails when this page is not that print,",
            "or when the sources read a `HOSPITAL_*` variable the table does not have.",
            "",
            "| Setting | Option | Default | Read by | What |",
            "|---|---|---|---|---|",
        ]
        for setting in table {
            let cells = [
                "`\(setting.variable)`", setting.option.map { "`\($0)`" } ?? "", setting.defaultValue(defaults),
                setting.readers.rawValue, setting.meaning,
            ]
            lines.append("| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |")
        }
        lines += ["", "Back to the [README](../README.md).", ""]
        return lines.joined(separator: "\n")
    }

    // MARK: The rows

    private static let general: [Setting] = [
        Setting(
            "HOSPITAL_DATA_DIR", option: "--data-dir", default: "`hospital-data` (in the working directory)", .every,
            "where the SQLite databases, the local event log, the keys and (by default) the attachments live",
            apply: { raw, _, config in config.dataDirectory = URL(fileURLWithPath: raw, isDirectory: true) }),
        Setting(
            "HOSPITAL_HOST", option: "--host", default: { $0.host }, .every,
            "the address to listen on (`0.0.0.0` in a container)", apply: { raw, _, config in config.host = raw }),
        Setting(
            "HOSPITAL_LOG_LEVEL", option: "--log-level", default: { $0.logLevel.rawValue }, .every,
            "trace, debug, info, notice, warning, error or critical",
            apply: { raw, _, config in config.logLevel = try HospitalConfiguration.logLevel(raw) }),
        Setting(
            "HOSPITAL_LOG_FORMAT", default: "`text`", .commands,
            "`text`, or `json` (one object a line: timestamp, level, service, message, trace and request ids)",
            apply: nil),
        Setting(
            "HOSPITAL_TIME_ZONE", default: { $0.timeZone.identifier }, .services,
            "the hospital's time zone, for \"today\" and date filters",
            apply: { raw, variable, config in
                guard let zone = TimeZone(identifier: raw) else {
                    throw ConfigurationError("\(variable): unknown time zone \(raw)")
                }
                config.timeZone = zone
            }),
        Setting(
            "HOSPITAL_CLINIC_FILE", default: "the standard layout (docs/calling.md)", .services,
            "a JSON file of the departments (each its queue letter and rooms) and the rules of calling; checked at start",
            apply: { raw, variable, config in
                guard let data = FileManager.default.contents(atPath: raw) else {
                    throw ConfigurationError("\(variable): cannot read \(raw)")
                }
                do {
                    config.clinic = try ClinicLayout.parse(data)
                } catch {
                    throw ConfigurationError("\(variable): \(raw): \(error)")
                }
            }),
        Setting(
            "HOSPITAL_SHUTDOWN_DELAY_SECONDS", default: { "\($0.shutdownDelay.components.seconds)" }, .every,
            "on SIGTERM, how long `/health/ready` answers 503 while the process still serves, before the servers stop (0 to 120; a few seconds in a cluster)",
            apply: { raw, variable, config in
                guard let n = Int(raw), (0...120).contains(n) else {
                    throw ConfigurationError("\(variable): 0 to 120, not \(raw)")
                }
                config.shutdownDelay = .seconds(n)
            }),
        Setting(
            "HOSPITAL_METRICS_PATH", default: { $0.metricsPath ?? "off" }, .every,
            "where each port serves its Prometheus metrics; `off` serves none",
            apply: { raw, variable, config in
                if raw == "off" {
                    config.metricsPath = nil
                    return
                }
                guard raw.hasPrefix("/"), raw.count > 1, raw.count < 100,
                    raw.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "/-_.".contains($0)) }),
                    !raw.contains("//")
                else {
                    throw ConfigurationError("\(variable): a path such as /metrics, or off, not \(raw)")
                }
                config.metricsPath = raw
            }),
        Setting(
            "HOSPITAL_IDLE_TIMEOUT_SECONDS", default: { "\($0.idleTimeoutSeconds)" }, .every,
            "a connection that sends and receives nothing for this long is closed",
            apply: { raw, variable, config in config.idleTimeoutSeconds = Int64(try positive(raw, variable)) }),
        Setting(
            "HOSPITAL_ATTACHMENTS_DIR", option: "--attachments-dir", default: "`attachments` in the data directory",
            .examination,
            "where examination result files go; every examination replica must see the same directory (a ReadWriteMany volume)",
            apply: { raw, _, config in
                if !raw.isEmpty { config.attachmentsDirectory = URL(fileURLWithPath: raw, isDirectory: true) }
            }),
        Setting(
            "HOSPITAL_ATTACHMENT_MAX_MB", default: { "\($0.attachmentMaxBytes / 1_048_576)" }, .examination,
            "the largest result file, in MiB",
            apply: { raw, variable, config in config.attachmentMaxBytes = Int64(try positive(raw, variable)) * 1_048_576 }
        ),
        Setting(
            "HOSPITAL_ATTACHMENT_GRACE_SECONDS", default: { "\(Int($0.attachmentGrace))" }, .examination,
            "how long a temporary or unreferenced file is left alone before a sweep removes it",
            apply: { raw, variable, config in config.attachmentGrace = TimeInterval(try positive(raw, variable)) }),
    ]

    /// A port, an address and a database for each service of the catalog (and the gateway).
    private static let perService: [Setting] = ServiceName.allCases.flatMap { service -> [Setting] in
        let stem = "HOSPITAL_\(service.environmentStem)"
        var rows = [
            Setting(
                "\(stem)_PORT", option: "--\(service.rawValue)-port", default: { "\($0.port(of: service))" }, .every,
                "the port `\(service.rawValue)` listens on (0 picks a free one)",
                apply: { raw, variable, config in config.ports[service] = try HospitalConfiguration.port(raw, variable) }),
            Setting(
                "\(stem)_URL", default: { $0.upstream(of: service).absoluteString }, .every,
                "where a process that does not run `\(service.rawValue)` reaches it",
                apply: { raw, variable, config in config.upstreams[service] = try HospitalConfiguration.url(raw, variable) }
            ),
        ]
        if service == .gateway {
            rows.append(
                Setting(
                    "\(stem)_DATABASE_URL", default: "`accounts.sqlite` in the data directory", .gateway,
                    "the gateway's PostgreSQL database (accounts and sessions, shared by its replicas); without it the replicas share the data directory",
                    apply: { raw, variable, config in
                        config.gatewayDatabaseURL = try HospitalConfiguration.postgresURL(raw, variable)
                    }))
        } else {
            rows.append(
                Setting(
                    "\(stem)_DATABASE_URL", default: "`\(service.rawValue).sqlite` in the data directory", .services,
                    "\(service.rawValue)'s own PostgreSQL database, when a process runs several services",
                    apply: { raw, variable, config in
                        config.serviceDatabaseURLs[service] = try HospitalConfiguration.postgresURL(raw, variable)
                    }))
        }
        return rows
    }

    private static let storage: [Setting] = [
        Setting(
            "HOSPITAL_DATABASE_URL", option: "--database", default: "a SQLite file per service", .services,
            "the PostgreSQL database of the one service this process runs (`postgres://USER[:PASSWORD]@HOST:PORT/DB`)",
            apply: { raw, variable, config in config.databaseURL = try HospitalConfiguration.postgresURL(raw, variable) }),
        Setting(
            "HOSPITAL_DATABASE_POOL_SIZE", default: { "\($0.databasePoolSize)" }, .services,
            "PostgreSQL connections per event loop",
            apply: { raw, variable, config in config.databasePoolSize = try positive(raw, variable) }),
        Setting(
            "HOSPITAL_AUTO_MIGRATE", option: "--no-migrate", default: { "\($0.autoMigrate)" }, .services,
            "whether `serve` applies pending migrations, or expects `hospital migrate` to have done it",
            apply: { raw, variable, config in
                guard let value = Bool(raw.lowercased()) else {
                    throw ConfigurationError("\(variable): true or false, not \(raw)")
                }
                config.autoMigrate = value
            }),
    ]

    private static let messaging: [Setting] = [
        Setting(
            "HOSPITAL_RELAY_POLL_MS", default: { "\(milliseconds($0.relayPollInterval))" }, .services,
            "how often the outbox relay looks for rows committed elsewhere (another replica)",
            apply: { raw, variable, config in config.relayPollInterval = .milliseconds(try positive(raw, variable)) }),
        Setting(
            "HOSPITAL_LOG_POLL_MS", default: { "\(milliseconds($0.logPollInterval))" }, .services,
            "how often consumers look for events appended to the local event log by other processes",
            apply: { raw, variable, config in config.logPollInterval = .milliseconds(try positive(raw, variable)) }),
        Setting(
            "HOSPITAL_CONSUMER_MAX_ATTEMPTS", default: { "\($0.consumerMaxAttempts)" }, .services,
            "attempts before a failing event goes to the dead-letter store",
            apply: { raw, variable, config in config.consumerMaxAttempts = try positive(raw, variable) }),
        Setting(
            "HOSPITAL_CONSUMER_BATCH_SIZE", default: { "\($0.consumerBatchSize)" }, .services,
            "the most events a consumer applies in one transaction",
            apply: { raw, variable, config in config.consumerBatchSize = try positive(raw, variable) }),
        Setting(
            "HOSPITAL_OUTBOX_RETENTION_DAYS", default: { days($0.retention.outbox) }, .services,
            "how long published outbox rows are kept (0: for good)",
            apply: { raw, variable, config in config.retention.outbox = try days(raw, variable) }),
        Setting(
            "HOSPITAL_INBOX_RETENTION_DAYS", default: { days($0.retention.inbox) }, .services,
            "how long handled-event ids are kept (0: for good)",
            apply: { raw, variable, config in config.retention.inbox = try days(raw, variable) }),
        Setting(
            "HOSPITAL_EVENT_LOG_RETENTION_DAYS", default: { days($0.eventLogRetention) }, .services,
            "how long the local event log keeps events (0: for good, which a rebuild of the desk's board needs: it refuses a trimmed log)",
            apply: { raw, variable, config in config.eventLogRetention = try days(raw, variable) }),
    ]

    private static let kafka: [Setting] = [
        Setting(
            "HOSPITAL_KAFKA_BROKERS", option: "--kafka-brokers", default: "none: the local event log", .services,
            "`host:port[,…]` of Apache Kafka",
            apply: { raw, _, config in if !raw.isEmpty { config.kafkaBrokers = raw } }),
        Setting(
            "HOSPITAL_KAFKA_TOPIC", default: { $0.kafkaTopic }, .kafka, "the topic of the visit events",
            apply: { raw, _, config in if !raw.isEmpty { config.kafkaTopic = raw } }),
        Setting(
            "HOSPITAL_KAFKA_GROUP_PREFIX", default: { $0.kafkaGroupPrefix }, .kafka,
            "consumer groups are this prefix and the service's name",
            apply: { raw, _, config in config.kafkaGroupPrefix = raw }),
        Setting(
            "HOSPITAL_KAFKA_PARTITIONS", default: { "\($0.kafkaPartitions)" }, .kafka,
            "partitions of the topic, if it must be created",
            apply: { raw, variable, config in config.kafkaPartitions = try positive(raw, variable) }),
        Setting(
            "HOSPITAL_KAFKA_REPLICATION_FACTOR", default: { "\($0.kafkaReplicationFactor)" }, .kafka,
            "replication factor of the topic, if it must be created",
            apply: { raw, variable, config in config.kafkaReplicationFactor = try positive(raw, variable) }),
        Setting(
            "HOSPITAL_KAFKA_DELIVERY_TIMEOUT_MS", default: { "\(milliseconds($0.kafkaDeliveryTimeout))" }, .kafka,
            "how long one publish waits for the brokers before the relay retries it",
            apply: { raw, variable, config in config.kafkaDeliveryTimeout = .milliseconds(try positive(raw, variable)) }),
        Setting(
            "HOSPITAL_KAFKA_PROPERTIES", default: "none", .kafka, "further librdkafka properties, `key=value,key=value`",
            apply: { raw, _, config in config.kafkaProperties = try HospitalConfiguration.properties(raw) }),
        Setting(
            "HOSPITAL_KAFKA_SESSION_TIMEOUT_MS", default: { "\(milliseconds($0.kafkaSessionTimeout))" }, .kafka,
            "how long a consumer group waits for a silent member (heartbeats every third of it)",
            apply: { raw, variable, config in config.kafkaSessionTimeout = .milliseconds(try positive(raw, variable)) }),
        Setting(
            "HOSPITAL_KAFKA_INSTANCE_ID", default: "`POD_NAME` if set, else dynamic membership", .kafka,
            "this process's static group membership (`group.instance.id`), unique per replica: a restarted replica takes its partitions back at once",
            apply: { raw, _, config in if !raw.isEmpty { config.kafkaInstanceId = raw } }),
    ]

    private static let authentication: [Setting] = [
        Setting(
            "HOSPITAL_AUTH_ISSUER", default: { $0.auth.issuer }, .every,
            "the `iss` of the tokens this system issues and expects",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.issuer = raw } }),
        Setting(
            "HOSPITAL_AUTH_AUDIENCE", default: { $0.auth.audience }, .every,
            "the `aud` they are issued for, and that every service expects",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.audience = raw } }),
        Setting(
            "HOSPITAL_TOKEN_MINUTES", default: { "\(Int($0.auth.tokenLifetime / 60))" }, .gateway,
            "how long an access token is valid (1 to 720): also how long after a revocation a process that cannot reach the gateway may still accept one",
            apply: { raw, variable, config in
                config.auth.tokenLifetime = TimeInterval(try whole(raw, variable, 1...720, "minutes") * 60)
            }),
        Setting(
            "HOSPITAL_SESSION_IDLE_MINUTES", default: { "\(Int($0.auth.sessions.idle / 60))" }, .gateway,
            "a screen session unused this long ends (1 to 720; short, for shared ward PCs)",
            apply: { raw, variable, config in
                config.auth.sessions.idle = TimeInterval(try whole(raw, variable, 1...720, "minutes") * 60)
            }),
        Setting(
            "HOSPITAL_SESSION_HOURS", default: { "\(Int($0.auth.sessions.absolute / 3600))" }, .gateway,
            "a screen session ends this long after sign-in, however used (1 to 24)",
            apply: { raw, variable, config in
                config.auth.sessions.absolute = TimeInterval(try whole(raw, variable, 1...24, "hours") * 3600)
            }),
        Setting(
            "HOSPITAL_DEVICE_DAYS", default: { "\(Int($0.auth.sessions.device / 86_400))" }, .gateway,
            "a waiting-room display device an administrator issued lasts this long unless revoked (1 to 730)",
            apply: { raw, variable, config in
                config.auth.sessions.device = TimeInterval(try whole(raw, variable, 1...730, "days") * 86_400)
            }),
        Setting(
            "HOSPITAL_SIGNING_KEY", default: "`HOSPITAL_SIGNING_KEY_FILE`", .every,
            "the ES256 private key (PEM) that signs tokens, from a secret",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.signingKeyPEM = raw } }),
        Setting(
            "HOSPITAL_SIGNING_KEY_FILE", default: "`signing-key.pem` in the data directory, created on first start",
            .every, "the file of that key",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.signingKeyFile = URL(fileURLWithPath: raw) } }),
        Setting(
            "HOSPITAL_AUTH_JWKS_URL", default: "the gateway's `/.well-known/jwks.json`", .services,
            "where a service in a process without the gateway reads the keys that verify tokens",
            apply: { raw, variable, config in config.auth.jwksURL = try HospitalConfiguration.url(raw, variable) }),
        Setting(
            "HOSPITAL_BCRYPT_COST", default: { "\($0.auth.bcryptCost)" }, .gateway,
            "the cost of password hashes (10 to 31)",
            apply: { raw, variable, config in config.auth.bcryptCost = try whole(raw, variable, 10...31, nil) }),
        Setting(
            "HOSPITAL_ALLOWED_HOSTS", default: "none besides localhost", .gateway,
            "the host names the gateway serves (`Host`), comma-separated, besides localhost, 127.0.0.1, ::1 and the address it listens on",
            apply: { raw, _, config in config.auth.allowedHosts = AuthConfiguration.commaList(raw) }),
        Setting(
            "HOSPITAL_TRUSTED_PROXIES", default: "none", .gateway,
            "the addresses of the proxies in front of the gateway (addresses or CIDR blocks, comma-separated): only their `X-Forwarded-For` is believed",
            apply: { raw, variable, config in config.auth.trustedProxies = try addresses(raw, variable) }),
        Setting(
            "HOSPITAL_GATEWAY_ADDRESSES", default: "loopback", .services,
            "where a service believes `X-Forwarded-For` from (the gateway's addresses or CIDR blocks)",
            apply: { raw, variable, config in config.auth.gatewayAddresses = try addresses(raw, variable) }),
        Setting(
            "HOSPITAL_RATE_LIMIT", default: { number($0.auth.rateLimit) }, .gateway,
            "requests a second per client address (a burst of twice that); 0: no limit",
            apply: { raw, variable, config in config.auth.rateLimit = try rate(raw, variable) }),
        Setting(
            "HOSPITAL_SIGN_IN_RATE_LIMIT", default: { number($0.auth.signInRateLimit) }, .gateway,
            "sign-in attempts a second per client address (a burst of ten times that); 0: no limit",
            apply: { raw, variable, config in config.auth.signInRateLimit = try rate(raw, variable) }),
    ]

    private static let backups: [Setting] = [
        Setting(
            "HOSPITAL_BACKUP_EVERY", option: "--backup-every", default: "none: no scheduled backup", .backups,
            "how often `serve` backs up the data directory (`30m`, `6h`, `1d`; at least `1m`); needs `HOSPITAL_BACKUP_TO`",
            apply: { raw, variable, config in config.backup.every = try interval(raw, variable) }),
        Setting(
            "HOSPITAL_BACKUP_TO", option: "--backup-to", default: "none", .backups,
            "the directory of backups, each a subdirectory; on another disk than the data directory",
            apply: { raw, _, config in config.backup.directory = URL(fileURLWithPath: raw, isDirectory: true) }),
        Setting(
            "HOSPITAL_BACKUP_KEEP", option: "--keep", default: { "\($0.backup.keep)" }, .backups,
            "how many whole backups a backup leaves in the directory (the oldest go)",
            apply: { raw, variable, config in config.backup.keep = try whole(raw, variable, 1...10_000, nil) }),
        Setting(
            "HOSPITAL_BACKUP_KEY", default: "none: backups are not encrypted and hold no keys", .backups,
            "base64 of 32 bytes, from a secret kept apart from the backups (`hospital backup --new-key`): encrypts every backup (AES-256-GCM), which then holds the keys too",
            apply: { raw, _, config in if !raw.isEmpty { config.backup.key = raw } }),
        Setting(
            "HOSPITAL_BACKUP_KEY_FILE", option: "--key-file", default: "none", .backups,
            "a file holding the backup key (overrides `HOSPITAL_BACKUP_KEY`)",
            apply: { raw, _, config in config.backup.keyFile = URL(fileURLWithPath: raw) }),
    ]

    /// `90s`, `30m`, `6h`, `1d`: at least a minute.
    private static func interval(_ raw: String, _ variable: String) throws -> Duration {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = raw.last.flatMap({ units[$0] }), let n = Int64(raw.dropLast()), n > 0, n <= 30 * 86_400,
            n * unit >= 60, n * unit <= 30 * 86_400
        else { throw ConfigurationError("\(variable): a number and s, m, h or d, from 1m to 30d, not \(raw)") }
        return .seconds(n * unit)
    }

    private static let keys: [Setting] = [
        Setting(
            "HOSPITAL_PII_KEY", default: "`pii-key` in the data directory, created 0600 on first start", .reception,
            "base64 of 32 bytes, from a secret: encrypts resident registration numbers (AES-256-GCM); replicas share it",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.piiKey = raw } }),
        Setting(
            "HOSPITAL_PII_OLD_KEYS", default: "none", .reception,
            "retired keys, comma-separated: they still open what they sealed",
            apply: { raw, _, config in config.auth.piiOldKeys = raw.split(separator: ",").map(String.init) }),
        Setting(
            "HOSPITAL_PII_INDEX_KEY", default: "the first key", .reception,
            "the key of the lookup index (the first key ever used), so a rotation keeps every index",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.piiIndexKey = raw } }),
        Setting(
            "HOSPITAL_AUDIT_RETENTION_DAYS", default: { days($0.auth.auditRetention) }, .services,
            "how long the audit trail is kept: at least 730 (two years), or 0 for good",
            apply: { raw, variable, config in
                guard let n = Int(raw), n == 0 || n >= 730, n <= 36_500 else {
                    throw ConfigurationError(
                        "\(variable): at least 730 days (two years), or 0 to keep for good, not \(raw)")
                }
                config.auth.auditRetention = n == 0 ? nil : .days(n)
            }),
        Setting(
            "HOSPITAL_AUDIT_KEY", default: "`audit-key` in the data directory, created 0600 on first start",
            .services, "base64 of 32 bytes, from a secret: seals the audit trail's entries and checkpoints; replicas of a service share it",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.auditKey = raw } }),
        Setting(
            "HOSPITAL_AUDIT_KEY_FILE", default: "none", .services, "a file holding that key (wins over the variable)",
            apply: { raw, variable, config in
                guard !raw.isEmpty else { return }
                guard let text = try? String(contentsOfFile: raw, encoding: .utf8) else {
                    throw ConfigurationError("\(variable): cannot read \(raw)")
                }
                config.auth.auditKey = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }),
        Setting(
            "HOSPITAL_AUDIT_OLD_KEYS", default: "none", .services,
            "retired audit keys, comma-separated: they still check what they sealed",
            apply: { raw, _, config in config.auth.auditOldKeys = AuthConfiguration.commaList(raw) }),
        Setting(
            "HOSPITAL_AUDIT_CHECKPOINT_SECONDS", default: { "\($0.auth.auditCheckpointInterval.components.seconds)" },
            .services,
            "how often each service publishes a sealed checkpoint of its trail's head when it moved (1 to 3600): entries newer than the last checkpoint are the ones that can be cut from the end without a trace",
            apply: { raw, variable, config in
                config.auth.auditCheckpointInterval = .seconds(try whole(raw, variable, 1...3600, nil))
            }),
        Setting(
            "HOSPITAL_BENCH_PASSWORD", default: "asked on the terminal", .bench,
            "the password of a running system's desk, doctor and examiner accounts", apply: nil),
    ]

    /// An external OpenID Connect provider: read together (`AuthConfiguration.readProvider`),
    /// since the issuer turns the others on.
    private static let provider: [Setting] = [
        Setting(
            "HOSPITAL_OIDC_ISSUER", option: "--oidc-issuer", default: "none: local accounts", .every,
            "the provider's issuer URL (its discovery document under it); setting it turns local accounts off",
            apply: { raw, _, config in config.auth.provider.issuer = raw }),
        Setting(
            "HOSPITAL_OIDC_CLIENT_ID", option: "--oidc-client-id", default: "none (needed with an issuer)", .every,
            "this system's client at the provider", apply: { raw, _, config in config.auth.provider.clientID = raw }),
        Setting(
            "HOSPITAL_OIDC_CLIENT_SECRET", default: "none: a public client (PKCE)", .gateway,
            "its client secret, from a secret store (never an option: `ps` would show it)",
            apply: { raw, _, config in if !raw.isEmpty { config.auth.provider.clientSecret = raw } }),
        Setting(
            "HOSPITAL_OIDC_CLIENT_SECRET_FILE", default: "none", .gateway, "a file holding it (wins over the variable)",
            apply: { raw, variable, config in
                guard !raw.isEmpty else { return }
                guard let text = try? String(contentsOfFile: raw, encoding: .utf8) else {
                    throw ConfigurationError("\(variable): cannot read \(raw)")
                }
                config.auth.provider.clientSecret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }),
        Setting(
            "HOSPITAL_OIDC_AUDIENCE", option: "--oidc-audience", default: "the client id", .every,
            "the `aud` an access token must carry to call the API",
            apply: { raw, _, config in config.auth.provider.audience = raw }),
        Setting(
            "HOSPITAL_OIDC_ROLES_CLAIM", option: "--oidc-roles-claim", default: "`roles`", .every,
            "the claim with the user's roles, dotted (`realm_access.roles` for Keycloak)",
            apply: { raw, variable, config in config.auth.provider.rolesClaim = try OIDCSettings.claimPath(raw, variable) }
        ),
        Setting(
            "HOSPITAL_OIDC_USERNAME_CLAIM", default: "`preferred_username` (`sub` when absent)", .every,
            "the claim that names the user",
            apply: { raw, variable, config in
                config.auth.provider.usernameClaim = try OIDCSettings.claimPath(raw, variable)
            }),
        Setting(
            "HOSPITAL_OIDC_DEPARTMENTS_CLAIM", default: "`departments`", .every,
            "the claim with the user's departments in an access token, dotted (a screen session's are those an administrator assigned: `hospital users departments`)",
            apply: { raw, variable, config in
                config.auth.provider.departmentsClaim = try OIDCSettings.claimPath(raw, variable)
            }),
        Setting(
            "HOSPITAL_OIDC_OPAQUE_TOKENS", default: "`refuse`", .every,
            "what an opaque (not JWT) access token is worth: `refuse`, or `userinfo` (asked at the provider; its audience cannot be checked)",
            apply: { raw, variable, config in
                guard let choice = OIDCSettings.OpaqueTokens(rawValue: raw) else {
                    throw ConfigurationError("\(variable): refuse or userinfo, not \(raw)")
                }
                config.auth.provider.opaqueTokens = choice
            }),
        Setting(
            "HOSPITAL_OIDC_REDIRECT_URL", default: "`<scheme>://<Host>/login/oidc/callback` of the request", .gateway,
            "the callback registered at the provider",
            apply: { raw, variable, config in
                guard !raw.isEmpty else { return }
                config.auth.provider.redirectURL = try HospitalConfiguration.url(raw, variable).absoluteString
            }),
    ]

    // MARK: Parsing

    private static func positive(_ raw: String, _ variable: String) throws -> Int {
        guard let n = Int(raw), n > 0 else { throw ConfigurationError("\(variable): not a positive number: \(raw)") }
        return n
    }

    private static func whole(_ raw: String, _ variable: String, _ range: ClosedRange<Int>, _ unit: String?) throws
        -> Int
    {
        guard let n = Int(raw), range.contains(n) else {
            let what = unit.map { "a whole number of \($0) from" } ?? "from"
            throw ConfigurationError("\(variable): \(what) \(range.lowerBound) to \(range.upperBound), not \(raw)")
        }
        return n
    }

    /// A whole number of days; 0 means "keep for good" (nil).
    private static func days(_ raw: String, _ variable: String) throws -> Duration? {
        guard let n = Int(raw), (0...36_500).contains(n) else {
            throw ConfigurationError("\(variable): a whole number of days from 0 (keep for good) to 36500, not \(raw)")
        }
        return n == 0 ? nil : .days(n)
    }

    private static func rate(_ raw: String, _ variable: String) throws -> Double {
        guard let n = Double(raw), n >= 0, n.isFinite else {
            throw ConfigurationError("\(variable): requests a second, 0 or more, not \(raw)")
        }
        return n
    }

    private static func addresses(_ raw: String, _ variable: String) throws -> TrustedProxies {
        switch TrustedProxies.parse(AuthConfiguration.commaList(raw)) {
        case .success(let proxies): return proxies
        case .failure(let invalid):
            throw ConfigurationError(
                "\(variable): addresses or CIDR blocks (127.0.0.6/32, 192.0.2.0/28), not \(invalid.entry)")
        }
    }

    // MARK: Printing defaults

    private static func days(_ duration: Duration?) -> String {
        guard let duration else { return "0 (for good)" }
        return "\(duration.components.seconds / 86_400)"
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    private static func number(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))" : "\(value)"
    }
}
