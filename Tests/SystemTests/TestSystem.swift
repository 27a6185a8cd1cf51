import AsyncHTTPClient
import Contracts
import FluentKit
import FluentPostgresDriver
import FluentSQLiteDriver
import Foundation
import Identity
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Runtime
import SQLKit
import SQLiteNIO
import Storage
import TestSupport
import Testing

/// Real services on temporary storage, driven over HTTP: the one harness of the system tests.
///
/// Every service binds port 0, so tests run in parallel; a service not started in this process
/// is routed by the gateway to a closed port, so it looks down, as it would be.
func withTestSystem<T: Sendable>(
    _ services: [ServiceName] = [], dataDirectory: URL? = nil,
    configure: @Sendable (inout HospitalConfiguration) -> Void = { _ in },
    _ body: (TestSystem) async throws -> T
) async throws -> T {
    let directory = dataDirectory ?? TestSystem.temporaryDirectory()
    let system = try await TestSystem.open(services, dataDirectory: directory, configure: configure)
    // The system's service group runs beside the test, and a stop waits for it to end.
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await system.system.run() }
        do {
            let result = try await body(system)
            try await system.shutdown { try await group.waitForAll() }
            if dataDirectory == nil { try? FileManager.default.removeItem(at: directory) }
            return result
        } catch {
            try? await system.shutdown { try await group.waitForAll() }
            throw error
        }
    }
}

final class TestSystem: Sendable {
    let dataDirectory: URL
    let system: HospitalSystem

    private init(dataDirectory: URL, system: HospitalSystem) {
        self.dataDirectory = dataDirectory
        self.system = system
    }

    static func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent(
            "hospital-test-\(UUID().uuidString)", isDirectory: true)
    }

    /// Set to run the system tests on PostgreSQL (CI does, beside the SQLite run):
    /// postgres://USER@HOST:PORT/postgres of a throwaway cluster.
    static let postgres: URL? = ProcessInfo.processInfo.environment["HOSPITAL_TEST_POSTGRES_URL"].flatMap {
        URL(string: $0)
    }
    static var onPostgres: Bool { postgres != nil }

    static func configuration(dataDirectory: URL) async throws -> HospitalConfiguration {
        var config = HospitalConfiguration(dataDirectory: dataDirectory)
        if let postgres {
            // Databases named after the data directory: systems sharing a directory share them.
            let stem = "t_" + dataDirectory.lastPathComponent.suffix(36).replacingOccurrences(of: "-", with: "")
            for service in ServiceName.allCases where service != .gateway {
                let name = (stem + "_" + service.rawValue.replacingOccurrences(of: "-", with: "_")).lowercased()
                try await PostgresDatabases.ensure(name, on: postgres)
                var url = URLComponents(url: postgres, resolvingAgainstBaseURL: false)!
                url.path = "/" + name
                config.serviceDatabaseURLs[service] = url.url!
            }
        }
        config.logLevel = .warning
        config.auth.signingKeyPEM = TestKeys.pem
        config.auth.bcryptCost = 4
        config.relayPollInterval = .milliseconds(50)
        config.logPollInterval = .milliseconds(50)
        config.consumerMaxAttempts = 3
        for service in ServiceName.allCases {
            config.ports[service] = 0
            // Port 1 refuses connections: what the gateway sees of a service that is down.
            config.upstreams[service] = URL(string: "http://127.0.0.1:1")!
        }
        return config
    }

    /// Builds and binds the system; its loops run with `system.run()` (see `withTestSystem`).
    static func open(
        _ services: [ServiceName], dataDirectory: URL,
        configure: @Sendable (inout HospitalConfiguration) -> Void = { _ in }
    ) async throws -> TestSystem {
        var config = try await configuration(dataDirectory: dataDirectory)
        configure(&config)
        let wanted = services.isEmpty ? ServiceName.allCases : services
        for service in wanted { config.upstreams[service] = nil }
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let system = try await HospitalSystem.open(wanted, configuration: config, logger: logger)
        let test = TestSystem(dataDirectory: dataDirectory, system: system)
        if let sessions = system.sessions {
            TestSessions.register(test.url(), sessions: sessions, accounts: system.accounts)
        }
        return test
    }

    /// Stops the system and waits for its run (`ended`) to end; throws when the stop failed
    /// (audit entries that could not be written).
    func shutdown(_ ended: () async throws -> Void) async throws {
        TestSessions.unregister(url())
        await system.stop()
        try await ended()
    }

    /// The gateway if it runs here, else the service itself.
    func url(_ service: ServiceName = .gateway) -> URL {
        system.url(of: service) ?? URL(string: "http://127.0.0.1:1")!
    }

    // MARK: HTTP

    func get(
        _ path: String, via service: ServiceName = .gateway, as auth: TestAuth = .automatic
    ) async throws
        -> HTTPResult
    {
        try await HTTPResult.send(.GET, url(service), path, as: auth)
    }

    func post(
        _ path: String, _ json: [String: Any]? = nil, raw: String? = nil, headers: [(String, String)] = [],
        via service: ServiceName = .gateway, as auth: TestAuth = .automatic
    ) async throws -> HTTPResult {
        let body = try raw.map { Data($0.utf8) } ?? json.map { try JSONSerialization.data(withJSONObject: $0) }
        return try await HTTPResult.send(.POST, url(service), path, body: body, headers: headers, as: auth)
    }

    func patch(
        _ path: String, _ json: [String: Any], via service: ServiceName = .gateway, as auth: TestAuth = .automatic
    ) async throws -> HTTPResult {
        try await HTTPResult.send(
            .PATCH, url(service), path, body: try JSONSerialization.data(withJSONObject: json), as: auth)
    }

    /// The audit entries of `service` that name `chartNumber` (read as an administrator).
    func auditEntries(of service: ServiceName, chartNumber: String) async throws -> [[String: Any]] {
        let answer = try await get("/admin/audit?patientId=\(chartNumber)", via: service, as: .role(.admin))
        try #require(answer.status == 200, "\(answer.text)")
        return answer.json["items"] as? [[String: Any]] ?? []
    }

    // MARK: The journey's steps, asserting they were accepted

    /// 접수: returns the reception id.
    func register(_ name: String = "홍길동", department: String = "내과") async throws -> String {
        let response = try await post("/receptions", ["patientName": name, "department": department, "symptom": "기침"])
        try #require(response.status == 201, "\(response.text)")
        return try #require(response.json["id"] as? String)
    }

    /// Waits for the doctor's diagnosis of a reception; returns its id.
    func diagnosis(of receptionId: String, via service: ServiceName = .gateway) async throws -> String {
        try await eventually("a diagnosis for \(receptionId)") {
            let list = try await self.get("/diagnoses?receptionId=\(receptionId)", via: service)
            return (list.json["items"] as? [[String: Any]])?.first?["id"] as? String
        }
    }

    /// A visit up to step 4: registered, one exam ordered and waiting for the examiner.
    func visitWithExam(
        code: String = "CBC", name: String = "혈액검사"
    ) async throws -> (
        receptionId: String, diagnosisId: String, examId: String
    ) {
        let receptionId = try await register()
        let diagnosisId = try await diagnosis(of: receptionId)
        let prescribed = try await post(
            "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": code, "name": name]]])
        try #require(prescribed.status == 200, "\(prescribed.text)")
        let examId = try await eventually("the exam") {
            try await self.items("/examinations?diagnosisId=\(diagnosisId)").first?["id"] as? String
        }
        return (receptionId, diagnosisId, examId)
    }

    /// Waits until `path` answers 200 with `field` equal to `value`; returns the body.
    @discardableResult
    func waitFor(
        _ path: String, _ field: String, _ value: String, via service: ServiceName = .gateway
    ) async throws -> [String: Any] {
        try await eventually("\(path) \(field) = \(value)") {
            let response = try await self.get(path, via: service)
            return response.status == 200 && response.json[field] as? String == value ? response.json : nil
        }
    }

    func items(_ path: String, via service: ServiceName = .gateway) async throws -> [[String: Any]] {
        let response = try await get(path, via: service)
        try #require(response.status == 200, "\(path): \(response.text)")
        return try #require(response.json["items"] as? [[String: Any]])
    }

    // MARK: Storage, read directly to prove what was (not) written

    /// The first column of every row `query` gives in `service`'s own database, as text.
    func strings(_ service: ServiceName, _ query: String) async throws -> [String] {
        let database = try #require(system.database(of: service), "\(service.rawValue) does not run here")
        return try await database.raw(SQLQueryString(query)).all().map { row in
            try row.decode(column: row.allColumns[0], as: String.self)
        }
    }

    /// Rows in `table` of `service`'s own database (SQLite or PostgreSQL), where `condition` holds.
    func count(_ table: String, in service: ServiceName, where condition: String = "1 = 1") async throws -> Int {
        let database = try #require(system.database(of: service), "\(service.rawValue) does not run here")
        let row = try await database.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table) WHERE \(unsafeRaw: condition)")
            .first()
        return try #require(row).decode(column: "n", as: Int.self)
    }

    /// Visit events in the local event log (not the audit trails' checkpoints beside them).
    func eventCount() async throws -> Int {
        try await Self.count(
            "messages", in: dataDirectory.appendingPathComponent("events.sqlite"),
            where: "topic = '\(Topics.visitEvents)'")
    }

    /// Opens each domain service's own database of a system that is not running (SQLite files
    /// under the directory, or the PostgreSQL databases named after it), in turn.
    static func withServiceDatabases(
        dataDirectory: URL, _ body: (ServiceName, any SQLDatabase) async throws -> Void
    ) async throws {
        let config = try await configuration(dataDirectory: dataDirectory)
        for service in ServiceName.allCases where service != .gateway {
            let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
            if let url = try config.database(of: service, among: ServiceName.allCases) {
                databases.use(try .postgres(url: url, sqlLogLevel: .trace), as: .psql)
            } else {
                let file = dataDirectory.appendingPathComponent("\(service.rawValue).sqlite").path
                databases.use(.sqlite(.file(file), sqlLogLevel: nil), as: .sqlite)
            }
            do {
                let db = databases.database(
                    logger: Logger(label: "test"), on: MultiThreadedEventLoopGroup.singleton.any())
                try await body(service, db as! any SQLDatabase)
                await databases.shutdownAsync()
            } catch {
                await databases.shutdownAsync()
                throw error
            }
        }
    }

    static func count(_ table: String, in file: URL, where condition: String = "1 = 1") async throws -> Int {
        let connection = try await SQLiteConnection.open(storage: .file(path: file.path))
        defer { Task { try? await connection.close() } }
        let rows = try await connection.query("SELECT COUNT(*) AS n FROM \(table) WHERE \(condition)", [])
        return rows.first?.column("n")?.integer ?? -1
    }

    /// Runs one statement on a SQLite file directly, as someone with access to the file could.
    static func execute(_ sql: String, in file: URL) async throws {
        let connection = try await SQLiteConnection.open(storage: .file(path: file.path))
        do {
            // A bounded wait for the service's lock, as the product's own connections have.
            _ = try await connection.query(SQLiteLockWait.pragma, [])
            _ = try await connection.query(sql, [])
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
    }
}

/// A whole HTTP exchange's answer.
struct HTTPResult: Sendable {
    /// A client that hands back a redirect instead of following it.
    static let noRedirects = HTTPClient(
        eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

    var status: Int
    var headers: HTTPHeaders
    var body: Data

    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    var contentType: String { headers.first(name: "content-type") ?? "" }

    /// Signed in as `auth` says (by default, as a role the operation allows): see `TestKeys`.
    static func send(
        _ method: HTTPMethod, _ base: URL, _ path: String, body: Data? = nil, headers: [(String, String)] = [],
        as auth: TestAuth = .automatic, followRedirects: Bool = true
    ) async throws -> HTTPResult {
        var request = HTTPClientRequest(url: base.absoluteString + path)
        request.method = method
        var body = body
        let signsItself = headers.contains { ["authorization", "cookie"].contains($0.0.lowercased()) }
        if !signsItself {
            let (credentials, isScreen, csrf) = try await TestKeys.credentials(
                auth, method: method.rawValue, path: path, base: base)
            for (name, value) in credentials { request.headers.add(name: name, value: value) }
            // A screen's form carries the CSRF token, as the page's forms do.
            if isScreen, method == .POST,
                headers.contains(where: { $0.0.lowercased() == "content-type" && $0.1.contains("form-urlencoded") })
            {
                let form = body.map { String(decoding: $0, as: UTF8.self) } ?? ""
                body = Data(((form.isEmpty ? "" : form + "&") + "csrf=\(csrf ?? "")").utf8)
            }
        }
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
            if !headers.contains(where: { $0.0.lowercased() == "content-type" }) {
                request.headers.add(name: "content-type", value: "application/json")
            }
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let started = ContinuousClock.now
        let response: HTTPClientResponse
        do {
            response = try await (followRedirects ? HTTPClient.shared : Self.noRedirects).execute(
                request, timeout: .seconds(30))
        } catch {
            // Which request, and after how long: a deadline alone names neither. (Quick refusals,
            // as from a service a test has stopped, are expected and say nothing.)
            let took = ContinuousClock.now - started
            if took > .seconds(5) { print("\(method) \(path) failed after \(took): \(error)") }
            throw error
        }
        let bytes = try await response.body.collect(upTo: 4 << 20)
        return HTTPResult(status: Int(response.status.code), headers: response.headers, body: Data(buffer: bytes))
    }
}

/// Creates the PostgreSQL databases of a test system on the throwaway cluster.
enum PostgresDatabases {
    static func ensure(_ name: String, on server: URL) async throws {
        let databases = Databases(threadPool: .singleton, on: MultiThreadedEventLoopGroup.singleton)
        databases.use(try .postgres(url: server, sqlLogLevel: .trace), as: .psql)
        defer { Task { await databases.shutdownAsync() } }
        let sql =
            databases.database(.psql, logger: Logger(label: "test"), on: MultiThreadedEventLoopGroup.singleton.any())
            as! any SQLDatabase
        let exists = try await sql.raw("SELECT 1 FROM pg_database WHERE datname = \(bind: name)").first() != nil
        if !exists { try await sql.raw("CREATE DATABASE \(ident: name)").run() }
    }
}
