import Crypto
import CryptoExtras
import Foundation
import JWTKit
import Testing

@testable import Identity

/// Trust in an external OpenID provider beside this system's own issuer.
@Suite("Provider tokens")
struct ProviderTokenTests {
    struct ProviderClaims: JWTPayload {
        var sub: SubjectClaim
        var iss: IssuerClaim
        var aud: AudienceClaim
        var exp: ExpirationClaim
        var nonce: String?
        var preferred_username: String?
        var realm_access: [String: [String]]?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static let provider = "https://sso.hospital.test/realms/ward"

    /// A provider key (RS256, as Keycloak signs), the key set it publishes, and a signer.
    struct Provider {
        let keys = JWTKeyCollection()
        let jwks: JWKS

        init() async throws {
            let privateKey = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
            await keys.add(rsa: privateKey, digestAlgorithm: .sha256, kid: "provider-1")
            let (modulus, exponent) = try privateKey.publicKey.getKeyPrimitives()
            jwks = JWKS(keys: [
                .rsa(
                    .rs256, identifier: "provider-1", modulus: Base64URL.encode(modulus),
                    exponent: Base64URL.encode(exponent))
            ])
        }

        func sign(
            audience: String = "hospital", username: String? = "dr.kim", roles: [String] = ["doctor"],
            nonce: String? = nil, issuer: String = ProviderTokenTests.provider
        ) async throws -> String {
            try await keys.sign(
                ProviderClaims(
                    sub: "3f1c-uuid", iss: .init(value: issuer), aud: .init(value: [audience]),
                    exp: .init(value: Date().addingTimeInterval(300)), nonce: nonce, preferred_username: username,
                    realm_access: ["roles": roles]),
                kid: "provider-1")
        }
    }

    func verifiers(_ provider: Provider, opaque: Bool = false) async throws -> (TokenVerifier, TokenIssuer) {
        let own = await TokenIssuer(
            key: try SigningKey(pem: ES256PrivateKey().pemRepresentation), issuer: "hospital", audience: "hospital-api",
            lifetime: 900)
        let settings = TokenVerifier.Settings(
            issuer: Self.provider, audience: "hospital", roleClaim: ["realm_access", "roles"],
            usernameClaim: ["preferred_username"])
        let jwks = provider.jwks
        let external = TokenVerifier.External(
            verifier: TokenVerifier(settings: settings) { jwks },
            opaque: opaque ? Self.askProvider : nil)
        let ownKeys = own.key.jwks
        let verifier = TokenVerifier(
            settings: .init(issuer: "hospital", audience: "hospital-api"), external: external
        ) { ownKeys }
        return (verifier, own)
    }

    @Sendable static func askProvider(_ token: String) async throws(TokenRejection) -> Principal {
        guard token == "opaque-token-the-provider-knows" else { throw .refusedByProvider }
        return Principal(username: "kim.opaque", role: .doctor, expiresAt: Date().addingTimeInterval(30))
    }

    func refusal(_ verifier: TokenVerifier, _ token: String) async -> TokenRejection? {
        do {
            _ = try await verifier.verify(token)
            return nil
        } catch {
            return error
        }
    }

    @Test("Both issuers' tokens verify; the provider's name and roles come from the claims the settings name")
    func bothIssuers() async throws {
        let provider = try await Provider()
        let (verifier, own) = try await verifiers(provider)
        let fromProvider = try await verifier.verify(try await provider.sign())
        #expect(fromProvider.username == "dr.kim" && fromProvider.role == .doctor)
        let local = try await verifier.verify(try await own.issue(username: "lee.desk", role: .desk))
        #expect(local.username == "lee.desk" && local.role == .desk)
        // No preferred_username: the subject.
        #expect(try await verifier.verify(try await provider.sign(username: nil)).username == "3f1c-uuid")
    }

    @Test("The provider's tokens for another audience, of no known role, or naming the user oddly are refused")
    func providerRefusals() async throws {
        let provider = try await Provider()
        let (verifier, _) = try await verifiers(provider)
        #expect(await refusal(verifier, try await provider.sign(audience: "billing")) == .wrongAudience)
        #expect(await refusal(verifier, try await provider.sign(roles: ["nurse", "superuser"])) == .noRole)
        #expect(await refusal(verifier, try await provider.sign(username: "kim\u{202E}rotcod")) == .badSubject)
        #expect(await refusal(verifier, try await provider.sign(username: String(repeating: "김", count: 30))) == .badSubject)
        // Claiming the provider's issuer and key id does not help a token signed by another key.
        let impostor = try await Provider()
        #expect(await refusal(verifier, try await impostor.sign()) == .badSignature)
        // Nor does claiming this system's issuer with the provider's key.
        #expect(await refusal(verifier, try await provider.sign(issuer: "hospital")) == .unknownKey)
    }

    @Test("An opaque token is refused unless the provider may be asked, and then only if it accepts it")
    func opaqueTokens() async throws {
        let provider = try await Provider()
        let (strict, _) = try await verifiers(provider)
        #expect(await refusal(strict, "opaque-token-the-provider-knows") == .malformed)
        let (asking, _) = try await verifiers(provider, opaque: true)
        #expect(try await asking.verify("opaque-token-the-provider-knows").username == "kim.opaque")
        #expect(await refusal(asking, "opaque-token-the-provider-does-not-know") == .refusedByProvider)
        // Nothing that could smuggle a header is sent to the provider.
        #expect(await refusal(asking, "opaque-token\r\nX-Evil: 1-padding") == .malformed)
    }

    @Test("An ID token must answer the sign-in's nonce")
    func idTokenNonce() async throws {
        let provider = try await Provider()
        let jwks = provider.jwks
        let idTokens = TokenVerifier(
            settings: .init(
                issuer: Self.provider, audience: "hospital", roleClaim: ["realm_access", "roles"],
                usernameClaim: ["preferred_username"])
        ) { jwks }
        let token = try await provider.sign(nonce: "n-123")
        #expect(try await idTokens.verifyIDToken(token, nonce: "n-123").username == "dr.kim")
        do {
            _ = try await idTokens.verifyIDToken(token, nonce: "n-456")
            Issue.record("a replayed ID token was accepted")
        } catch let error as TokenRejection {
            #expect(error == .wrongNonce)
        }
        do {
            _ = try await idTokens.verifyIDToken(try await provider.sign(), nonce: "n-123")
            Issue.record("an ID token without a nonce was accepted")
        } catch let error as TokenRejection {
            #expect(error == .wrongNonce)
        }
    }

    @Test("PKCE: the S256 challenge is base64url(SHA-256(verifier)) without padding")
    func pkce() {
        #expect(
            PKCE.challenge(of: "dBjftJeZ4CVP-mJ92ZrYlFzF7ZUwXUX5eT1tJ5EkgGo")
                == "COv8TgyGpnQTOKxGumDnZyyZJJ3QRkU5ilQyxUJsSZ0")  // as Python's hashlib + urlsafe_b64encode
        #expect(PKCE.randomToken().count == 43)
    }
}
