import Foundation
import Identity
import JWTKit
import Synchronization

/// How a test request signs in.
enum TestAuth: Sendable {
    /// As the role the table gives the operation (the first, desk before doctor before examiner
    /// before admin); screens with that role's session cookie; nothing for public operations.
    case automatic
    /// Not at all.
    case none
    case role(Role)
}

/// The one signing key of the test run: every test system and `hospital serve` process trusts it
/// (in-process systems through their configuration, `hospital serve` processes as the key file of
/// their data directory), so a test can hold a real token for any role without an account.
/// `AuthTests` signs in through `POST /auth/token` and `/login` as a user would.
enum TestKeys {
    static let pem = ES256PrivateKey().pemRepresentation
    static let issuer = "hospital"
    static let audience = "hospital-api"

    static func token(_ role: Role, username: String? = nil, departments: [String] = []) async throws -> String {
        let issuer = await TokenIssuer(
            key: try SigningKey(pem: pem), issuer: issuer, audience: audience, lifetime: 3600)
        return try await issuer.issue(username: username ?? "test-\(role.rawValue)", role: role, departments: departments)
    }

    /// A CSRF token for screen posts, as the gateway would issue it for the session whose secret
    /// is `session` (none: the sign-in page's): the cookie and the form field carry it.
    static func csrf(session: String? = nil) -> String {
        CSRFTokens(signingKey: try! SigningKey(pem: pem)).token(binding: session.map(SessionStore.publicId(of:)) ?? "")
    }

    /// The role whose screen `path` is, if it is one.
    static func screenRole(_ path: String) -> Role? {
        if path.hasPrefix("/desk") { return .desk }
        if path.hasPrefix("/doctor") { return .doctor }
        if path.hasPrefix("/examiner") { return .examiner }
        return nil
    }

    /// The headers (and form body) that sign `method path` at `base` in as `auth` says.
    static func credentials(
        _ auth: TestAuth, method: String, path: String, base: URL
    ) async throws -> (headers: [(String, String)], isScreen: Bool, csrf: String?) {
        let bare = String(path.split(separator: "?", maxSplits: 1).first ?? "")
        if let screen = screenRole(bare) {
            let role: Role
            switch auth {
            case .none:
                let csrf = csrf()
                return ([("cookie", "hospital_csrf=\(csrf)")], true, csrf)
            case .role(let r): role = r
            case .automatic: role = screen
            }
            let secret = try await TestSessions.secret(role, at: base)
            let csrf = csrf(session: secret)
            return ([("cookie", "hospital_session=\(secret); hospital_csrf=\(csrf)")], true, csrf)
        }
        let role: Role
        switch auth {
        case .none: return ([], false, nil)
        case .role(let r): role = r
        case .automatic:
            guard case .roles(let roles) = AccessPolicy.decision(method: method, requestPath: bare),
                let first = roles.min()
            else { return ([], false, nil) }
            role = first
        }
        return ([("authorization", "Bearer \(try await token(role))")], false, nil)
    }
}

/// Screen sessions of the test systems running in this process: a test that calls a screen
/// gets a real session (and, with local accounts, a real account) of the system it calls.
enum TestSessions {
    private static let systems = Mutex<[String: (sessions: SessionStore, accounts: AccountStore?)]>([:])
    private static let secrets = Mutex<[String: String]>([:])

    static func register(_ base: URL, sessions: SessionStore, accounts: AccountStore?) {
        systems.withLock { $0[base.absoluteString] = (sessions, accounts) }
    }

    static func unregister(_ base: URL) {
        _ = systems.withLock { $0.removeValue(forKey: base.absoluteString) }
        secrets.withLock { $0 = $0.filter { !$0.key.hasPrefix(base.absoluteString + " ") } }
    }

    /// The session secret of `role`'s screen user (`test-<role>`) at the system at `base`.
    static func secret(_ role: Role, at base: URL, username: String? = nil) async throws -> String {
        let name = username ?? "test-\(role.rawValue)"
        let key = base.absoluteString + " " + name
        if let known = secrets.withLock({ $0[key] }) { return known }
        guard let system = systems.withLock({ $0[base.absoluteString] }) else {
            throw TestSessionError(description: "no test system with screens at \(base)")
        }
        if let accounts = system.accounts, try await !accounts.list().contains(where: { $0.username == name }) {
            try await accounts.add(username: name, role: role, password: UUID().uuidString)
        }
        let (secret, _) = try await system.sessions.start(username: name, role: role, kind: "screen", client: "127.0.0.1")
        secrets.withLock { $0[key] = secret }
        return secret
    }
}

struct TestSessionError: Error, CustomStringConvertible {
    var description: String
}
