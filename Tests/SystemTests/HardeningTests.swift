import Foundation
import Runtime
import ServiceKit
import TestSupport
import Testing
import Vapor

/// Hostile clients: framing, sniffing, other host names, floods; and files only the owner reads.
@Suite("Hardening")
struct HardeningTests {
    @Test("A bearer token is read from the Authorization header as before: the scheme in any case, blanks dropped, nothing else taken")
    func bearerTokens() {
        let token = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"
        #expect(Request.bearerToken(in: "Bearer \(token)") == token)
        #expect(Request.bearerToken(in: "bearer \(token)") == token)
        #expect(Request.bearerToken(in: "BEARER   \(token) \t") == token)
        #expect(Request.bearerToken(in: "Bearer") == nil)
        #expect(Request.bearerToken(in: "Bearer ") == nil)
        #expect(Request.bearerToken(in: "Bearer    ") == nil)
        #expect(Request.bearerToken(in: "Bearer\t\(token)") == nil)
        #expect(Request.bearerToken(in: "Basic \(token)") == nil)
        #expect(Request.bearerToken(in: "Bearerx \(token)") == nil)
        #expect(Request.bearerToken(in: "Bear \(token)") == nil)
        #expect(Request.bearerToken(in: "토큰 \(token)") == nil)
    }

    @Test(
        "Pages send CSP without inline script, frame-ancestors 'none', nosniff, no referrer to other sites; HSTS only over TLS"
    )
    func securityHeaders() async throws {
        try await withTestSystem { system in
            let page = try await system.get("/desk")
            #expect(page.status == 200)
            let csp = page.headers.first(name: "content-security-policy") ?? ""
            #expect(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"))
            #expect(!csp.contains("unsafe-inline"))
            #expect(page.headers.first(name: "x-content-type-options") == "nosniff")
            #expect(page.headers.first(name: "referrer-policy") == "same-origin")
            #expect(page.headers.first(name: "strict-transport-security") == nil)
            let api = try await system.get("/receptions", via: .reception)
            #expect(api.headers.first(name: "x-content-type-options") == "nosniff")
            let tls = try await system.get("/login", as: .none)
            #expect(tls.headers.first(name: "strict-transport-security") == nil)
            let proxied = try await HTTPResult.send(
                .GET, system.url(), "/login", headers: [("x-forwarded-proto", "https"), ("cookie", "x=1")])
            #expect(proxied.headers.first(name: "strict-transport-security")?.hasPrefix("max-age=") == true)
        }
    }

    @Test("Oversized header fields are refused with 431 at the gateway and at a service, and nothing is done")
    func oversizedHeaders() async throws {
        try await withTestSystem { system in
            let visit: [String: Any] = ["patientName": "홍길동", "department": "내과"]
            let cases: [(ServiceName, [(String, String)], Int, String)] = [
                (.gateway, [("x-padding", String(repeating: "a", count: 12_000))], 201, "one large field"),
                (.gateway, [("x-padding", String(repeating: "a", count: 20_000))], 431, "a field over 16 KB"),
                (.gateway, (1...5).map { ("x-padding-\($0)", String(repeating: "b", count: 8_000)) }, 431,
                 "fields over 32 KB together"),
                (.reception, [("x-padding", String(repeating: "c", count: 40_000))], 431, "at a service port"),
            ]
            for (service, headers, status, what) in cases {
                let answer = try await system.post("/receptions", visit, headers: headers, via: service)
                #expect(answer.status == status, "\(what): \(answer.text)")
                if status == 431 {
                    #expect(answer.json["status"] as? Int == 431, "\(what): a problem document")
                }
            }
            #expect(try await system.count("receptions", in: .reception) == 1)
        }
    }

    @Test("Only configured host names are served (DNS rebinding); probes answer any")
    func allowedHosts() async throws {
        try await withTestSystem(configure: { $0.auth.allowedHosts = ["hospital.example"] }) { system in
            let port = system.url().port!
            for (host, status) in [
                ("evil.example:\(port)", 421), ("hospital.example", 200), ("localhost:\(port)", 200),
                ("127.0.0.1:\(port)", 200),
            ] {
                let answer = try await HTTPResult.send(.GET, system.url(), "/openapi.yaml", headers: [("host", host)])
                #expect(answer.status == status, "\(host)")
            }
            let probe = try await HTTPResult.send(.GET, system.url(), "/health/ready", headers: [("host", "10.1.2.3")])
            #expect(probe.status == 200)
        }
    }

    @Test("A form post another site made is refused: Sec-Fetch-Site other than same-origin, a foreign Referer without Origin, a CSRF pair not issued for this session")
    func crossSiteForms() async throws {
        try await withTestSystem { system in
            let own = "http://\(system.url().host!):\(system.url().port!)/desk"
            let cases: [([(String, String)], Int, String)] = [
                ([], 200, "the page's own post"),
                ([("sec-fetch-site", "same-origin")], 200, "same origin"),
                ([("sec-fetch-site", "cross-site")], 403, "another site"),
                ([("sec-fetch-site", "same-site")], 403, "a sibling host is another origin"),
                ([("referer", "http://evil.example/form")], 403, "a foreign Referer without Origin"),
                ([("referer", own)], 200, "our own Referer"),
            ]
            for (extra, expected, what) in cases {
                let answer = try await system.post(
                    "/desk/patient", raw: "patientId=P-0001",
                    headers: [("content-type", "application/x-www-form-urlencoded")] + extra)
                #expect(answer.status == expected, "\(what)")
            }
            // The CSRF pair must be one the gateway issued for this very session: not one the
            // client chose, not another session's, not the sign-in page's.
            let session = try await TestSessions.secret(.desk, at: system.url())
            let other = try await TestSessions.secret(.desk, at: system.url(), username: "other.desk")
            let pairs: [(String, Int, String)] = [
                (TestKeys.csrf(session: session), 200, "issued for this session"),
                (String(repeating: "t", count: 43), 403, "chosen by the client"),
                (TestKeys.csrf(session: other), 403, "another session's"),
                (TestKeys.csrf(), 403, "the sign-in page's, before this session"),
            ]
            for (token, expected, what) in pairs {
                let answer = try await system.post(
                    "/desk/patient", raw: "patientId=P-0001&csrf=\(token)",
                    headers: [
                        ("content-type", "application/x-www-form-urlencoded"),
                        ("cookie", "hospital_session=\(session); hospital_csrf=\(token)"),
                    ])
                #expect(answer.status == expected, "\(what)")
            }
        }
    }

    @Test("A service records the address the gateway forwarded for only if it is one (a 10 KB header is not stored), and nobody else's")
    func forwardedForIsBounded() async throws {
        try await withTestSystem { system in
            let token = try await TestKeys.token(.desk, username: "xff.desk")
            // (A 30 KB one does not get in at all: see oversizedHeaders.)
            for claim in [String(repeating: "9", count: 10_000), "not an address", "203.0.113.7"] {
                let answer = try await HTTPResult.send(
                    .GET, system.url(.reception), "/receptions",
                    headers: [("authorization", "Bearer \(token)"), ("x-forwarded-for", claim)])
                #expect(answer.status == 200)
            }
            let admin = try await TestKeys.token(.admin, username: "auditor")
            let clients = try await eventually("three entries") {
                let trail = try await HTTPResult.send(
                    .GET, system.url(.reception), "/admin/audit?user=xff.desk",
                    headers: [("authorization", "Bearer \(admin)")])
                let items = trail.json["items"] as? [[String: Any]] ?? []
                return items.count == 3 ? items.compactMap { $0["client"] as? String } : nil
            }
            #expect(clients == ["127.0.0.1 for ?", "127.0.0.1 for ?", "127.0.0.1 for 203.0.113.7"], "\(clients)")
        }
        // A caller that is not the gateway (here: loopback is not where the gateway is) has its
        // claim ignored: the entry names the caller alone.
        let elsewhere = try TrustedProxies.parse(["127.0.0.2/32"]).get()
        try await withTestSystem(configure: { $0.auth.gatewayAddresses = elsewhere }) { system in
            let token = try await TestKeys.token(.desk, username: "direct.desk")
            let answer = try await HTTPResult.send(
                .GET, system.url(.reception), "/receptions",
                headers: [("authorization", "Bearer \(token)"), ("x-forwarded-for", "203.0.113.7")])
            #expect(answer.status == 200)
            let admin = try await TestKeys.token(.admin, username: "auditor")
            let client = try await eventually("the direct read's entry") {
                let trail = try await HTTPResult.send(
                    .GET, system.url(.reception), "/admin/audit?user=direct.desk",
                    headers: [("authorization", "Bearer \(admin)")])
                return (trail.json["items"] as? [[String: Any]])?.first?["client"] as? String
            }
            #expect(client == "127.0.0.1")
        }
    }

    @Test("A client over its rate gets 429 with Retry-After; sign-in has a smaller bucket")
    func rateLimits() async throws {
        try await withTestSystem(configure: {
            $0.auth.rateLimit = 5; $0.auth.signInRateLimit = 1
        }) { system in
            // Forty at once: about the burst (twice the rate) get through, the rest 429.
            let answers = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
                for _ in 0..<40 { group.addTask { try await system.get("/openapi.yaml", as: .none) } }
                return try await group.reduce(into: [HTTPResult]()) { $0.append($1) }
            }
            #expect(Set(answers.map(\.status)) == [200, 429])
            #expect(answers.filter { $0.status == 200 }.count < 30)
            let limited = try #require(answers.first { $0.status == 429 })
            #expect(Int(limited.headers.first(name: "retry-after") ?? "") ?? 0 >= 1)
            #expect(limited.contentType.hasPrefix("application/problem+json"))
            // Thirty guesses at once: about the burst of ten get an answer, the rest 429.
            let signIns = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<30 {
                    group.addTask {
                        try await system.post("/auth/token", ["username": "x", "password": "y"], as: .none).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(Set(signIns) == [401, 429])
            #expect(signIns.filter { $0 == 401 }.count < 20)
        }
    }

    @Test("Behind trusted proxies each forwarded client has its own bucket; an untrusted peer's X-Forwarded-For changes nothing")
    func rateLimitsPerForwardedClient() async throws {
        func twenty(_ system: TestSystem, claiming: @escaping @Sendable (Int) -> String) async throws -> [Int] {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        try await HTTPResult.send(
                            .GET, system.url(), "/openapi.yaml", headers: [("x-forwarded-for", claiming(i))]
                        ).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
        }
        // A burst of 1 and one more every 2 s: twenty requests from twenty claimed addresses.
        try await withTestSystem(configure: { $0.auth.rateLimit = 0.5 }) { system in
            let answers = try await twenty(system) { "203.0.113.\($0)" }
            #expect(answers.filter { $0 == 429 }.count >= 15, "one bucket: the peer's")
        }
        let loopback = try TrustedProxies.parse(["127.0.0.1"]).get()
        try await withTestSystem(configure: {
            $0.auth.rateLimit = 0.5
            $0.auth.trustedProxies = loopback
        }) { system in
            let answers = try await twenty(system) { "203.0.113.\($0)" }
            #expect(answers == Array(repeating: 200, count: 20), "a bucket each")
        }
    }

    @Test("Trusted proxies: CIDR blocks of either family; the walk stops at the first untrusted hop")
    func trustedProxies() throws {
        let proxies = try TrustedProxies.parse(["10.0.0.0/8", "127.0.0.6", "fd00::/8", "172.16.0.0/12"]).get()
        #expect(proxies.client(peer: "172.31.255.1", forwardedFor: ["203.0.113.9"]) == "203.0.113.9")
        #expect(proxies.client(peer: "172.32.0.1", forwardedFor: ["203.0.113.9"]) == "172.32.0.1")
        #expect(proxies.client(peer: "10.1.2.3", forwardedFor: ["203.0.113.9:5678"]) == "203.0.113.9")
        #expect(proxies.client(peer: "10.1.2.3", forwardedFor: ["[2001:db8::1]:443"]) == "2001:db8::1")
        #expect(proxies.client(peer: "192.0.2.1", forwardedFor: ["203.0.113.9"]) == "192.0.2.1")
        #expect(proxies.client(peer: "127.0.0.6", forwardedFor: ["198.51.100.1, 203.0.113.9"]) == "203.0.113.9")
        #expect(proxies.client(peer: "10.1.2.3", forwardedFor: ["203.0.113.9", "10.9.9.9"]) == "203.0.113.9")
        #expect(proxies.client(peer: "::ffff:10.1.2.3", forwardedFor: ["2001:db8::1, fd12::1"]) == "2001:db8::1")
        #expect(proxies.client(peer: "10.1.2.3", forwardedFor: []) == "10.1.2.3")
        #expect(proxies.client(peer: "10.1.2.3", forwardedFor: ["not-an-address, 10.4.4.4"]) == "10.4.4.4")
        #expect(proxies.client(peer: "11.0.0.1", forwardedFor: ["203.0.113.9"]) == "11.0.0.1")
        for bad in ["10.0.0.0/33", "hospital.example", "10.0.0.0/", "fd00::/129"] {
            #expect(throws: TrustedProxies.InvalidNetwork.self) { try TrustedProxies.parse([bad]).get() }
        }
        #expect(throws: (any Error).self) {
            try HospitalConfiguration.from(environment: ["HOSPITAL_TRUSTED_PROXIES": "10.0.0.0/8, example"])
        }
        let configured = try HospitalConfiguration.from(environment: ["HOSPITAL_TRUSTED_PROXIES": " 127.0.0.6 ,10.0.0.0/8"])
        #expect(configured.auth.trustedProxies == (try TrustedProxies.parse(["127.0.0.6", "10.0.0.0/8"]).get()))
    }

    @Test(
        "The data directory is 0700 and every database file 0600",
        .enabled(if: !TestSystem.onPostgres, "checks the SQLite files' modes"))
    func fileModes() async throws {
        try await withTestSystem { system in
            let manager = FileManager.default
            func mode(_ path: String) throws -> Int {
                try manager.attributesOfItem(atPath: path)[.posixPermissions] as? Int ?? -1
            }
            #expect(try mode(system.dataDirectory.path) == 0o700)
            let files = try manager.contentsOfDirectory(atPath: system.dataDirectory.path).filter {
                $0.hasSuffix(".sqlite")
            }
            #expect(files.count >= 6, "\(files)")
            for file in files {
                #expect(try mode(system.dataDirectory.appendingPathComponent(file).path) == 0o600, "\(file)")
            }
        }
    }
}

@Suite("Secrets stay out of logs")
struct SecretsInLogsTests {
    @Test("A configuration prints database URLs without their password and never the signing key")
    func configurationDescription() throws {
        var config = HospitalConfiguration(dataDirectory: URL(fileURLWithPath: "/tmp/x"))
        config.databaseURL = URL(string: "postgres://hospital:s3cret-pass@db:5432/reception")
        config.auth.signingKeyPEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAsecret\n-----END PRIVATE KEY-----"
        let printed = "\(config)"
        #expect(!printed.contains("s3cret-pass") && printed.contains("hospital:***@db"))
        #expect(!printed.contains("MIGHAgEAsecret"))
        let serving = ServingSystem(services: [.reception], configuration: config, logger: .init(label: "t")) { _ in }
        #expect("\(serving)" == "ServingSystem(reception)")
    }
}

@Suite("Idempotency records")
struct IdempotencyRecordTests {
    @Test("A key is remembered for a day, keeping no copy of the patient; after that it is new again")
    func expiry() async throws {
        try await withTestSystem { system in
            let body: [String: Any] = ["patientName": "홍길동", "phone": "010-1234-5678"]
            let first = try await system.post("/receptions", body, headers: [("Idempotency-Key", "desk-7")])
            let again = try await system.post("/receptions", body, headers: [("Idempotency-Key", "desk-7")])
            #expect(first.status == 201 && again.status == 201)
            #expect(first.text == again.text, "a retry answers the same")
            let db = try #require(system.system.database(of: .reception))
            let rows = try await db.raw("SELECT * FROM idempotency_keys").all()
            #expect(rows.count == 1)
            for column in ["request", "response"] {
                let value = try rows[0].decode(column: column, as: String.self)
                #expect(!value.contains("홍길동") && !value.contains("010-1234-5678"), "\(column)")
            }
            try await db.update("idempotency_keys").set("created_at", to: Date().addingTimeInterval(-25 * 3600)).run()
            let later = try await system.post("/receptions", body, headers: [("Idempotency-Key", "desk-7")])
            #expect(later.status == 201)
            #expect(later.json["id"] as? String != first.json["id"] as? String, "a day later the key is new")
        }
    }
}
