import Crypto
import Foundation
import JWTKit
import Testing

@testable import Identity

/// Tokens this system issues, and every forgery the verifier must refuse.
@Suite("Access tokens")
struct TokenTests {
    static let issuer = "https://hospital.test"
    static let audience = "hospital-api"

    func issuer(lifetime: TimeInterval = 900, key: SigningKey? = nil) async throws -> TokenIssuer {
        await TokenIssuer(
            key: try key ?? SigningKey(pem: ES256PrivateKey().pemRepresentation), issuer: Self.issuer,
            audience: Self.audience, lifetime: lifetime)
    }

    func verifier(for issuer: TokenIssuer, audience: String = audience) -> TokenVerifier {
        let jwks = issuer.key.jwks
        return TokenVerifier(settings: .init(issuer: Self.issuer, audience: audience)) { jwks }
    }

    @Test("A token it issued verifies, naming the user and the role")
    func roundTrip() async throws {
        let issuer = try await issuer()
        let token = try await issuer.issue(username: "kim.doctor", role: .doctor)
        let principal = try await verifier(for: issuer).verify(token)
        #expect(principal.username == "kim.doctor")
        #expect(principal.role == .doctor)
    }

    @Test("Departments travel in the token; a provider's claim may be a string or a list, and junk in it is not believed")
    func departments() async throws {
        let issuer = try await issuer()
        let token = try await issuer.issue(username: "kim.doctor", role: .doctor, departments: ["내과", "소아과"])
        #expect(try await verifier(for: issuer).verify(token).departments == ["내과", "소아과"])
        let none = try await issuer.issue(username: "new.doctor", role: .doctor)
        #expect(try await verifier(for: issuer).verify(none).departments == [])
        let path = ["ext", "departments"]
        #expect(TokenVerifier.departments(in: ["ext": ["departments": "외과"]], at: path) == ["외과"])
        #expect(
            TokenVerifier.departments(
                in: ["ext": ["departments": ["내과", "", "a\u{202E}b", String(repeating: "x", count: 51), "  "]]], at: path)
                == ["내과"])
        #expect(TokenVerifier.departments(in: ["ext": ["departments": 7]], at: path) == [])
        #expect(TokenVerifier.departments(in: [:], at: path) == [])
    }

    @Test(
        "Forged tokens are refused: changed bytes, alg none, HS256, wrong issuer or audience, expired, early, another key, elevated role"
    )
    func forgeries() async throws {
        let issuer = try await issuer()
        let verifier = verifier(for: issuer)
        let token = try await issuer.issue(username: "lee.desk", role: .desk)
        let parts = token.split(separator: ".").map(String.init)
        let payload = try #require(
            JSONSerialization.jsonObject(with: Base64URL.decode(parts[1])!) as? [String: Any])

        func reencoded(_ object: [String: Any]) throws -> String {
            Base64URL.encode(try JSONSerialization.data(withJSONObject: object))
        }
        func expectRefused(_ token: String, _ why: TokenRejection, _ comment: Comment) async {
            do {
                _ = try await verifier.verify(token)
                Issue.record("accepted: \(comment)")
            } catch {
                #expect(error == why, comment)
            }
        }

        // Every byte of the signature matters, and of the payload.
        var signature = Array(parts[2])
        signature[5] = signature[5] == "A" ? "B" : "A"
        await expectRefused(parts[0] + "." + parts[1] + "." + String(signature), .badSignature, "changed signature")
        var elevated = payload
        elevated["role"] = "admin"
        await expectRefused(parts[0] + "." + (try reencoded(elevated)) + "." + parts[2], .badSignature, "role raised")

        // alg none, and a symmetric algorithm keyed with something public.
        let none = try reencoded(["alg": "none", "typ": "JWT"])
        await expectRefused(none + "." + (try reencoded(elevated)) + ".", .algorithmNotAllowed("none"), "alg none")
        let hs = try reencoded(["alg": "HS256", "typ": "JWT", "kid": issuer.key.kid])
        let hsInput = hs + "." + (try reencoded(elevated))
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data(hsInput.utf8), using: SymmetricKey(data: Data(issuer.key.kid.utf8)))
        await expectRefused(hsInput + "." + Base64URL.encode(Data(mac)), .algorithmNotAllowed("HS256"), "HS256")

        // Signed properly, by the right key, but not for us or not now.
        let wrongIssuer = await TokenIssuer(
            key: issuer.key, issuer: "https://evil.test", audience: Self.audience, lifetime: 900)
        await expectRefused(try await wrongIssuer.issue(username: "x", role: .admin), .wrongIssuer, "issuer")
        let wrongAudience = await TokenIssuer(
            key: issuer.key, issuer: Self.issuer, audience: "another-api", lifetime: 900)
        await expectRefused(try await wrongAudience.issue(username: "x", role: .admin), .wrongAudience, "audience")
        await expectRefused(
            try await issuer.issue(username: "x", role: .desk, now: Date().addingTimeInterval(-3600)), .expired,
            "expired an hour ago")
        await expectRefused(
            try await issuer.issue(username: "x", role: .desk, now: Date().addingTimeInterval(3600)), .notYetValid,
            "valid only in an hour")

        // Another key: unknown kid, and the same kid with another key's signature.
        let stranger = try await self.issuer()
        await expectRefused(try await stranger.issue(username: "x", role: .admin), .unknownKey, "another key")
        let strangerToken = try await stranger.issue(username: "x", role: .admin).split(separator: ".")
        let borrowedKid = try reencoded(["alg": "ES256", "typ": "JWT", "kid": issuer.key.kid])
        await expectRefused(
            borrowedKid + "." + strangerToken[1] + "." + strangerToken[2], .badSignature, "another key, our kid")

        // Garbage.
        for junk in ["", "a.b", "a.b.c", String(repeating: "A", count: 20_000), parts[0] + "." + parts[1]] {
            await expectRefused(junk, .malformed, "junk")
        }
        // And the original still verifies: the checks above did not pass by refusing everything.
        #expect(try await verifier.verify(token).role == .desk)
    }

    @Test("Signed by the real key, yet refused: valid for decades, an audience list naming others too, a high-S signature")
    func realKeyButWrongShape() async throws {
        let issuer = try await issuer()
        let verifier = verifier(for: issuer)
        let decades = await TokenIssuer(
            key: issuer.key, issuer: Self.issuer, audience: Self.audience, lifetime: 30 * 365 * 86_400)
        await #expect(throws: TokenRejection.lifetimeTooLong) {
            try await verifier.verify(try await decades.issue(username: "x", role: .admin))
        }
        // An audience array naming us and another: this system's tokens name exactly one.
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: issuer.key.privateKey, kid: JWKIdentifier(string: issuer.key.kid))
        let now = Date()
        let shared = AccessClaims(
            sub: .init(value: "x"), iss: .init(value: Self.issuer), aud: .init(value: [Self.audience, "other-api"]),
            exp: .init(value: now.addingTimeInterval(600)), nbf: nil, iat: .init(value: now), jti: nil,
            role: "admin", sid: nil)
        let sharedToken = LowS.normalized(try await keys.sign(shared, kid: JWKIdentifier(string: issuer.key.kid)))
        await #expect(throws: TokenRejection.wrongAudience) { try await verifier.verify(sharedToken) }
        // The same signature in its other (high-S) form: valid ECDSA, refused.
        let token = try await issuer.issue(username: "lee.desk", role: .desk)
        let parts = token.split(separator: ".").map(String.init)
        let signature = try #require(Base64URL.decode(parts[2]))
        #expect(LowS.isLow(signature), "what this system issues is low-S")
        let high = Data(signature.prefix(32)) + Data(LowS.negated(Array(signature.suffix(32))))
        #expect(!LowS.isLow(high))
        let highToken = parts[0] + "." + parts[1] + "." + Base64URL.encode(high)
        let publicKey = issuer.key.privateKey.publicKey
        #expect(
            try await JWTKeyCollection().add(ecdsa: publicKey).verify(highToken, as: AccessClaims.self).sub.value
                == "lee.desk", "the high-S form is a valid ECDSA signature")
        await #expect(throws: TokenRejection.badSignature) { try await verifier.verify(highToken) }
        #expect(try await verifier.verify(token).username == "lee.desk")
    }

    @Test("An unknown key id fetches the key set again (a rotated key), but not more than once per interval")
    func keyRotation() async throws {
        let old = try await issuer()
        let new = try await issuer()
        let served = Served(old.key.jwks)
        let verifier = TokenVerifier(
            settings: .init(issuer: Self.issuer, audience: Self.audience, refreshInterval: .seconds(3600))
        ) { await served.get() }
        #expect(try await verifier.verify(try await old.issue(username: "a", role: .desk)).username == "a")
        await served.set(JWKS(keys: old.key.jwks.keys + new.key.jwks.keys))
        // The first fetch was just now: a new kid cannot make it fetch again yet.
        await #expect(throws: TokenRejection.unknownKey) {
            try await verifier.verify(try await new.issue(username: "b", role: .desk))
        }
        let eager = TokenVerifier(
            settings: .init(issuer: Self.issuer, audience: Self.audience, refreshInterval: .zero)
        ) { await served.get() }
        await served.set(old.key.jwks)
        #expect(try await eager.verify(try await old.issue(username: "a", role: .desk)).username == "a")
        await served.set(JWKS(keys: old.key.jwks.keys + new.key.jwks.keys))
        #expect(try await eager.verify(try await new.issue(username: "b", role: .desk)).username == "b")
        #expect(await served.fetches == 3)
    }

    @Test("A token verified once is known until it expires, and refused after")
    func verifiedTokensExpire() async throws {
        let issuer = try await issuer(lifetime: 60)
        let verifier = verifier(for: issuer)
        let now = Date()
        let token = try await issuer.issue(username: "a", role: .desk, now: now)
        #expect(try await verifier.verify(token, now: now).username == "a")
        #expect(try await verifier.verify(token, now: now.addingTimeInterval(30)).username == "a")
        await #expect(throws: TokenRejection.expired) {
            try await verifier.verify(token, now: now.addingTimeInterval(60 + 31))
        }
    }

    @Test("A burst of first requests waits for the one key-set read under way: none is refused")
    func concurrentFirstVerifications() async throws {
        let issuer = try await issuer()
        let jwks = issuer.key.jwks
        let verifier = TokenVerifier(settings: .init(issuer: Self.issuer, audience: Self.audience)) {
            try await Task.sleep(for: .milliseconds(50))  // a key set read over the network
            return jwks
        }
        let token = try await issuer.issue(username: "a", role: .desk)
        let refused = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 { group.addTask { (try? await verifier.verify(token)) == nil } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(refused == 0)
    }

    @Test("The role comes from the configured claim: a string, or the first known role of a list")
    func roleClaim() {
        #expect(TokenVerifier.role(in: ["role": "doctor"], at: ["role"]) == .doctor)
        #expect(
            TokenVerifier.role(
                in: ["realm_access": ["roles": ["offline_access", "examiner", "admin"]]], at: ["realm_access", "roles"])
                == .examiner)
        #expect(TokenVerifier.role(in: ["role": "superuser"], at: ["role"]) == nil)
        #expect(TokenVerifier.role(in: [:], at: ["realm_access", "roles"]) == nil)
    }

    @Test("The signing key is created once, mode 0600, and read back the same")
    func keyFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("signing-key.pem")
        let first = try SigningKey.loadOrCreate(at: file)
        let second = try SigningKey.loadOrCreate(at: file)
        #expect(first.kid == second.kid)
        let mode = try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}

/// A key set that changes, counting how often it was read.
actor Served {
    private var jwks: JWKS
    private(set) var fetches = 0
    init(_ jwks: JWKS) { self.jwks = jwks }
    func get() -> JWKS {
        fetches += 1
        return jwks
    }
    func set(_ jwks: JWKS) { self.jwks = jwks }
}
