import Audit
import FluentKit
import FluentPostgresDriver
import Foundation
import Logging
import Messaging
import MessagingLocal
import NIOPosix
import SQLKit
import SQLiteKit
import ServiceKit
import Storage
import Synchronization

extension HospitalSystem {
    /// The topic the audit trails' checkpoints are published on.
    public static let auditCheckpointTopic = AuditTrail.checkpointTopic

    /// Where `hospital audit verify` found the checkpoints it held the trails against.
    public struct CheckpointSource: Sendable {
        public var checkpoints: [AuditCheckpoint]
        /// Where they came from, or why none could be read.
        public var description: String
        /// The event log could not be read (or is not there): the newest entries were held
        /// against nothing, which `verify` does not pass for a check.
        public var failed = false
    }

    /// Checks the audit trail of each service (the `audit-<service>.sqlite` files of the data
    /// directory, or each service's PostgreSQL database) against its seals, its retention sweeps
    /// and the checkpoints published on the event log (and in `logFiles`, log lines of `serve`).
    public static func verifyAuditTrails(
        configuration: HospitalConfiguration, logger: Logger, service only: ServiceName? = nil, logFiles: [URL] = []
    ) async throws -> (results: [(service: String, result: AuditVerification)], source: CheckpointSource) {
        // No trail at all: nothing to check (and no key to ask for).
        let files = ServiceName.allCases.filter { service in
            service != .gateway && (only == nil || only == service)
                && FileManager.default.fileExists(
                    atPath: configuration.dataDirectory.appendingPathComponent("audit-\(service.rawValue).sqlite").path)
        }
        if files.isEmpty, configuration.serviceDatabaseURLs.isEmpty, configuration.databaseURL == nil {
            return ([], CheckpointSource(checkpoints: [], description: "none"))
        }
        let keys = try AuditKeyring.keys(configuration, create: false)
        var source = await publishedCheckpoints(configuration: configuration, logger: logger)
        for file in logFiles {
            let text = try String(contentsOf: file, encoding: .utf8)
            let found = AuditCheckpointLog.checkpoints(in: text)
            source.checkpoints += found
            source.description += "; \(found.count) in \(file.lastPathComponent)"
        }
        let checkpoints = source.checkpoints
        var results: [(String, AuditVerification)] = []
        // On PostgreSQL: the trail is a table in each service's own database.
        var postgres = configuration.serviceDatabaseURLs
        if let url = configuration.databaseURL {
            guard let only else {
                throw ConfigurationError("--database names one service's database: say which with --service")
            }
            postgres[only] = url
        }
        if !postgres.isEmpty {
            for (service, url) in postgres.sorted(by: { $0.key.rawValue < $1.key.rawValue })
            where only == nil || only == service {
                let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
                databases.use(try .postgres(url: url, maxConnectionsPerEventLoop: 1, sqlLogLevel: .trace), as: .psql)
                let db = databases.database(.psql, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any(), withTracing: false)!
                do {
                    let result = try await AuditTrail.verify(
                        try db.sql, service: service.rawValue, keys: keys, checkpoints: checkpoints)
                    results.append((service.rawValue, result))
                    await databases.shutdownAsync()
                } catch {
                    await databases.shutdownAsync()
                    throw error
                }
            }
            return (results, source)
        }
        for service in files {
            let file = configuration.dataDirectory.appendingPathComponent("audit-\(service.rawValue).sqlite")
            let source = SQLiteConnectionSource(
                configuration: .init(storage: .file(path: file.path), enableForeignKeys: false), threadPool: .singleton)
            let connection = try await source.makeConnection(
                logger: logger, on: MultiThreadedEventLoopGroup.singleton.any()
            ).get()
            do {
                let result = try await AuditTrail.verify(
                    connection.sql(), service: service.rawValue, keys: keys, checkpoints: checkpoints)
                results.append((service.rawValue, result))
                try? await connection.close().get()
            } catch {
                try? await connection.close().get()
                throw error
            }
        }
        return (results, source)
    }

    /// The checkpoints on the event log (Kafka, or the local log of the data directory).
    private static func publishedCheckpoints(
        configuration: HospitalConfiguration, logger: Logger
    ) async -> CheckpointSource {
        let found = Mutex<[AuditCheckpoint]>([])
        let collect: @Sendable (IncomingMessage) async throws -> Void = { message in
            if let checkpoint = try? JSONDecoder().decode(AuditCheckpoint.self, from: message.value) {
                found.withLock { $0.append(checkpoint) }
            }
        }
        if configuration.kafkaBrokers != nil {
            do {
                let transport = try await Transport.open(configuration, clientId: "hospital-audit-verify", logger: logger)
                do {
                    try await transport.events.replay(topic: AuditTrail.checkpointTopic, handler: collect)
                    await transport.close()
                } catch {
                    await transport.close()
                    throw error
                }
                let checkpoints = found.withLock { $0 }
                return CheckpointSource(
                    checkpoints: checkpoints, description: "\(checkpoints.count) checkpoints on Kafka")
            } catch {
                return CheckpointSource(
                    checkpoints: [], description: "the checkpoints on Kafka could not be read: \(loggable(error))",
                    failed: true)
            }
        }
        let file = configuration.dataDirectory.appendingPathComponent(LocalEventLog.fileName)
        guard FileManager.default.fileExists(atPath: file.path) else {
            return CheckpointSource(
                checkpoints: [], description: "no event log in \(configuration.dataDirectory.path)", failed: true)
        }
        do {
            let log = try await LocalEventLog.open(directory: configuration.dataDirectory, logger: logger)
            do {
                try await log.retained(topic: AuditTrail.checkpointTopic, handler: collect)
                await log.close()
            } catch {
                await log.close()
                throw error
            }
            let checkpoints = found.withLock { $0 }
            return CheckpointSource(
                checkpoints: checkpoints, description: "\(checkpoints.count) checkpoints in \(LocalEventLog.fileName)")
        } catch {
            return CheckpointSource(
                checkpoints: [], description: "the local event log could not be read: \(loggable(error))", failed: true)
        }
    }
}

/// Checkpoints as `serve` logs them (plain or JSON lines): every `{…}` that decodes as one.
enum AuditCheckpointLog {
    static func checkpoints(in text: String) -> [AuditCheckpoint] {
        var found: [AuditCheckpoint] = []
        for line in text.split(whereSeparator: \.isNewline) where line.contains("audit_checkpoint") {
            // In a JSON log line the checkpoint is a string value: its quotes are escaped.
            let plain = line.replacingOccurrences(of: #"\""#, with: #"""#)
            var rest = plain[...]
            while let open = rest.firstIndex(of: "{") {
                guard let close = rest[open...].firstIndex(of: "}") else { break }
                if let checkpoint = try? JSONDecoder().decode(
                    AuditCheckpoint.self, from: Data(rest[open...close].utf8))
                {
                    found.append(checkpoint)
                }
                rest = rest[rest.index(after: open)...]
            }
        }
        return found
    }
}
