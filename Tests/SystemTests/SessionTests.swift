import Foundation
import Identity
import Logging
import NIOHTTP1
import Runtime
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Access that really ends (the security review: a disabled or signed-out account kept its screen
/// session for ever, and its API token until it expired). Two gateway replicas and the services
/// in processes of their own, sharing sessions through the gateway's database: the data
/// directory's `accounts.sqlite`, or PostgreSQL (HOSPITAL_GATEWAY_DATABASE_URL) in the PostgreSQL run.
@Suite("Sessions that end")
struct SessionTests {
    static let password = "a long enough password"

    /// Two gateways (A, B) and one process with every domain service, on one data directory.
    struct Replicas {
        let directory: URL
        let environment: [String: String]
        let services: HospitalProcess
        let a: HospitalProcess
        let b: HospitalProcess

        var gatewayA: URL { a.url(.gateway)! }
        var gatewayB: URL { b.url(.gateway)! }
        var reception: URL { services.url(.reception)! }
        var diagnosis: URL { services.url(.diagnosis)! }

        static func start(_ directory: URL) async throws -> Replicas {
            var environment: [String: String] = ["HOSPITAL_BCRYPT_COST": "10"]
            var configuration = HospitalConfiguration(dataDirectory: directory)
            configuration.auth.bcryptCost = 4
            if let postgres = TestSystem.postgres {
                let name = "t_" + directory.lastPathComponent.suffix(36).replacingOccurrences(of: "-", with: "").lowercased()
                    + "_gateway"
                try await PostgresDatabases.ensure(name, on: postgres)
                var url = URLComponents(url: postgres, resolvingAgainstBaseURL: false)!
                url.path = "/" + name
                environment["HOSPITAL_GATEWAY_DATABASE_URL"] = url.url!.absoluteString
                configuration.gatewayDatabaseURL = url.url!
            }
            try FileManager.default.createDirectory(
                at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try await HospitalSystem.withAccounts(configuration: configuration, logger: Logger(label: "test")) {
                accounts, _ in
                for (name, role) in [("desk1", Role.desk), ("doc1", .doctor), ("boss", .admin)] {
                    try await accounts.add(username: name, role: role, password: password)
                }
            }
            let (portA, portB) = (try freePort(), try freePort())
            // The services ask gateway A for the revoked sessions (HOSPITAL_GATEWAY_URL).
            let services = try await HospitalProcess.serve(
                [.reception, .diagnosis, .examination, .patientManagement], dataDirectory: directory,
                environment: environment.merging(["HOSPITAL_GATEWAY_URL": "http://127.0.0.1:\(portA)"]) { $1 })
            var upstreams = environment
            for service in [ServiceName.reception, .diagnosis, .examination, .patientManagement] {
                let stem = service.rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
                upstreams["HOSPITAL_\(stem)_URL"] = services.url(service)!.absoluteString
            }
            let a = try await HospitalProcess.serve(
                [.gateway], dataDirectory: directory, ports: [.gateway: portA], environment: upstreams)
            let b = try await HospitalProcess.serve(
                [.gateway], dataDirectory: directory, ports: [.gateway: portB], environment: upstreams)
            return Replicas(directory: directory, environment: environment, services: services, a: a, b: b)
        }

        func stop() {
            _ = b.terminate()
            _ = a.terminate()
            _ = services.terminate()
        }

        /// `hospital users …` against the same accounts, as an operator runs it.
        func users(_ arguments: [String], input: String = "") throws -> String {
            let process = ChildProcess()
            process.executableURL = HospitalProcess.executable
            process.arguments = ["users"] + arguments + ["--data-dir", directory.path]
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let (stdin, stdout) = (Pipe(), Pipe())
            process.standardInput = stdin
            process.standardOutput = stdout
            try HospitalProcess.launch(process)
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
            let output = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            try #require(process.terminationStatus == 0, "hospital users \(arguments): \(output)")
            return output
        }
    }

    /// Signs in on the screens at `gateway`: the session cookie's value.
    static func signIn(_ gateway: URL, _ user: String, password: String = password) async throws -> String {
        let csrf = TestKeys.csrf()
        let answer = try await HTTPResult.send(
            .POST, gateway, "/login", body: Data("username=\(user)&password=\(password)&csrf=\(csrf)".utf8),
            headers: [("content-type", "application/x-www-form-urlencoded"), ("cookie", "hospital_csrf=\(csrf)")],
            as: .none, followRedirects: false)
        try #require(answer.status == 303, "sign-in of \(user): \(answer.status) \(answer.text)")
        let cookie = answer.headers["set-cookie"].first { $0.hasPrefix("hospital_session=") }
        let value = try #require(cookie?.dropFirst("hospital_session=".count).split(separator: ";").first)
        return String(value)
    }

    static func screen(_ gateway: URL, _ path: String, session: String) async throws -> HTTPResult {
        try await HTTPResult.send(
            .GET, gateway, path, headers: [("cookie", "hospital_session=\(session)")], as: .none, followRedirects: false)
    }

    static func token(_ gateway: URL, _ user: String) async throws -> String {
        let answer = try await HTTPResult.send(
            .POST, gateway, "/auth/token",
            body: try JSONSerialization.data(withJSONObject: ["username": user, "password": password]), as: .none)
        try #require(answer.status == 200, "\(answer.text)")
        return try #require(answer.json["accessToken"] as? String)
    }

    static func call(_ base: URL, _ path: String, token: String) async throws -> Int {
        try await HTTPResult.send(.GET, base, path, headers: [("authorization", "Bearer \(token)")], as: .none).status
    }

    /// How long until `path` at `base` refuses `token` (401); fails past the deadline.
    static func refused(_ base: URL, _ path: String, token: String, what: String) async throws -> Duration {
        let start = ContinuousClock.now
        _ = try await eventually(what, timeout: .seconds(15)) {
            try await call(base, path, token: token) == 401 ? true : nil
        }
        return ContinuousClock.now - start
    }

    @Test("A session signed in at one gateway works at the other; signed out at either, it is over at both")
    func signOutEndsTheSessionEverywhere() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let system = try await Replicas.start(directory)
        defer { system.stop() }
        let session = try await Self.signIn(system.gatewayA, "desk1")
        #expect(try await Self.screen(system.gatewayA, "/desk", session: session).status == 200)
        #expect(try await Self.screen(system.gatewayB, "/desk", session: session).status == 200, "the other replica")
        // Signed out at B…
        let csrf = TestKeys.csrf(session: session)
        let out = try await HTTPResult.send(
            .POST, system.gatewayB, "/logout", body: Data("csrf=\(csrf)".utf8),
            headers: [
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", "hospital_session=\(session); hospital_csrf=\(csrf)"),
            ], as: .none, followRedirects: false)
        #expect(out.status == 303)
        // …the cookie someone kept is worth nothing at A (and B): back to the sign-in page.
        for gateway in [system.gatewayA, system.gatewayB] {
            let kept = try await Self.screen(gateway, "/desk", session: session)
            #expect(kept.status == 303 && kept.headers.first(name: "location")?.hasPrefix("/login") == true)
        }
        // A made-up or stale cookie is no session either.
        #expect(try await Self.screen(system.gatewayA, "/desk", session: String(repeating: "x", count: 43)).status == 303)
    }

    @Test("Disabling an account ends its screen session at once and its API token on every process within seconds; so does a new password")
    func disablingEndsEverything() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let system = try await Replicas.start(directory)
        defer { system.stop() }
        let session = try await Self.signIn(system.gatewayB, "desk1")
        let token = try await Self.token(system.gatewayA, "desk1")
        #expect(try await Self.call(system.reception, "/receptions", token: token) == 200, "direct, at the service")
        #expect(try await Self.call(system.gatewayB, "/receptions", token: token) == 200)

        print(try system.users(["disable", "desk1"]))
        let atService = try await Self.refused(system.reception, "/receptions", token: token, what: "the token refused at reception")
        let atGateway = try await Self.refused(system.gatewayB, "/receptions", token: token, what: "the token refused at B")
        print("disabled: API token refused at the service's own process after \(atService), at gateway B after \(atGateway)")
        let kept = try await Self.screen(system.gatewayA, "/desk", session: session)
        #expect(kept.status == 303, "the screen session of a disabled account")
        // Nor can it sign in again.
        let again = try await HTTPResult.send(
            .POST, system.gatewayA, "/auth/token",
            body: try JSONSerialization.data(withJSONObject: ["username": "desk1", "password": Self.password]),
            as: .none)
        #expect(again.status == 401)

        // A new password: the doctor's token and session end; the new password signs in.
        let doctor = try await Self.token(system.gatewayB, "doc1")
        let doctorSession = try await Self.signIn(system.gatewayA, "doc1")
        #expect(try await Self.call(system.diagnosis, "/diagnoses", token: doctor) == 200)
        _ = try system.users(["set-password", "doc1"], input: "another long password\nanother long password\n")
        let changed = try await Self.refused(system.diagnosis, "/diagnoses", token: doctor, what: "the old token refused")
        print("new password: the old token refused at diagnosis after \(changed)")
        #expect(try await Self.screen(system.gatewayB, "/doctor", session: doctorSession).status == 303)
        let fresh = try await Self.signIn(system.gatewayB, "doc1", password: "another long password")
        #expect(try await Self.screen(system.gatewayA, "/doctor", session: fresh).status == 200)
    }

    @Test("The administrator lists a user's sessions and ends them; others' sessions go on")
    func administratorEndsSessions() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let system = try await Replicas.start(directory)
        defer { system.stop() }
        let desk = try await Self.signIn(system.gatewayA, "desk1")
        let doctor = try await Self.signIn(system.gatewayA, "doc1")
        let admin = try await Self.token(system.gatewayB, "boss")
        let listed = try await HTTPResult.send(
            .GET, system.gatewayB, "/admin/sessions?user=desk1", headers: [("authorization", "Bearer \(admin)")],
            as: .none)
        #expect(listed.status == 200)
        let items = listed.json["items"] as? [[String: Any]] ?? []
        #expect(items.count == 1 && items.first?["username"] as? String == "desk1" && items.first?["kind"] as? String == "screen")
        #expect(!listed.text.contains(desk), "the list never shows a session's secret")
        let ended = try await HTTPResult.send(
            .POST, system.gatewayA, "/admin/sessions/end",
            body: try JSONSerialization.data(withJSONObject: ["user": "desk1"]),
            headers: [("authorization", "Bearer \(admin)")], as: .none)
        #expect(ended.status == 200 && ended.json["ended"] as? Int == 1, "\(ended.text)")
        #expect(try await Self.screen(system.gatewayB, "/desk", session: desk).status == 303)
        #expect(try await Self.screen(system.gatewayB, "/doctor", session: doctor).status == 200)
        // Not the administrator's to call otherwise.
        let desk2 = try await Self.token(system.gatewayA, "doc1")
        let refused = try await HTTPResult.send(
            .GET, system.gatewayA, "/admin/sessions", headers: [("authorization", "Bearer \(desk2)")], as: .none)
        #expect(refused.status == 403)
    }
}

/// A port nothing listens on now (the kernel's choice for port 0).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSessionError(description: "socket") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw TestSessionError(description: "bind") }
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestSessionError(description: "getsockname") }
    return Int(UInt16(bigEndian: address.sin_port))
}
