import Foundation
import Logging

/// The parts of the system a `hospital` process can run.
public enum ServiceName: String, CaseIterable, Sendable, Codable {
    case gateway
    case reception
    case diagnosis
    case examination
    case patientManagement = "patient-management"

    public var defaultPort: Int {
        switch self {
        case .gateway: 8088
        case .reception: 8082
        case .diagnosis: 8083
        case .examination: 8084
        case .patientManagement: 8085
        }
    }

    /// The environment variable's stem, e.g. PATIENT_MANAGEMENT.
    var environmentStem: String { rawValue.uppercased().replacingOccurrences(of: "-", with: "_") }
}

/// Every setting of a `hospital` process, with development defaults. Each setting's
/// environment variable is named next to it; command-line flags override the environment.
public struct HospitalConfiguration: Sendable {
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
    /// HOSPITAL_RELAY_POLL_MS: how often the outbox relay looks for rows committed elsewhere.
    public var relayPollInterval: Duration
    /// HOSPITAL_LOG_POLL_MS: how often consumers look for events appended by other processes.
    public var logPollInterval: Duration
    /// HOSPITAL_CONSUMER_MAX_ATTEMPTS: attempts before a failing event goes to the dead-letter store.
    public var consumerMaxAttempts: Int

    public init(dataDirectory: URL) {
        self.dataDirectory = dataDirectory
        host = "127.0.0.1"
        ports = Dictionary(uniqueKeysWithValues: ServiceName.allCases.map { ($0, $0.defaultPort) })
        upstreams = [:]
        logLevel = .info
        timeZone = TimeZone(identifier: "Asia/Seoul")!
        relayPollInterval = .milliseconds(200)
        logPollInterval = .milliseconds(100)
        consumerMaxAttempts = 5
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
        if let raw = env["HOSPITAL_RELAY_POLL_MS"] {
            config.relayPollInterval = .milliseconds(try positive(raw, "HOSPITAL_RELAY_POLL_MS"))
        }
        if let raw = env["HOSPITAL_LOG_POLL_MS"] {
            config.logPollInterval = .milliseconds(try positive(raw, "HOSPITAL_LOG_POLL_MS"))
        }
        if let raw = env["HOSPITAL_CONSUMER_MAX_ATTEMPTS"] {
            config.consumerMaxAttempts = try positive(raw, "HOSPITAL_CONSUMER_MAX_ATTEMPTS")
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

    public static func logLevel(_ raw: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: raw.lowercased()) else {
            throw ConfigurationError(
                "log level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }

    private static func positive(_ raw: String, _ name: String) throws -> Int {
        guard let n = Int(raw), n > 0 else { throw ConfigurationError("\(name): not a positive number: \(raw)") }
        return n
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
