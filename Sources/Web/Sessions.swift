import Foundation
import Identity
import Synchronization
import ServiceKit
import Vapor

/// Signing in on the screens: a server-side session (`SessionStore`, shared by the gateway's
/// replicas) whose secret is the cookie. It ends on sign-out, after `idle` without a request,
/// `absolute` after sign-in, or when an administrator, a disabled account or a new password ends
/// it; the calls a screen makes for the user carry a short token of the session (`sid`), which
/// every process refuses once the session ended. A CSRF token in every form.
public struct ScreenSessions: Sendable {
    static let sessionCookie = "hospital_session"
    static let csrfCookie = "hospital_csrf"

    let signIn: SignIn
    let verifier: TokenVerifier
    /// Set when an external OpenID provider signs users in (the sign-in page sends them there).
    let provider: ProviderSignIn?
    private let tokens = SessionTokens()
    /// The forms' CSRF tokens, signed with a key derived from the token signing key.
    let csrf: CSRFTokens

    public init(signIn: SignIn, verifier: TokenVerifier, provider: ProviderSignIn? = nil) {
        self.signIn = signIn
        self.verifier = verifier
        self.provider = provider
        csrf = CSRFTokens(signingKey: signIn.issuer.key)
    }

    /// The user of the session cookie, if it names a live session.
    func user(_ req: Request) async -> SignedInUser? {
        guard let secret = req.cookies[Self.sessionCookie]?.string, !secret.isEmpty,
            let session = try? await signIn.sessions.find(secret: secret),
            let token = try? await tokens.token(for: session, signIn: signIn),
            let principal = try? await verifier.verify(token)
        else { return nil }
        return SignedInUser(principal: principal, token: token)
    }

    /// Starts a session for a user the provider just signed in; its secret goes into the cookie.
    func start(username: String, role: Role, kind: String, on response: Response, for req: Request) async throws {
        let (secret, _) = try await signIn.sessions.start(
            username: username, role: role, kind: kind, client: req.clientAddress ?? "unknown")
        setSession(secret, on: response, for: req)
        setCSRF(forSession: secret, on: response, for: req)
    }

    /// Starts a session for a local account just checked; false if it changed meanwhile.
    func start(_ account: Account, on response: Response, for req: Request) async throws -> Bool {
        guard
            let (secret, _) = try await signIn.startSession(
                for: account, kind: "screen", client: req.clientAddress ?? "unknown")
        else { return false }
        setSession(secret, on: response, for: req)
        setCSRF(forSession: secret, on: response, for: req)
        return true
    }

    /// Ends the session of the cookie (sign-out).
    func end(_ req: Request) async throws {
        guard let secret = req.cookies[Self.sessionCookie]?.string, (16...128).contains(secret.utf8.count) else {
            return
        }
        let id = SessionStore.publicId(of: secret)
        if try await signIn.sessions.end(id: id, reason: "signed out") {
            req.logger.info("signed out", metadata: ["session": "\(id)"])
        }
        tokens.forget(id)
    }

    /// Sets the session cookie: `HttpOnly`, `SameSite=Strict`, `Secure` over TLS (or behind a
    /// proxy that says so), no expiry (gone when the browser closes).
    func setSession(_ secret: String?, on response: Response, for req: Request) {
        response.cookies[Self.sessionCookie] = HTTPCookies.Value(
            string: secret ?? "", expires: secret == nil ? Date(timeIntervalSince1970: 0) : nil, path: "/",
            isSecure: Self.isSecure(req), isHTTPOnly: true, sameSite: .strict)
    }

    /// Pairs this browser with a display device (a waiting-room TV): the code works once. Its
    /// session ends and the browser gets a device session of its own, with a secret nobody saw,
    /// whose cookie lasts as long as the device does (the TV stays signed in across restarts).
    /// False if `code` is not a live device's.
    func pairDevice(code: String, on response: Response, for req: Request) async throws -> Bool {
        let sessions = signIn.sessions
        guard let issued = try await sessions.find(secret: code), issued.kind == SessionStore.deviceKind,
            // Ended here, once: of two browsers pairing with one code, one gets the device.
            try await sessions.end(id: issued.id, reason: "paired")
        else { return false }
        let (secret, paired) = try await sessions.start(
            username: issued.username, role: .display, kind: SessionStore.deviceKind, client: req.clientAddress ?? "unknown")
        let left = sessions.endOfLife(paired).timeIntervalSinceNow
        response.cookies[Self.sessionCookie] = HTTPCookies.Value(
            string: secret, maxAge: max(1, Int(left)), path: "/", isSecure: Self.isSecure(req), isHTTPOnly: true,
            sameSite: .strict)
        setCSRF(forSession: secret, on: response, for: req)
        req.logger.notice("a display device paired", metadata: ["code": "\(issued.id)", "session": "\(paired.id)"])
        return true
    }

    /// The CSRF token of this browser, if it is one this system issued for its session (a
    /// cookie, and the same value in every form); `CSRFCookie` checked it.
    static func csrfToken(_ req: Request) -> String? { req.storage[ValidCSRFToken.self] }

    /// The token this request's forms carry: the browser's, or a new one `CSRFCookie` sets.
    static func formToken(_ req: Request) -> String {
        csrfToken(req) ?? req.storage[NewCSRFToken.self] ?? ""
    }

    /// What a CSRF token is bound to: the public id of the session cookie's session, "" without.
    static func csrfBinding(_ req: Request) -> String {
        guard let secret = req.cookies[sessionCookie]?.string, (16...128).contains(secret.utf8.count) else { return "" }
        return SessionStore.publicId(of: secret)
    }

    /// A fresh CSRF cookie for the session whose secret is `secret` (at sign-in: the one the
    /// sign-in page had belonged to no session).
    func setCSRF(forSession secret: String?, on response: Response, for req: Request) {
        let token = csrf.token(binding: secret.map(SessionStore.publicId(of:)) ?? "")
        response.cookies[Self.csrfCookie] = HTTPCookies.Value(
            string: token, path: "/", isSecure: Self.isSecure(req), isHTTPOnly: true, sameSite: .strict)
    }

    /// A form post is ours only if it carries the browser's CSRF token and does not come from
    /// another origin.
    static func isGenuineForm(_ req: Request) -> Bool {
        // The browser says where the post comes from: another site (or a site of ours that is not
        // this origin) is refused before anything else is read.
        if let site = req.headers.first(name: "Sec-Fetch-Site")?.lowercased(), site != "same-origin", site != "none" {
            return false
        }
        if let origin = req.headers.first(name: .origin) {
            guard isThisHost(origin, req) else { return false }
        } else if let referer = req.headers.first(name: .referer), !isThisHost(referer, req) {
            // No Origin (older browsers, some privacy settings): a Referer of another site is enough.
            return false
        }
        // A streamed upload has no form to read: its token comes in a header (scripts) or in the
        // form's action (`?csrf=`, the page's own).
        let sent = req.headers.first(name: "X-CSRF-Token") ?? req.query[String.self, at: "csrf"] ?? req.formValue("csrf")
        guard let expected = csrfToken(req), let sent else { return false }
        return constantTimeEqual(expected, sent)
    }

    /// Whether `address` (an Origin or a Referer) is of the host this request was sent to.
    static func isThisHost(_ address: String, _ req: Request) -> Bool {
        guard let host = req.headers.first(name: .host), let url = URL(string: address), let addressHost = url.host
        else { return false }
        let authority = addressHost + (url.port.map { ":\($0)" } ?? "")
        return authority == host || addressHost == host
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

private struct ValidCSRFToken: StorageKey {
    typealias Value = String
}

/// Checks the browser's CSRF cookie (issued by this system, for this session) and gives a browser
/// without a good one a new one, on every screen (the sign-in page included).
struct CSRFCookie: AsyncMiddleware {
    let tokens: CSRFTokens

    func respond(to req: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let binding = ScreenSessions.csrfBinding(req)
        if let value = req.cookies[ScreenSessions.csrfCookie]?.string, tokens.isValid(value, binding: binding) {
            req.storage[ValidCSRFToken.self] = value
            return try await next.respond(to: req)
        }
        let token = tokens.token(binding: binding)
        req.storage[NewCSRFToken.self] = token
        let response = try await next.respond(to: req)
        response.cookies[ScreenSessions.csrfCookie] = HTTPCookies.Value(
            string: token, path: "/", isSecure: ScreenSessions.isSecure(req), isHTTPOnly: true, sameSite: .strict)
        return response
    }
}

/// Guards a role's screens: signed in to a live session (else to `/login`), the right role (else
/// 403), and every form post genuine (else 403).
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
        return try await next.respond(to: req)
    }
}

/// The token each live session's screens call the API with: minted when first needed, again when
/// half its life is gone (so a session's calls carry a token of its own `sid`).
final class SessionTokens: Sendable {
    private let minted = Mutex<[String: (token: String, expiresAt: Date)]>([:])

    func token(for session: Identity.Session, signIn: SignIn, now: Date = Date()) async throws -> String {
        let halfLife = signIn.tokenLifetime / 2
        if let known = minted.withLock({ $0[session.id] }), known.expiresAt.timeIntervalSince(now) > halfLife {
            return known.token
        }
        let token = try await signIn.token(for: session, now: now)
        let expiresAt = now.addingTimeInterval(signIn.tokenLifetime)
        minted.withLock { minted in
            if minted.count >= 10_000 { minted.removeAll(keepingCapacity: true) }
            minted[session.id] = (token, expiresAt)
        }
        return token
    }

    func forget(_ id: String) { _ = minted.withLock { $0.removeValue(forKey: id) } }
}
