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

    private struct TemplateKey: StorageKey {
        typealias Value = String?
    }

    /// The API's route template of this request's path (`/receptions/:id`), worked out once per
    /// request for access control, metrics and spans alike; nil for a path the table does not list.
    public var apiTemplate: String? {
        if let known = storage[TemplateKey.self] { return known }
        let template = AccessPolicy.template(of: url.path)
        storage[TemplateKey.self] = .some(template)
        return template
    }

    /// The bearer token of the `Authorization` header, if there is one.
    public var bearerToken: String? {
        guard let value = headers.first(name: .authorization) else { return nil }
        return Self.bearerToken(in: value)
    }

    /// The token of `Bearer <token>` (the scheme in any case; blanks around the token dropped).
    /// On the UTF-8 bytes: Foundation's trimming went through UTF-16 and cost a by-id read a
    /// twentieth of its CPU.
    public static func bearerToken(in value: String) -> String? {
        let bytes = value.utf8
        var start = bytes.startIndex
        for expected in "bearer".utf8 {
            guard start != bytes.endIndex, bytes[start] | 0x20 == expected else { return nil }
            start = bytes.index(after: start)
        }
        guard start != bytes.endIndex, bytes[start] == UInt8(ascii: " ") else { return nil }
        func blank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        while start != bytes.endIndex, blank(bytes[start]) { start = bytes.index(after: start) }
        var end = bytes.endIndex
        while end != start, blank(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        return start == end ? nil : String(value[start..<end])
    }
}

/// Every request is checked here, on the gateway and on each service's own port alike: a
/// verified token (the service checks the signature itself, against the issuer's public keys)
/// and a role the table (`AccessPolicy`) allows. A direct call to a service port is no back door.
public struct AccessControl: Middleware {
    let verifier: TokenVerifier
    /// Paths open to anyone besides the table's public operations (`/metrics`, wherever the
    /// settings put it).
    let openPaths: Set<String>

    public init(verifier: TokenVerifier, openPaths: Set<String> = []) {
        self.verifier = verifier
        self.openPaths = openPaths
    }

    // Futures, not async: a request with a token already verified passes without leaving its
    // event loop (an async middleware costs a task hop per request).
    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        let method = request.method.rawValue
        if method == "GET", !openPaths.isEmpty, openPaths.contains(request.url.path) { return next.respond(to: request) }
        let template = request.apiTemplate
        let decision = template.map { AccessPolicy.decision(method: method, path: $0) } ?? .unlisted
        if decision == .open { return next.respond(to: request) }
        guard let token = request.bearerToken else {
            return request.eventLoop.makeFailedFuture(AppError.unauthenticated)
        }
        if let principal = verifier.known(token) {
            return admit(principal, token: token, template: template, request, next)
        }
        return request.eventLoop.makeFutureWithTask { () async throws -> Principal in
            do {
                return try await verifier.verify(token)
            } catch {
                request.logger.notice("token refused", metadata: ["reason": "\(error)", "method": "\(method)"])
                throw AppError.unauthenticated
            }
        }.flatMap { principal in
            admit(principal, token: token, template: template, request, next)
        }
    }

    private func admit(
        _ principal: Principal, token: String, template: String?, _ request: Request, _ next: any Responder
    ) -> EventLoopFuture<Response> {
        guard AccessPolicy.allows(principal.role, method: request.method.rawValue, path: template ?? "") else {
            request.logger.notice(
                "operation refused to the role",
                metadata: [
                    "user": "\(principal.username)", "role": "\(principal.role.rawValue)",
                    "method": "\(request.method.rawValue)",
                ])
            return request.eventLoop.makeFailedFuture(AppError.forbidden)
        }
        request.signedIn = SignedInUser(principal: principal, token: token)
        return next.respond(to: request)
    }
}
