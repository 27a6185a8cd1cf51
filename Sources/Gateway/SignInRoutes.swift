import Foundation
import Identity
import JWTKit
import ServiceKit
import Vapor

/// Signing in for API clients, and the keys that verify the tokens: `POST /auth/token`,
/// `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration`.
public struct SignInRoutes: Sendable {
    let signIn: SignIn

    public init(signIn: SignIn) { self.signIn = signIn }

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

    public func register(on routes: any RoutesBuilder) {
        routes.post("auth", "token", use: token)
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

    /// A name and password for a token; 401 for anything wrong.
    @Sendable func token(_ req: Request) async throws -> TokenResponse {
        let credentials = try req.body(Credentials.self)
        guard
            let account = try await signIn.check(
                username: credentials.username ?? "", password: credentials.password ?? "",
                client: req.clientAddress ?? "unknown", logger: req.logger)
        else { throw AppError.unauthenticated }
        return TokenResponse(
            accessToken: try await signIn.token(username: account.username, role: account.role), tokenType: "Bearer",
            expiresIn: Int(signIn.tokenLifetime))
    }
}
