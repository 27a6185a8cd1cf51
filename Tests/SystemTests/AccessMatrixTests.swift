import Foundation
import Identity
import JWTKit
import NIOHTTP1
import Runtime
import Testing

/// Who may call what, from the outside: every operation of `/openapi.yaml` (its `x-roles`) as
/// every role and as nobody, on the gateway and on the owning service's own port.
@Suite("Access: the role matrix and forged tokens")
struct AccessMatrixTests {
    struct Operation: CustomStringConvertible {
        var method: String
        var path: String
        /// nil: public (`security: []`).
        var roles: Set<Role>?
        var description: String { "\(method) \(path)" }
    }

    /// The operations of the served document, read line by line (it is this project's own YAML).
    static func operations(_ yaml: String) -> [Operation] {
        var result: [Operation] = []
        var path: String?
        var inPaths = false
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("paths:") { inPaths = true }
            if line.hasPrefix("components:") { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if let method = ["get", "post", "put", "delete", "patch"].first(where: { line == "    \($0):" }) {
                result.append(Operation(method: method.uppercased(), path: path ?? "", roles: []))
            } else if line.hasPrefix("      x-roles: ["), !result.isEmpty {
                let names = line.drop { $0 != "[" }.dropFirst().prefix { $0 != "]" }
                result[result.count - 1].roles = Set(
                    names.split(separator: ",").compactMap { Role(rawValue: $0.trimmingCharacters(in: .whitespaces)) })
            } else if line == "      security: []", !result.isEmpty {
                result[result.count - 1].roles = nil
            }
        }
        return result
    }

    static func owner(of path: String) -> ServiceName? {
        let prefix = path.split(separator: "/").first.map(String.init) ?? ""
        return ServiceCatalog.domain.first { $0.routePrefixes.contains(prefix) }.flatMap { ServiceName(rawValue: $0.name) }
    }

    @Test("Every operation × {nobody, desk, doctor, examiner, admin} × {gateway, service port}: as x-roles says")
    func matrix() async throws {
        try await withTestSystem { system in
            let document = try await system.get("/openapi.yaml", as: .none)
            #expect(document.status == 200)
            let operations = Self.operations(document.text)
            #expect(operations.count >= 18, "the document lists the operations")
            let unnamed = operations.filter { $0.roles.map(\.isEmpty) ?? false }
            #expect(unnamed.isEmpty, "every operation names its roles: \(unnamed)")
            var checked = 0
            var unexpected: [String] = []
            for operation in operations {
                let concrete = operation.path.replacingOccurrences(
                    of: #"\{[A-Za-z]+\}"#, with: UUID().uuidString, options: .regularExpression)
                let ports: [ServiceName] = [.gateway] + (Self.owner(of: operation.path).map { [$0] } ?? [])
                let callers: [(String, TestAuth)] =
                    [("nobody", .none)] + Role.allCases.map { ($0.rawValue, TestAuth.role($0)) }
                for port in ports {
                    for (name, caller) in callers {
                        let answer: HTTPResult
                        let streamed = operation.path.hasSuffix("/live") || operation.path.hasSuffix("/events")
                        if streamed, case .role(let role) = caller, operation.roles?.contains(role) == true {
                            // A live view allowed to this caller never ends: its status is the answer.
                            let stream = try await EventStream.open(
                                system.url(port).absoluteString + concrete, token: try await TestKeys.token(role))
                            stream.close()
                            answer = HTTPResult(status: stream.status, headers: HTTPHeaders(), body: Data())
                        } else if operation.method == "GET" {
                            answer = try await system.get(concrete, via: port, as: caller)
                        } else if operation.method == "PATCH" {
                            answer = try await system.patch(concrete, [:], via: port, as: caller)
                        } else {
                            answer = try await system.post(concrete, [:], via: port, as: caller)
                        }
                        checked += 1
                        let allowed: Bool
                        switch (operation.roles, caller) {
                        case (nil, _): allowed = true
                        case (let roles?, .role(let role)): allowed = roles.contains(role)
                        default: allowed = false
                        }
                        let ok: Bool
                        if operation.roles == nil {
                            ok = answer.status != 403 && (answer.status != 401 || operation.path == "/auth/token")
                        } else if allowed {
                            ok = answer.status != 401 && answer.status != 403
                        } else {
                            ok =
                                answer.status == (name == "nobody" ? 401 : 403)
                                && answer.contentType.hasPrefix("application/problem+json")
                        }
                        if !ok { unexpected.append("\(operation) as \(name) on \(port.rawValue): \(answer.status)") }
                    }
                }
            }
            #expect(unexpected.isEmpty, "\(unexpected.joined(separator: "\n"))")
            #expect(checked > 150)

            // The operators' endpoints, on the service ports only: the admin's alone.
            for (method, path, port) in [
                ("GET", "/admin/dead-letters", ServiceName.diagnosis),
                ("POST", "/admin/patientManagements/rebuild", .patientManagement),
            ] {
                for role in Role.allCases {
                    let answer =
                        method == "GET"
                        ? try await system.get(path, via: port, as: .role(role))
                        : try await system.post(path, via: port, as: .role(role))
                    #expect(
                        (answer.status == 403) == (role != .admin), "\(method) \(path) as \(role): \(answer.status)")
                }
                let anonymous =
                    method == "GET"
                    ? try await system.get(path, via: port, as: .none)
                    : try await system.post(path, via: port, as: .none)
                #expect(anonymous.status == 401)
            }
        }
    }

    @Test("Forged tokens answer 401 on the gateway and on a service port; the genuine one does not")
    func forgedTokens() async throws {
        try await withTestSystem { system in
            let key = try SigningKey(pem: TestKeys.pem)
            func issued(
                issuer: String = TestKeys.issuer, audience: String = TestKeys.audience, key: SigningKey,
                at: Date = Date()
            )
                async throws -> String
            {
                try await TokenIssuer(key: key, issuer: issuer, audience: audience, lifetime: 900)
                    .issue(username: "mallory", role: .desk, now: at)
            }
            let genuine = try await issued(key: key)
            let parts = genuine.split(separator: ".").map(String.init)
            var payload = try #require(
                try JSONSerialization.jsonObject(with: Base64URL.decode(parts[1])!) as? [String: Any])
            payload["role"] = "admin"
            let raised = Base64URL.encode(try JSONSerialization.data(withJSONObject: payload))
            let none = Base64URL.encode(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
            var flipped = Array(parts[2])
            flipped[10] = flipped[10] == "A" ? "B" : "A"
            let forged: [(String, String)] = [
                ("a changed signature", parts[0] + "." + parts[1] + "." + String(flipped)),
                ("alg none", none + "." + raised + "."),
                ("a raised role", parts[0] + "." + raised + "." + parts[2]),
                ("another issuer", try await issued(issuer: "https://elsewhere", key: key)),
                ("another audience", try await issued(audience: "another-api", key: key)),
                ("an expired token", try await issued(key: key, at: Date().addingTimeInterval(-7200))),
                ("a token valid only later", try await issued(key: key, at: Date().addingTimeInterval(7200))),
                ("another key", try await issued(key: try SigningKey(pem: ES256PrivateKey().pemRepresentation))),
                ("garbage", "not.a.token"),
            ]
            for port in [ServiceName.gateway, .reception] {
                let header = { (token: String) in [("authorization", "Bearer \(token)")] }
                for (what, token) in forged {
                    let answer = try await HTTPResult.send(
                        .GET, system.url(port), "/receptions", headers: header(token))
                    #expect(answer.status == 401, "\(what) on \(port.rawValue): \(answer.status)")
                    #expect(answer.headers.first(name: "www-authenticate")?.hasPrefix("Bearer") == true)
                }
                let accepted = try await HTTPResult.send(
                    .GET, system.url(port), "/receptions", headers: header(genuine))
                #expect(accepted.status == 200, "the genuine token on \(port.rawValue)")
            }
        }
    }

    @Test("The actor of an event is the signed-in user, whatever X-Actor claims")
    func actorFromToken() async throws {
        try await withTestSystem { system in
            let token = try await TestKeys.token(.desk, username: "kim.desk")
            let answer = try await system.post(
                "/receptions", ["patientName": "홍길동"],
                headers: [("authorization", "Bearer \(token)"), ("X-Actor", "someone.else")])
            #expect(answer.status == 201)
            // The walk-in's patient and its visit: two events, both kim.desk's.
            #expect(try await system.count("outbox", in: .reception, where: "payload LIKE '%kim.desk%'") == 2)
            #expect(try await system.count("outbox", in: .reception, where: "payload LIKE '%someone.else%'") == 0)
        }
    }

    @Test("Signing in: POST /auth/token for a real account, and nothing for a wrong password or an unknown name")
    func tokenEndpoint() async throws {
        try await withTestSystem { system in
            let accounts = try #require(system.system.accounts)
            try await accounts.add(username: "lee.doctor", role: .doctor, password: "a long enough password")
            let signedIn = try await system.post(
                "/auth/token", ["username": "lee.doctor", "password": "a long enough password"], as: .none)
            #expect(signedIn.status == 200)
            #expect(signedIn.json["tokenType"] as? String == "Bearer")
            #expect(signedIn.json["expiresIn"] as? Int == 900)
            let token = try #require(signedIn.json["accessToken"] as? String)
            let worklist = try await HTTPResult.send(
                .GET, system.url(.diagnosis), "/diagnoses", headers: [("authorization", "Bearer \(token)")])
            #expect(worklist.status == 200, "the token works on a service port")
            let board = try await HTTPResult.send(
                .GET, system.url(), "/patientManagements", headers: [("authorization", "Bearer \(token)")])
            #expect(board.status == 403, "a doctor does not read the desk's board")
            for (name, password) in [
                ("lee.doctor", "wrong password!!"), ("nobody", "a long enough password"), ("", ""),
            ] {
                let refused = try await system.post("/auth/token", ["username": name, "password": password], as: .none)
                #expect(refused.status == 401)
                #expect(refused.json["accessToken"] == nil)
            }
            let keys = try await system.get("/.well-known/jwks.json", as: .none)
            #expect((keys.json["keys"] as? [[String: Any]])?.first?["kty"] as? String == "EC")
        }
    }
}
