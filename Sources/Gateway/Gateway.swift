import Audit
import Foundation
import HTTPProxy
import Messaging
import ServiceKit
import Vapor

/// The single entry (:8088): routes each path prefix to the service that owns it, and nothing
/// else. A service that is down answers 503 here; the others keep working.
public struct Gateway: Sendable {
    public struct Route: Sendable {
        /// The first path component, e.g. "receptions".
        public var prefix: String
        /// The owning service, for messages.
        public var service: String
        /// Where it listens, e.g. http://127.0.0.1:8082.
        public var upstream: URL
        /// Its routes under this prefix whose bodies stream through, never collected here.
        public var streamed: [StreamedRoute]

        public init(prefix: String, service: String, upstream: URL, streamed: [StreamedRoute] = []) {
            self.prefix = prefix
            self.service = service
            self.upstream = upstream
            self.streamed = streamed
        }
    }

    public let routes: [Route]

    public init(routes: [Route]) { self.routes = routes }

    /// Every routed request passes `access` first: no unauthenticated request reaches a service
    /// (which checks the token again itself).
    public func register(on app: Application, access: AccessControl) {
        let methods: [HTTPMethod] = [.GET, .POST, .PUT, .PATCH, .DELETE]
        let guarded = app.grouped(access)
        // Result files stream through in both directions, never collected here.
        for route in routes {
            for streamed in route.streamed {
                guarded.on(streamed.method, streamed.path.pathComponents, body: .stream) { req in
                    try await StreamingProxy.forward(req, to: route.upstream, service: route.service)
                }
            }
        }
        for route in routes {
            for method in methods {
                guarded.on(method, [.constant(route.prefix)], body: .collect(maxSize: "64kb")) { req in
                    try await forward(req, to: route)
                }
                guarded.on(method, [.constant(route.prefix), .catchall], body: .collect(maxSize: "64kb")) { req in
                    try await forward(req, to: route)
                }
            }
        }
    }

    /// `GET /admin/audit` (admin): every service's trail, asked with the admin's own token and
    /// merged by time, as JSON or CSV.
    public func registerAudit(on app: Application, access: AccessControl) {
        app.grouped(access).get("admin", "audit") { req async throws -> Response in
            var entries: [AuditEntry] = []
            // Each service once, however many path prefixes it owns.
            var asked: Set<String> = []
            for route in routes where asked.insert(route.service).inserted {
                var uri = URI(string: route.upstream.absoluteString)
                uri.path = "/admin/audit"
                uri.query = req.url.query.map { $0.replacingOccurrences(of: "format=csv", with: "format=json") }
                var headers = HTTPHeaders()
                if let authorization = req.headers.first(name: .authorization) {
                    headers.add(name: .authorization, value: authorization)
                }
                Traces.propagate(req.serviceContext, into: &headers)
                let answer: ClientResponse
                do {
                    answer = try await req.serviceClient.get(uri, headers: headers)
                } catch {
                    throw AppError.serviceUnavailable(route.service)
                }
                guard answer.status == .ok else {
                    if answer.status == .badRequest, let body = answer.body {
                        let response = Response(status: .badRequest, body: .init(buffer: body))
                        response.headers.contentType = answer.headers.contentType
                        return response
                    }
                    throw AppError.serviceUnavailable(route.service)
                }
                entries += try answer.content.decode(AuditRoutes.Page.self, using: APIJSON.decoder()).items
            }
            entries.sort { ($0.at, $0.service, $0.seq) < ($1.at, $1.service, $1.seq) }
            return try AuditRoutes.answer(entries, csv: req.query[String.self, at: "format"] == "csv")
        }
    }

    private func forward(_ req: Request, to route: Route) async throws -> Response {
        var uri = URI(string: route.upstream.absoluteString)
        uri.path = req.url.path
        uri.query = req.url.query
        var headers = HTTPHeaders()
        for (name, value) in req.headers where !StreamingProxy.hopByHop.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        StreamingProxy.forwardFor(req, in: &headers)
        let upstream: ClientResponse
        do {
            // The service's server span is a child of the gateway's (no client span of its own
            // between them: a third of the spans of every proxied request, for nothing the two
            // server spans do not already say); in one process, the gateway's span itself.
            Traces.propagate(req.serviceContext, into: &headers)
            upstream = try await Resend.sending(req.method, headers, logger: req.logger, service: route.service) {
                try await req.forwardingClient.send(req.method, headers: headers, to: uri) { outgoing in
                    if let body = req.body.data { outgoing.body = body }
                }
            }
        } catch {
            req.logger.warning(
                "upstream unavailable",
                metadata: ["service": "\(route.service)", "error": "\(loggable(error))"])
            throw AppError.serviceUnavailable(route.service)
        }
        var responseHeaders = HTTPHeaders()
        for (name, value) in upstream.headers where !StreamingProxy.hopByHop.contains(name.lowercased()) {
            responseHeaders.add(name: name, value: value)
        }
        let response = Response(status: upstream.status, headers: responseHeaders)
        if let body = upstream.body { response.body = .init(buffer: body) }
        return response
    }
}
