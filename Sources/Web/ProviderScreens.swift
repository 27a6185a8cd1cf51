import Foundation
import Identity
import ServiceKit
import Vapor

/// Signing in on the screens through an external OpenID provider: the authorization code flow
/// with PKCE. The browser goes to the provider with a fresh `state`, `nonce` and code challenge
/// (the verifier stays in a short-lived HttpOnly cookie of this site); the provider sends it back
/// with a code; the code, with the verifier, buys an ID token, checked for this client and the
/// nonce. The screens' session is then this system's own, as after a password sign-in.
extension WebScreens {
    static let providerCookie = "hospital_oidc"

    /// `GET /login/oidc?next=`: off to the provider.
    @Sendable func providerSignIn(_ req: Request) async throws -> Response {
        guard let provider = sessions.provider else { throw Abort(.notFound) }
        let next = req.query[String.self, at: "next"].flatMap(Screen.localPath) ?? ""
        let flow = ProviderFlow(
            state: PKCE.randomToken(), nonce: PKCE.randomToken(), verifier: PKCE.randomToken(), next: next)
        let location: String
        do {
            location = try await provider.provider.authorizationURL(
                clientID: provider.clientID, redirectURI: Self.redirectURI(provider, req), state: flow.state,
                nonce: flow.nonce, codeChallenge: PKCE.challenge(of: flow.verifier))
        } catch {
            req.logger.error("the identity provider cannot be reached", metadata: ["error": "\(error)"])
            return loginPage(req, next: next, failed: true, error: "error.provider")
        }
        let response = req.redirect(to: location, redirectType: .normal)
        // Lax, not Strict: the provider's redirect back is a navigation from another site.
        response.cookies[Self.providerCookie] = HTTPCookies.Value(
            string: flow.cookie, maxAge: 600, path: "/login/oidc", isSecure: ScreenSessions.isSecure(req),
            isHTTPOnly: true, sameSite: .lax)
        return response
    }

    /// `GET /login/oidc/callback?code=&state=`: the provider's answer.
    @Sendable func providerCallback(_ req: Request) async throws -> Response {
        guard let provider = sessions.provider else { throw Abort(.notFound) }
        let flow = req.cookies[Self.providerCookie].flatMap { ProviderFlow(cookie: $0.string) }
        let next = flow?.next ?? ""
        func refuse(_ reason: String, _ message: String = "error.providerSignIn") -> Response {
            req.logger.notice("sign-in through the identity provider refused", metadata: ["reason": "\(reason)"])
            let response = loginPage(req, next: next, failed: true, error: message)
            response.cookies[Self.providerCookie] = HTTPCookies.Value(
                string: "", expires: Date(timeIntervalSince1970: 0), path: "/login/oidc")
            return response
        }
        if let error = req.query[String.self, at: "error"] {
            return refuse("the provider answered \(error.prefix(64))")
        }
        guard let flow else { return refuse("no sign-in under way in this browser (or it took over 10 minutes)") }
        guard let state = req.query[String.self, at: "state"], ScreenSessions.constantTimeEqual(state, flow.state) else {
            return refuse("the state does not match this browser's sign-in")
        }
        guard let code = req.query[String.self, at: "code"], !code.isEmpty, code.utf8.count <= 2048 else {
            return refuse("no code")
        }
        let principal: Principal
        do {
            let tokens = try await provider.provider.exchange(
                code: code, codeVerifier: flow.verifier, redirectURI: Self.redirectURI(provider, req),
                clientID: provider.clientID, clientSecret: provider.clientSecret)
            principal = try await provider.idTokens.verifyIDToken(tokens.idToken, nonce: flow.nonce)
        } catch let rejection as TokenRejection {
            let message = rejection == .noRole ? "error.providerRole" : "error.providerSignIn"
            return refuse("the ID token: \(rejection)", message)
        } catch OpenIDProvider.Failure.unreachable(let what) {
            return refuse("the identity provider could not be reached (\(what))", "error.provider")
        } catch {
            return refuse("\(error)")
        }
        req.logger.info(
            "signed in through the identity provider",
            metadata: ["user": "\(principal.username)", "role": "\(principal.role.rawValue)"])
        let target = !next.isEmpty && next != "/" ? next : Self.home(of: principal.role) ?? "/"
        // Not a redirect: the session cookie is SameSite=Strict, and a redirect chain that began
        // at the provider's site would not send it with the next request. A page of this site
        // that moves on by itself does.
        var headers = HTTPHeaders()
        headers.contentType = .html
        headers.replaceOrAdd(name: .cacheControl, value: "no-store")
        let response = Response(
            status: .ok, headers: headers,
            body: .init(
                string: """
                    <!doctype html><html lang="ko"><head><meta charset="utf-8">\
                    <meta http-equiv="refresh" content="0;url=\(target)"><title>로그인</title></head>\
                    <body><p><a href="\(target)">계속 / Continue</a></p></body></html>
                    """))
        try await sessions.start(
            username: principal.username, role: principal.role, kind: "provider", on: response, for: req)
        response.cookies[Self.providerCookie] = HTTPCookies.Value(
            string: "", expires: Date(timeIntervalSince1970: 0), path: "/login/oidc")
        return response
    }

    /// The callback the provider sends the browser to: the configured one, or this request's
    /// own origin (its `Host` is one the gateway serves: `AllowedHosts`).
    static func redirectURI(_ provider: ProviderSignIn, _ req: Request) -> String {
        if let configured = provider.redirectURL { return configured }
        let scheme = ScreenSessions.isSecure(req) ? "https" : "http"
        return "\(scheme)://\(req.headers.first(name: .host) ?? "localhost")/login/oidc/callback"
    }
}

/// One sign-in under way in one browser, kept in its cookie: random values of 43 characters
/// each, and the local page to go to afterwards.
struct ProviderFlow {
    var state: String
    var nonce: String
    var verifier: String
    var next: String

    init(state: String, nonce: String, verifier: String, next: String) {
        (self.state, self.nonce, self.verifier, self.next) = (state, nonce, verifier, next)
    }

    var cookie: String { [state, nonce, verifier, Base64URL.encode(Data(next.utf8))].joined(separator: ".") }

    init?(cookie: String) {
        let parts = cookie.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[0...2].allSatisfy({ $0.count == 43 }),
            let data = Base64URL.decode(parts[3]) ?? (parts[3].isEmpty ? Data() : nil),
            let next = String(data: data, encoding: .utf8), next.isEmpty || Screen.localPath(next) != nil
        else { return nil }
        (state, nonce, verifier, self.next) = (parts[0], parts[1], parts[2], next)
    }
}
