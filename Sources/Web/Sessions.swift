import Foundation
import Identity
import ServiceKit
import Vapor

/// Signing in on the screens: a session cookie that holds the user's access token, renewed by
/// every page (so the token's lifetime is the idle timeout), and a CSRF token in every form.
public struct ScreenSessions: Sendable {
    static let sessionCookie = "hospital_session"
    static let csrfCookie = "hospital_csrf"

    let signIn: SignIn
    let verifier: TokenVerifier
    /// Set when an external OpenID provider signs users in (the sign-in page sends them there).
    let provider: ProviderSignIn?

    public init(signIn: SignIn, verifier: TokenVerifier, provider: ProviderSignIn? = nil) {
        self.signIn = signIn
        self.verifier = verifier
        self.provider = provider
    }

    /// The user of the session cookie, if it holds a valid token.
    func user(_ req: Request) async -> SignedInUser? {
        guard let token = req.cookies[Self.sessionCookie]?.string, !token.isEmpty,
            let principal = try? await verifier.verify(token)
        else { return nil }
        return SignedInUser(principal: principal, token: token)
    }

    /// Sets the session cookie: `HttpOnly`, `SameSite=Strict`, `Secure` over TLS (or behind a
    /// proxy that says so), no expiry (gone when the browser closes).
    func setSession(_ token: String?, on response: Response, for req: Request) {
        response.cookies[Self.sessionCookie] = HTTPCookies.Value(
            string: token ?? "", expires: token == nil ? Date(timeIntervalSince1970: 0) : nil, path: "/",
            isSecure: Self.isSecure(req), isHTTPOnly: true, sameSite: .strict)
    }

    /// The CSRF token of this browser (double-submit: a cookie, and the same value in every form).
    static func csrfToken(_ req: Request) -> String? {
        guard let value = req.cookies[csrfCookie]?.string, value.count == 43 else { return nil }
        return value
    }

    /// The token this request's forms carry: the browser's, or a new one `CSRFCookie` sets.
    static func formToken(_ req: Request) -> String {
        csrfToken(req) ?? req.storage[NewCSRFToken.self] ?? ""
    }

    static func newCSRFToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return Base64URL.encode(Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }))
    }

    /// A form post is ours only if it carries the browser's CSRF token and does not come from
    /// another origin.
    static func isGenuineForm(_ req: Request) -> Bool {
        if let origin = req.headers.first(name: .origin) {
            guard let host = req.headers.first(name: .host), let url = URL(string: origin), let originHost = url.host
            else { return false }
            let originAuthority = originHost + (url.port.map { ":\($0)" } ?? "")
            guard originAuthority == host || originHost == host else { return false }
        }
        // A streamed upload has no form to read: its token comes in a header (scripts) or in the
        // form's action (`?csrf=`, the page's own).
        let sent = req.headers.first(name: "X-CSRF-Token") ?? req.query[String.self, at: "csrf"] ?? req.formValue("csrf")
        guard let expected = csrfToken(req), let sent else { return false }
        return constantTimeEqual(expected, sent)
    }

    static func isSecure(_ req: Request) -> Bool {
        req.url.scheme == "https" || req.headers.first(name: "X-Forwarded-Proto")?.lowercased() == "https"
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

private struct NewCSRFToken: StorageKey {
    typealias Value = String
}

/// Gives a browser without a CSRF cookie one, on every screen (the sign-in page included).
struct CSRFCookie: AsyncMiddleware {
    func respond(to req: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        guard ScreenSessions.csrfToken(req) == nil else { return try await next.respond(to: req) }
        let token = ScreenSessions.newCSRFToken()
        req.storage[NewCSRFToken.self] = token
        let response = try await next.respond(to: req)
        response.cookies[ScreenSessions.csrfCookie] = HTTPCookies.Value(
            string: token, path: "/", isSecure: ScreenSessions.isSecure(req), isHTTPOnly: true, sameSite: .strict)
        return response
    }
}

/// Guards a role's screens: signed in (else to `/login`), the right role (else 403), and every
/// form post genuine (else 403). Renews the session on every request.
struct ScreenGuard: AsyncMiddleware {
    let sessions: ScreenSessions
    let role: Role

    func respond(to req: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        if req.method == .POST, !ScreenSessions.isGenuineForm(req) {
            req.logger.notice("form post refused: no CSRF token or another origin")
            return Response(status: .forbidden, body: .init(string: "Forbidden"))
        }
        guard let user = await sessions.user(req) else {
            let back = req.method == .GET ? Screen.localPath(req.url.path).map { "?next=\($0)" } ?? "" : ""
            return req.redirect(to: "/login" + back, redirectType: .normal)
        }
        guard user.principal.role == role else {
            req.logger.notice(
                "screen refused to the role",
                metadata: ["user": "\(user.principal.username)", "role": "\(user.principal.role.rawValue)"])
            return Response(status: .forbidden, body: .init(string: "Forbidden"))
        }
        req.signedIn = user
        let response = try await next.respond(to: req)
        // Every page renews the session: idle for the token's lifetime, and it is over.
        let issuedAt = user.principal.expiresAt.addingTimeInterval(-sessions.signIn.tokenLifetime)
        if Date().timeIntervalSince(issuedAt) > 30 {
            let fresh = try await sessions.signIn.token(username: user.principal.username, role: role)
            sessions.setSession(fresh, on: response, for: req)
        }
        return response
    }
}
