import Identity
import Vapor

/// Who is calling, once `AccessControl` verified their token.
public struct SignedInUser: Sendable {
    public let principal: Principal
    /// The token as presented, for calls made on the user's behalf (the screens).
    public let token: String

    public init(principal: Principal, token: String) {
        self.principal = principal
        self.token = token
    }
}

extension Request {
    private struct SignedInKey: StorageKey {
        typealias Value = SignedInUser
    }

    /// The verified caller of this request; nil on public operations.
    public var signedIn: SignedInUser? {
        get { storage[SignedInKey.self] }
        set { storage[SignedInKey.self] = newValue }
    }

    /// The bearer token of the `Authorization` header, if there is one.
    public var bearerToken: String? {
        guard let value = headers.first(name: .authorization) else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }
}

/// Every request is checked here, on the gateway and on each service's own port alike: a
/// verified token (the service checks the signature itself, against the issuer's public keys)
/// and a role the table (`AccessPolicy`) allows. A direct call to a service port is no back door.
public struct AccessControl: AsyncMiddleware {
    let verifier: TokenVerifier

    public init(verifier: TokenVerifier) { self.verifier = verifier }

    public func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let method = request.method.rawValue
        let decision = AccessPolicy.decision(method: method, requestPath: request.url.path)
        if decision == .open { return try await next.respond(to: request) }
        guard let token = request.bearerToken else { throw AppError.unauthenticated }
        let principal: Principal
        do {
            principal = try await verifier.verify(token)
        } catch {
            request.logger.notice("token refused", metadata: ["reason": "\(error)", "method": "\(method)"])
            throw AppError.unauthenticated
        }
        guard
            AccessPolicy.allows(principal.role, method: method, path: AccessPolicy.template(of: request.url.path) ?? "")
        else {
            request.logger.notice(
                "operation refused to the role",
                metadata: [
                    "user": "\(principal.username)", "role": "\(principal.role.rawValue)", "method": "\(method)",
                ])
            throw AppError.forbidden
        }
        request.signedIn = SignedInUser(principal: principal, token: token)
        return try await next.respond(to: request)
    }
}
