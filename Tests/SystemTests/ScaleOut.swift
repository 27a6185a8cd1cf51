import FluentKit
import FluentPostgresDriver
import Foundation
import Logging
import NIOPosix
import Runtime
import SQLKit
import Synchronization
import TestSupport
import Testing

/// The scale-out path for real: one `hospital` process per service (and replicas), each on its
/// own PostgreSQL database, events over Kafka (librdkafka's mock cluster, `hospital dev kafka`),
/// a gateway in front. Needs a binary built with `--traits Kafka`, HOSPITAL_TEST_KAFKA=1 and
/// HOSPITAL_TEST_POSTGRES_URL.
final class ScaleOut: @unchecked Sendable {
    static var enabled: Bool {
        ProcessInfo.processInfo.environment["HOSPITAL_TEST_KAFKA"] == "1" && TestSystem.onPostgres
    }

    /// Makes the mock cluster answer quickly (its defaults wait up to 500 ms per fetch).
    static let tuning =
        "fetch.wait.max.ms=1,linger.ms=1,session.timeout.ms=6000,heartbeat.interval.ms=500,"
        + "reconnect.backoff.ms=10,reconnect.backoff.max.ms=200,topic.metadata.refresh.interval.ms=1000"

    let kafka: MockKafka
    let directory: URL
    let prefix: String
    private let lock = NSLock()
    private var processes: [ServiceName: [HospitalProcess]] = [:]
    private var ports: [ServiceName: [Int]] = [:]
    private(set) var gateway: URL!
    private var gatewayProcess: HospitalProcess?
    /// Settings every service process gets beyond the defaults.
    private var extraEnvironment: [String: String] = [:]
    /// One audit key for every replica of a service, as a mounted secret would be.
    private let auditKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()

    private init(kafka: MockKafka, directory: URL) {
        self.kafka = kafka
        self.directory = directory
        prefix = "s_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
    }

    /// Starts the whole system; `replicas` says how many processes run each consuming service.
    static func start(
        replicas: [ServiceName: Int] = [:], environment: [String: String] = [:]
    ) async throws -> ScaleOut {
        let system = ScaleOut(kafka: try await MockKafka.start(), directory: TestSystem.temporaryDirectory())
        system.extraEnvironment = environment
        for service in [ServiceName.reception, .diagnosis, .examination, .patientManagement] {
            try await PostgresDatabases.ensure(system.databaseName(service), on: TestSystem.postgres!)
            for replica in 0..<(replicas[service] ?? 1) {
                try await system.start(service, replica: replica)
            }
        }
        var upstreams: [String: String] = [:]
        for service in [ServiceName.reception, .diagnosis, .examination, .patientManagement] {
            let stem = service.rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
            upstreams["HOSPITAL_\(stem)_URL"] = "http://127.0.0.1:\(system.ports[service]![0])"
        }
        system.gatewayProcess = try await HospitalProcess.serve(
            [.gateway], dataDirectory: system.directory, environment: upstreams)
        system.gateway = system.gatewayProcess!.url(.gateway)
        return system
    }

    func databaseName(_ service: ServiceName) -> String {
        prefix + "_" + service.rawValue.replacingOccurrences(of: "-", with: "_")
    }

    private func environment(_ service: ServiceName, replica: Int) -> [String: String] {
        var url = URLComponents(url: TestSystem.postgres!, resolvingAgainstBaseURL: false)!
        url.path = "/" + databaseName(service)
        return [
            "HOSPITAL_DATABASE_URL": url.url!.absoluteString, "HOSPITAL_KAFKA_BROKERS": kafka.bootstrap,
            "HOSPITAL_KAFKA_PROPERTIES": Self.tuning, "HOSPITAL_KAFKA_DELIVERY_TIMEOUT_MS": "5000",
            "HOSPITAL_KAFKA_GROUP_PREFIX": prefix + ".",
            // As a StatefulSet's or Deployment's pod name would: the same after a restart.
            "POD_NAME": "\(service.rawValue)-\(replica)",
            // One attachments directory for every examination replica, as a ReadWriteMany volume.
            "HOSPITAL_ATTACHMENTS_DIR": directory.appendingPathComponent("attachments").path,
            "HOSPITAL_AUDIT_KEY": auditKey,
        ].merging(extraEnvironment) { $1 }
    }

    /// Starts (or restarts, on its old port) one replica of `service`.
    func start(_ service: ServiceName, replica: Int = 0) async throws {
        let port = lock.withLock { ports[service].flatMap { replica < $0.count ? $0[replica] : nil } } ?? 0
        let process = try await HospitalProcess.serve(
            [service], dataDirectory: directory.appendingPathComponent("\(service.rawValue)-\(replica)"),
            ports: [service: port], environment: environment(service, replica: replica))
        let bound = try #require(process.port(service))
        lock.withLock {
            var list = processes[service] ?? []
            var bounds = ports[service] ?? []
            if replica < list.count {
                list[replica] = process
            } else {
                list.append(process)
                bounds.append(bound)
            }
            processes[service] = list
            ports[service] = bounds
        }
    }

    /// Where a replica of a service listens (its own port).
    func url(of service: ServiceName, replica: Int = 0) -> URL {
        URL(string: "http://127.0.0.1:\(lock.withLock { ports[service]![replica] })")!
    }

    func kill(_ service: ServiceName, replica: Int = 0) {
        lock.withLock { processes[service]![replica] }.kill()
    }

    func stop() {
        gatewayProcess?.kill()
        for process in lock.withLock({ processes.values.flatMap { $0 } }) { process.kill() }
        kafka.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// A number from `service`'s own database.
    func scalar(_ service: ServiceName, _ query: String) async throws -> Int {
        try await PostgresDatabases.scalar(query, in: databaseName(service), on: TestSystem.postgres!)
    }

    // MARK: HTTP through the gateway

    func post(_ path: String, _ json: [String: Any]) async throws -> HTTPResult {
        try await HTTPResult.send(.POST, gateway, path, body: try JSONSerialization.data(withJSONObject: json))
    }

    func get(_ path: String) async throws -> HTTPResult { try await HTTPResult.send(.GET, gateway, path) }

    func patch(_ path: String, _ json: [String: Any]) async throws -> HTTPResult {
        try await HTTPResult.send(.PATCH, gateway, path, body: try JSONSerialization.data(withJSONObject: json))
    }

    func total(_ path: String) async throws -> Int {
        try await get(path).json["total"] as? Int ?? -1
    }
}

/// `hospital dev kafka`: the mock cluster in a process of its own, taking `down`/`up` on stdin.
final class MockKafka: Sendable {
    let bootstrap: String
    private let process: ChildProcess
    private let input: FileHandle

    private init(bootstrap: String, process: ChildProcess, input: FileHandle) {
        self.bootstrap = bootstrap
        self.process = process
        self.input = input
    }

    static func start() async throws -> MockKafka {
        let process = ChildProcess()
        process.executableURL = HospitalProcess.executable
        process.arguments = ["dev", "kafka", "--brokers", "3", "--partitions", "6"]
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle.standardError
        try HospitalProcess.launch(process)
        let firstLine = OutputBuffer()
        output.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            firstLine.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        let bootstrap = try await eventually("the mock cluster's bootstrap address") {
            if !process.isRunning { throw ProcessFailed(output: firstLine.text.withLock { $0 }) }
            return firstLine.text.withLock { text in
                text.contains("\n") ? String(text.prefix { $0 != "\n" }) : nil
            }
        }
        return MockKafka(bootstrap: bootstrap, process: process, input: input.fileHandleForWriting)
    }

    func down() { input.write(Data("down\n".utf8)) }
    func up() { input.write(Data("up\n".utf8)) }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

extension PostgresDatabases {
    /// One number from a query on database `name`.
    static func scalar(_ query: String, in name: String, on server: URL) async throws -> Int {
        var url = URLComponents(url: server, resolvingAgainstBaseURL: false)!
        url.path = "/" + name
        let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
        databases.use(try .postgres(url: url.url!, sqlLogLevel: .trace), as: .psql)
        defer { Task { await databases.shutdownAsync() } }
        let sql =
            databases.database(.psql, logger: Logger(label: "test"), on: MultiThreadedEventLoopGroup.singleton.any())
            as! any SQLDatabase
        let row = try await sql.raw(SQLQueryString(query)).first()
        return try row!.decode(column: row!.allColumns[0], as: Int.self)
    }
}
