import Foundation
import Identity
import JWTKit

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

    static func token(_ role: Role, username: String? = nil) async throws -> String {
        let issuer = await TokenIssuer(
            key: try SigningKey(pem: pem), issuer: issuer, audience: audience, lifetime: 3600)
        return try await issuer.issue(username: username ?? "test-\(role.rawValue)", role: role)
    }

    /// A fixed CSRF token for screen posts: the cookie and the form field carry the same value.
    static let csrf = String(repeating: "t", count: 43)

    /// The role whose screen `path` is, if it is one.
    static func screenRole(_ path: String) -> Role? {
        if path.hasPrefix("/desk") { return .desk }
        if path.hasPrefix("/doctor") { return .doctor }
        if path.hasPrefix("/examiner") { return .examiner }
        return nil
    }

    /// The headers (and form body) that sign `method path` in as `auth` says.
    static func credentials(
        _ auth: TestAuth, method: String, path: String
    ) async throws -> (headers: [(String, String)], isScreen: Bool) {
        let bare = String(path.split(separator: "?", maxSplits: 1).first ?? "")
        if let screen = screenRole(bare) {
            let role: Role
            switch auth {
            case .none: return ([("cookie", "hospital_csrf=\(csrf)")], true)
            case .role(let r): role = r
            case .automatic: role = screen
            }
            return ([("cookie", "hospital_session=\(try await token(role)); hospital_csrf=\(csrf)")], true)
        }
        let role: Role
        switch auth {
        case .none: return ([], false)
        case .role(let r): role = r
        case .automatic:
            guard case .roles(let roles) = AccessPolicy.decision(method: method, requestPath: bare),
                let first = roles.min()
            else { return ([], false) }
            role = first
        }
        return ([("authorization", "Bearer \(try await token(role))")], false)
    }
}
