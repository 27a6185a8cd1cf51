import Foundation
import JWTKit
import Logging
import NIOPosix
import SQLKit
import SQLiteKit
import Testing

@testable import Identity

/// Server-side sessions on a real SQLite database, with the clock in the test's hands.
@Suite("Sessions")
struct SessionStoreTests {
    func withStores(_ body: (AccountStore, SessionStore) async throws -> Void) async throws {
        try await withMemoryDatabase { database in
            var settings = AccountStore.Settings()
            settings.bcryptCost = 4
            let accounts = AccountStore(database: database, settings: settings)
            try await accounts.prepare()
            var sessionSettings = SessionSettings()
            sessionSettings.idle = 900
            sessionSettings.absolute = 12 * 3600
            let sessions = SessionStore(database: database, settings: sessionSettings, localAccounts: true)
            try await sessions.prepare()
            try await body(accounts, sessions)
        }
    }

    @Test("Session ids and the revocation list's user keys are SHA-256 in lower-case hex")
    func hexDigests() {
        #expect(sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let revocations = Revocations()
        let now = Date()
        revocations.replace(
            with: .init(sessions: ["s1"], users: [.init(user: Revocations.userKey("kim"), notBefore: now.timeIntervalSince1970)]))
        let principal = { (name: String, sid: String?, iat: Date) in
            Principal(username: name, role: .desk, expiresAt: now + 600, sessionId: sid, issuedAt: iat)
        }
        #expect(revocations.isRevoked(principal("lee", "s1", now)))
        #expect(revocations.isRevoked(principal("kim", "s2", now - 1)))
        #expect(!revocations.isRevoked(principal("kim", "s2", now + 1)))
        #expect(!revocations.isRevoked(principal("lee", "s2", now - 1)))
    }

    @Test("A display device: no account, never idle, over at its own lifetime or when revoked; apart from the sessions list, kept by the sweep")
    func displayDevice() async throws {
        try await withMemoryDatabase { database in
            var settings = SessionSettings()
            settings.idle = 900
            settings.absolute = 12 * 3600
            settings.device = 30 * 86_400
            let sessions = SessionStore(database: database, settings: settings, localAccounts: true)
            try await sessions.prepare()
            let start = Date()
            let (secret, device) = try await sessions.start(
                username: "device:1층 내과 TV", role: .display, kind: SessionStore.deviceKind, client: "c", now: start)
            // Left alone for a week, without an account behind it: still the device.
            let week = start.addingTimeInterval(7 * 86_400)
            #expect(try await sessions.find(secret: secret, now: week)?.role == .display)
            #expect(sessions.endOfLife(device) == start.addingTimeInterval(30 * 86_400))
            #expect(try await sessions.list(now: start.addingTimeInterval(60)).isEmpty)
            #expect(try await sessions.devices(now: week).map(\.id) == [device.id])
            try await sessions.sweep(now: start.addingTimeInterval(20 * 86_400))
            #expect(try await sessions.find(secret: secret, now: start.addingTimeInterval(20 * 86_400)) != nil)
            // Its lifetime over: ended.
            #expect(try await sessions.find(secret: secret, now: start.addingTimeInterval(30 * 86_400 + 1)) == nil)
            #expect(try await sessions.session(id: device.id)?.endReason == "expired")

            // Revoked by an administrator: over at once.
            let (other, second) = try await sessions.start(
                username: "device:2층", role: .display, kind: SessionStore.deviceKind, client: "c", now: start)
            #expect(try await sessions.end(id: second.id, reason: "ended by admin", now: start.addingTimeInterval(60)))
            #expect(try await sessions.find(secret: other, now: start.addingTimeInterval(61)) == nil)
            #expect(try await sessions.revoked(since: start).sessions.contains(second.id))
        }
    }

    @Test("Idle 15 minutes, or 12 hours after sign-in however busy: over; a request in between keeps it")
    func timeouts() async throws {
        try await withStores { accounts, sessions in
            try await accounts.add(username: "kim", role: .desk, password: "long enough password")
            let start = Date()
            let (secret, session) = try await sessions.start(username: "kim", role: .desk, kind: "screen", client: "c", now: start)
            #expect(session.id == SessionStore.publicId(of: secret) && session.id != secret)
            // Busy: a request every 10 minutes keeps it alive…
            var now = start
            for _ in 0..<5 {
                now = now.addingTimeInterval(600)
                #expect(try await sessions.find(secret: secret, now: now)?.username == "kim")
            }
            // …idle for 15 minutes ends it.
            #expect(try await sessions.find(secret: secret, now: now.addingTimeInterval(901)) == nil)
            #expect(try await sessions.session(id: session.id)?.endReason == "idle")
            // However busy, 12 hours after sign-in it is over.
            let (busy, _) = try await sessions.start(username: "kim", role: .desk, kind: "screen", client: "c", now: start)
            now = start
            while now.timeIntervalSince(start) < 12 * 3600 - 600 {
                now = now.addingTimeInterval(600)
                #expect(try await sessions.find(secret: busy, now: now) != nil)
            }
            #expect(try await sessions.find(secret: busy, now: start.addingTimeInterval(12 * 3600 + 1)) == nil)
        }
    }

    @Test("A session of a disabled account, or of an account given another role, is over; so is one an administrator ended")
    func accountChanges() async throws {
        try await withStores { accounts, sessions in
            try await accounts.add(username: "lee", role: .doctor, password: "long enough password")
            let (a, _) = try await sessions.start(username: "lee", role: .doctor, kind: "screen", client: "c")
            let (b, bSession) = try await sessions.start(username: "lee", role: .doctor, kind: "screen", client: "d")
            #expect(try await sessions.list(username: "lee").count == 2)
            #expect(try await sessions.end(id: bSession.id, reason: "ended by boss"))
            #expect(try await sessions.find(secret: b) == nil)
            #expect(try await sessions.find(secret: a) != nil)
            try await accounts.disable("lee")
            #expect(try await sessions.find(secret: a) == nil, "disabled, even before anyone ended it")
            // A session for a role the account does not have (changed since) is no session.
            try await accounts.add(username: "park", role: .desk, password: "long enough password")
            let (c, _) = try await sessions.start(username: "park", role: .admin, kind: "screen", client: "c")
            #expect(try await sessions.find(secret: c) == nil)
        }
    }

    @Test("A sign-in checked against a password that changed meanwhile gets no session; nor one of an account disabled meanwhile")
    func signInRacingAChange() async throws {
        try await withStores { accounts, sessions in
            let issuer = await TokenIssuer(
                key: try SigningKey(pem: ES256PrivateKey().pemRepresentation), issuer: "hospital", audience: "hospital-api",
                lifetime: 900)
            let signIn = SignIn(issuer: issuer, accounts: accounts, sessions: sessions)
            try await accounts.add(username: "han", role: .desk, password: "first long password")
            guard case .signedIn(let checked) = try await accounts.signIn(username: "han", password: "first long password")
            else { Issue.record("refused"); return }
            // The administrator sets a new password (ending every session) after the check…
            try await accounts.setPassword("han", "second long password", now: Date().addingTimeInterval(1))
            try await sessions.endAll(username: "han", reason: "password changed")
            // …and the sign-in that checked the old one would start its session only now.
            #expect(try await signIn.startSession(for: checked, kind: "screen", client: "c") == nil)
            #expect(try await sessions.list(username: "han").isEmpty)
            guard case .signedIn(let fresh) = try await accounts.signIn(username: "han", password: "second long password")
            else { Issue.record("refused"); return }
            #expect(try await signIn.startSession(for: fresh, kind: "screen", client: "c") != nil)
            try await accounts.disable("han")
            #expect(try await signIn.startSession(for: fresh, kind: "api", client: "c") == nil)
        }
    }

    @Test("Revocations: a token of an ended session, or of an account revoked after it was issued, is void; a newer one is not")
    func revocations() async throws {
        try await withStores { accounts, sessions in
            let start = Date(timeIntervalSince1970: 1_800_000_000.5)
            try await accounts.add(username: "choi", role: .desk, password: "long enough password")
            let (_, one) = try await sessions.start(username: "choi", role: .desk, kind: "api", client: "c", now: start)
            let (_, two) = try await sessions.start(username: "choi", role: .desk, kind: "api", client: "c", now: start)
            try await sessions.end(id: one.id, reason: "signed out", now: start.addingTimeInterval(5))
            let revocations = Revocations()
            revocations.replace(with: try await sessions.revoked(since: start))
            func principal(_ session: Session?, issued: TimeInterval) -> Principal {
                Principal(
                    username: "choi", role: .desk, expiresAt: start.addingTimeInterval(900), sessionId: session?.id,
                    issuedAt: Date(timeIntervalSince1970: (start.timeIntervalSince1970 + issued).rounded(.down)))
            }
            #expect(revocations.isRevoked(principal(one, issued: 0)))
            #expect(!revocations.isRevoked(principal(two, issued: 0)))
            #expect(!revocations.isRevoked(principal(nil, issued: 0)))
            // The account: every token issued before now is void, with or without a session.
            #expect(try await sessions.endAll(username: "choi", reason: "password changed", now: start.addingTimeInterval(60)) == 1)
            revocations.replace(with: try await sessions.revoked(since: start))
            #expect(revocations.isRevoked(principal(two, issued: 0)))
            #expect(revocations.isRevoked(principal(nil, issued: 30)))
            #expect(!revocations.isRevoked(principal(nil, issued: 61)), "signed in again after the change")
            // The published list names nobody.
            let snapshot = revocations.snapshot
            #expect(!String(decoding: try JSONEncoder().encode(snapshot), as: UTF8.self).contains("choi"))
        }
    }
}
