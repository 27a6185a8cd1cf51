import Foundation
import Identity
import JWTKit
import ServiceKit
import SharedKernel
import Vapor

/// Signing in for API clients, and the keys that verify the tokens: `POST /auth/token`,
/// `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration`.
public struct SignInRoutes: Sendable {
    let signIn: SignIn
    let revocations: Revocations

    public init(signIn: SignIn, revocations: Revocations) {
        self.signIn = signIn
        self.revocations = revocations
    }

    struct SessionPage: Content {
        var items: [Identity.Session]
    }

    struct EndSessions: Content {
        /// Every session of this user…
        var user: String?
        /// …or this one session.
        var id: String?
    }

    struct Ended: Content {
        var ended: Int
    }

    struct NewDevice: Decodable {
        var label: String?
    }

    /// A display device as the administrator sees it; `code` only in the answer that issued it.
    struct Device: Content {
        var id: String
        var label: String
        var createdAt: Date
        var lastSeenAt: Date
        var expiresAt: Date
        var endedAt: Date?
        var endReason: String?
        var code: String?
    }

    struct DevicePage: Content {
        var items: [Device]
    }

    struct Credentials: Decodable {
        var username: String?
        var password: String?
    }

    struct TokenResponse: Content {
        var accessToken: String
        var tokenType: String
        var expiresIn: Int
    }

    struct Discovery: Content {
        var issuer: String
        var jwks_uri: String
        var id_token_signing_alg_values_supported: [String]
    }

    /// - Parameter admin: the routes behind the access control (the administrator's).
    public func register(on routes: any RoutesBuilder, admin: any RoutesBuilder) {
        routes.post("auth", "token", use: token)
        // What every process refuses although signed: ended sessions (by id) and accounts whose
        // earlier tokens are void (by the SHA-256 of the name). Public: it names nobody.
        routes.get("auth", "revocations") { _ -> Response in
            // Not before this replica read its sessions once: an empty list would say "nothing".
            guard revocations.isLoaded else { throw AppError.notReady("The revoked sessions are not read yet.") }
            let response = Response(status: .ok)
            try response.content.encode(revocations.snapshot, as: .json)
            response.headers.replaceOrAdd(name: .cacheControl, value: "no-store")
            return response
        }
        // The administrator: who is signed in, and ending a user's (or one) session.
        admin.get("admin", "sessions") { req async throws -> SessionPage in
            var query = QueryReader(req)
            let user = query.text("user", maxLength: 64)
            try query.check()
            return SessionPage(items: try await signIn.sessions.list(username: user))
        }
        admin.post("admin", "sessions", "end") { req async throws -> Ended in
            let end = try req.body(EndSessions.self)
            let admin = req.signedIn?.principal.username ?? "admin"
            switch (end.user, end.id) {
            case (let user?, nil) where !user.isEmpty && user.utf8.count <= 64:
                let ended = try await signIn.sessions.endAll(username: user, reason: "ended by \(admin)")
                req.logger.notice("sessions ended by an administrator", metadata: ["user": "\(user)", "by": "\(admin)"])
                return Ended(ended: ended)
            case (nil, let id?) where id.utf8.count == 32 && id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }):
                let ended = try await signIn.sessions.end(id: id, reason: "ended by \(admin)")
                req.logger.notice("a session ended by an administrator", metadata: ["session": "\(id)", "by": "\(admin)"])
                return Ended(ended: ended ? 1 : 0)
            default:
                throw ValidationFailure([
                    .init(field: "user", code: .required, message: "Name a user, or a session's id (32 hex digits), not both.")
                ])
            }
        }
        // Display devices (대기실 TV): a long-lived session in the display role, issued and
        // revoked (`POST /admin/sessions/end {id}`) by an administrator.
        admin.post("admin", "devices") { req async throws -> Response in
            var v = FieldValidation()
            let label = v.required(try req.body(NewDevice.self).label, "label", maxLength: 40)
            try v.check()
            let admin = req.signedIn?.principal.username ?? "admin"
            // A device is known by its label (in the audit trail, its streams, a revocation).
            let now = Date()
            if try await signIn.sessions.devices().contains(where: {
                $0.username == "device:\(label)" && $0.endedAt == nil && signIn.sessions.endOfLife($0) > now
            }) {
                throw InvalidTransition(
                    aggregate: "device", currentState: "LIVE", attempted: "issue",
                    reason: "a live device is labelled \(label): revoke it first, or choose another label")
            }
            let (secret, session) = try await signIn.sessions.start(
                username: "device:\(label)", role: .display, kind: SessionStore.deviceKind, client: req.clientAddress ?? "unknown")
            req.logger.notice("a display device issued", metadata: ["session": "\(session.id)", "by": "\(admin)"])
            var device = Self.device(session, sessions: signIn.sessions)
            device.code = secret
            let response = try await device.encodeResponse(status: .created, for: req)
            response.headers.replaceOrAdd(name: .cacheControl, value: "no-store")
            return response
        }
        admin.get("admin", "devices") { req async throws -> DevicePage in
            DevicePage(items: try await signIn.sessions.devices().map { Self.device($0, sessions: signIn.sessions) })
        }
        routes.get(".well-known", "jwks.json") { _ -> Response in
            let response = Response(status: .ok)
            try response.content.encode(signIn.issuer.key.jwks, as: .json)
            response.headers.replaceOrAdd(name: .cacheControl, value: "public, max-age=300")
            return response
        }
        routes.get(".well-known", "openid-configuration") { req -> Discovery in
            let base = "\(req.url.scheme ?? "http")://\(req.headers.first(name: .host) ?? "localhost")"
            return Discovery(
                issuer: signIn.issuer.issuer, jwks_uri: base + "/.well-known/jwks.json",
                id_token_signing_alg_values_supported: ["ES256"])
        }
    }

    static func device(_ session: Identity.Session, sessions: SessionStore) -> Device {
        Device(
            id: session.id, label: String(session.username.dropFirst("device:".count)), createdAt: session.createdAt,
            lastSeenAt: session.lastSeenAt, expiresAt: sessions.endOfLife(session), endedAt: session.endedAt,
            endReason: session.endReason)
    }

    /// A name and password for a token; 401 for anything wrong.
    @Sendable func token(_ req: Request) async throws -> TokenResponse {
        let credentials = try req.body(Credentials.self)
        guard
            let account = try await signIn.check(
                username: credentials.username ?? "", password: credentials.password ?? "",
                client: req.clientAddress ?? "unknown", logger: req.logger)
        else { throw AppError.unauthenticated }
        // Each token its own session: a sign-out of the user (or disabling the account) voids it.
        guard
            let (_, session) = try await signIn.startSession(
                for: account, kind: "api", client: req.clientAddress ?? "unknown")
        else { throw AppError.unauthenticated }
        return TokenResponse(
            accessToken: try await signIn.token(for: session), tokenType: "Bearer",
            expiresIn: Int(signIn.tokenLifetime))
    }
}
