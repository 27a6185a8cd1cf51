import AsyncHTTPClient
import Crypto
import Foundation
import JWTKit
import NIOCore

/// An external OpenID Connect provider (Keycloak, Entra ID, Okta, …): its discovery document,
/// keys, token endpoint and userinfo endpoint. The discovery document is read on first use and
/// again after a failure, so the system starts while the provider is still coming up.
public actor OpenIDProvider {
    /// What the provider publishes at `/.well-known/openid-configuration` (the fields used here).
    public struct Metadata: Decodable, Sendable {
        public var issuer: String
        public var authorization_endpoint: String
        public var token_endpoint: String
        public var jwks_uri: String
        public var userinfo_endpoint: String?
        public var end_session_endpoint: String?
    }

    /// What the token endpoint answers to an authorization code.
    public struct Tokens: Sendable {
        public var idToken: String
        public var accessToken: String?
    }

    public enum Failure: Error, CustomStringConvertible {
        case unreachable(String)
        case answered(status: UInt, what: String)
        case invalid(String)

        public var description: String {
            switch self {
            case .unreachable(let what): "the identity provider could not be reached (\(what))"
            case .answered(let status, let what): "the identity provider answered \(status) to \(what)"
            case .invalid(let what): "the identity provider sent \(what)"
            }
        }
    }

    /// The issuer as configured (no trailing slash); `iss` of its tokens must be exactly the
    /// issuer its discovery document names, which must be this one.
    public nonisolated let issuer: String
    private let client: HTTPClient
    private var metadata: Metadata?

    public init(issuer: String, client: HTTPClient = .shared) {
        self.issuer = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.client = client
    }

    public func discovery() async throws -> Metadata {
        if let metadata { return metadata }
        let data = try await get(issuer + "/.well-known/openid-configuration", what: "discovery")
        let found: Metadata
        do {
            found = try JSONDecoder().decode(Metadata.self, from: data)
        } catch {
            throw Failure.invalid("a discovery document that could not be read")
        }
        let named = found.issuer.hasSuffix("/") ? String(found.issuer.dropLast()) : found.issuer
        guard named == issuer else {
            throw Failure.invalid("a discovery document for another issuer (\(found.issuer))")
        }
        metadata = found
        return found
    }

    /// The provider's signing keys (JWKS).
    public func keys() async throws -> JWKS {
        let data = try await get(try await discovery().jwks_uri, what: "the key set")
        do {
            return try JSONDecoder().decode(JWKS.self, from: data)
        } catch {
            throw Failure.invalid("a key set that could not be read")
        }
    }

    /// Where to send the browser to sign in: the authorization code flow with PKCE (S256).
    public func authorizationURL(
        clientID: String, redirectURI: String, state: String, nonce: String, codeChallenge: String,
        scope: String = "openid profile email"
    ) async throws -> String {
        var components = URLComponents(string: try await discovery().authorization_endpoint)
        guard components != nil else { throw Failure.invalid("an authorization endpoint that is not a URL") }
        components!.queryItems =
            (components!.queryItems ?? []) + [
                URLQueryItem(name: "response_type", value: "code"), URLQueryItem(name: "client_id", value: clientID),
                URLQueryItem(name: "redirect_uri", value: redirectURI), URLQueryItem(name: "scope", value: scope),
                URLQueryItem(name: "state", value: state), URLQueryItem(name: "nonce", value: nonce),
                URLQueryItem(name: "code_challenge", value: codeChallenge),
                URLQueryItem(name: "code_challenge_method", value: "S256"),
            ]
        guard let url = components!.string else { throw Failure.invalid("an authorization endpoint that is not a URL") }
        return url
    }

    /// Trades an authorization code (and the PKCE verifier that goes with it) for tokens. A
    /// client with a secret authenticates with HTTP Basic (`client_secret_basic`); a public
    /// client sends only its id.
    public func exchange(
        code: String, codeVerifier: String, redirectURI: String, clientID: String, clientSecret: String?
    ) async throws -> Tokens {
        var form = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
            ("code_verifier", codeVerifier),
        ]
        var request = HTTPClientRequest(url: try await discovery().token_endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        if let clientSecret {
            let pair = Self.formEncode(clientID) + ":" + Self.formEncode(clientSecret)
            request.headers.add(name: "Authorization", value: "Basic " + Data(pair.utf8).base64EncodedString())
        } else {
            form.append(("client_id", clientID))
        }
        request.body = .bytes(ByteBuffer(string: form.map { "\($0)=\(Self.formEncode($1))" }.joined(separator: "&")))
        let (status, data) = try await send(request, what: "the token request")
        guard status == 200 else { throw Failure.answered(status: status, what: "the token request") }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let idToken = json["id_token"] as? String
        else { throw Failure.invalid("a token answer without an ID token") }
        return Tokens(idToken: idToken, accessToken: json["access_token"] as? String)
    }

    /// The claims (JSON) the userinfo endpoint gives for an opaque access token; the token is
    /// refused if the provider does not accept it.
    public func userinfo(_ accessToken: String) async throws(TokenRejection) -> Data {
        guard let endpoint = try? await discovery().userinfo_endpoint else { throw .refusedByProvider }
        var request = HTTPClientRequest(url: endpoint)
        request.headers.add(name: "Authorization", value: "Bearer " + accessToken)
        request.headers.add(name: "Accept", value: "application/json")
        guard let (status, data) = try? await send(request, what: "userinfo"), status == 200 else {
            throw .refusedByProvider
        }
        return data
    }

    private func get(_ url: String, what: String) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let (status, data) = try await send(request, what: what)
        guard status == 200 else { throw Failure.answered(status: status, what: what) }
        return data
    }

    private func send(_ request: HTTPClientRequest, what: String) async throws -> (UInt, Data) {
        do {
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (response.status.code, Data(buffer: body))
        } catch let failure as Failure {
            throw failure
        } catch {
            metadata = nil  // read the discovery document again next time
            throw Failure.unreachable(what)
        }
    }

    /// `application/x-www-form-urlencoded` (also what RFC 6749 2.3.1 asks for the Basic pair).
    static func formEncode(_ value: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

/// Proof Key for Code Exchange (RFC 7636): a random verifier kept by the browser's sign-in
/// cookie, and its S256 challenge sent to the provider.
public enum PKCE {
    /// 32 random bytes, base64url: 43 characters.
    public static func randomToken() -> String { Base64URL.random(bytes: 32) }

    public static func challenge(of verifier: String) -> String {
        Base64URL.encode(Data(SHA256.hash(data: Data(verifier.utf8))))
    }
}

extension TokenVerifier.External {
    /// Trust in `provider`: its signed access tokens for `settings.audience`, and, when
    /// `askUserinfo`, opaque access tokens the provider's userinfo endpoint accepts (known for
    /// 30 seconds, then asked about again, so a revoked token stops working within a minute).
    public static func provider(
        _ provider: OpenIDProvider, settings: TokenVerifier.Settings, askUserinfo: Bool
    ) -> Self {
        let verifier = TokenVerifier(settings: settings) { try await provider.keys() }
        guard askUserinfo else { return Self(verifier: verifier) }
        return Self(verifier: verifier) { token throws(TokenRejection) in
            guard let claims = try? JSONSerialization.jsonObject(with: try await provider.userinfo(token)) as? [String: Any]
            else { throw .refusedByProvider }
            guard let role = TokenVerifier.role(in: claims, at: settings.roleClaim) else { throw .noRole }
            let username = try TokenVerifier.username(
                in: claims, at: settings.usernameClaim, subject: claims["sub"] as? String)
            return Principal(
                username: username, role: role, expiresAt: Date().addingTimeInterval(30),
                departments: TokenVerifier.departments(in: claims, at: settings.departmentsClaim))
        }
    }
}

/// Signing in on the screens through the provider: the code flow with PKCE, and the ID token
/// checked for this client and the sign-in's nonce.
public struct ProviderSignIn: Sendable {
    public let provider: OpenIDProvider
    public let idTokens: TokenVerifier
    public let clientID: String
    public let clientSecret: String?
    /// The callback registered at the provider; nil: derived from the request.
    public let redirectURL: String?

    public init(
        provider: OpenIDProvider, clientID: String, clientSecret: String?, redirectURL: String?, roleClaim: [String],
        usernameClaim: [String]?
    ) {
        self.provider = provider
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURL = redirectURL
        idTokens = TokenVerifier(
            settings: .init(
                issuer: provider.issuer, audience: clientID, roleClaim: roleClaim, usernameClaim: usernameClaim,
                audienceMayBeShared: true, requireLowS: false)
        ) { try await provider.keys() }
    }
}
