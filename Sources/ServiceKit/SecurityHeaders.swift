import Foundation
import Vapor

/// Headers every answer carries: no sniffing of types, no framing, no referrer, and for pages a
/// Content Security Policy without inline script; HSTS when served over TLS.
public struct SecurityHeaders: Middleware {
    /// Only the site's own scripts, styles and forms; nothing may frame it.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

    public init() {}

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        next.respond(to: request).map { response in Self.add(to: response, for: request) }
    }

    static func add(to response: Response, for request: Request) -> Response {
        let headers = response.headers
        var set = HTTPHeaders()
        set.replaceOrAdd(name: "X-Content-Type-Options", value: "nosniff")
        // `no-referrer` would make browsers send `Origin: null` on the site's own form posts.
        set.replaceOrAdd(name: "Referrer-Policy", value: "same-origin")
        set.replaceOrAdd(name: "X-Frame-Options", value: "DENY")
        if headers.contentType?.subType == "html" {
            set.replaceOrAdd(name: "Content-Security-Policy", value: Self.contentSecurityPolicy)
        }
        if request.url.scheme == "https" || request.headers.first(name: "X-Forwarded-Proto")?.lowercased() == "https" {
            set.replaceOrAdd(name: "Strict-Transport-Security", value: "max-age=31536000; includeSubDomains")
        }
        for (name, value) in set where !headers.contains(name: name) { response.headers.add(name: name, value: value) }
        return response
    }
}

/// Serves only the configured host names (a page on another name that resolves here, DNS
/// rebinding, gets nothing): 421 for any other `Host`. Probes are exempt (a kubelet calls them
/// by the pod's address).
/// What the platform asks on its own, by a pod's address rather than a host name: Kubernetes'
/// probes (`/health/…`) and Prometheus' scrape of the metrics path. The host check lets them
/// through; they make no span.
public enum PlatformPaths {
    public static func contains(_ path: String, metricsPath: String?) -> Bool {
        path.hasPrefix("/health/") || path == metricsPath
    }
}

public struct AllowedHosts: Middleware {
    let names: Set<String>
    /// Exempt like the probes: the metrics path (Prometheus scrapes a pod by its address).
    let exempt: String?

    /// `names` without ports; `localhost`, `127.0.0.1` and `::1` are always among them.
    public init(_ names: [String], exempt: String? = nil) {
        self.names = Set(names.map { $0.lowercased() } + ["localhost", "127.0.0.1", "::1"])
        self.exempt = exempt
    }

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        if PlatformPaths.contains(request.url.path, metricsPath: exempt) { return next.respond(to: request) }
        guard let host = request.headers.first(name: .host).map(Self.name(of:)), names.contains(host) else {
            request.logger.notice("request for a host name this server does not serve")
            return request.eventLoop.makeFailedFuture(Abort(.misdirectedRequest))
        }
        return next.respond(to: request)
    }

    /// `example.org:8088` → `example.org`; `[::1]:8088` → `::1`.
    static func name(of host: String) -> String {
        let lower = host.lowercased()
        if lower.hasPrefix("["), let end = lower.firstIndex(of: "]") {
            return String(lower[lower.index(after: lower.startIndex)..<end])
        }
        return String(lower.split(separator: ":", maxSplits: 1).first ?? "")
    }
}

/// Refuses a request whose header fields are larger than any screen or client of this system
/// sends (a cookie bomb, a padded token): 431, before anything reads them. The HTTP parser
/// itself closes the connection beyond 80 KB (Vapor gives the application no say there); in a
/// cluster the ingress proxy answers 431 before that.
public struct HeaderLimit: Middleware {
    /// Names and values of all fields together, as nginx's default buffers (4 × 8 KB).
    public static let totalBytes = 32 * 1024
    /// One field's name and value: room for an identity provider's large token.
    public static let fieldBytes = 16 * 1024

    public init() {}

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        var total = 0
        for (name, value) in request.headers {
            let field = name.utf8.count + value.utf8.count
            total += field
            if field > Self.fieldBytes || total > Self.totalBytes {
                request.logger.notice("request refused: header fields too large")
                return request.eventLoop.makeFailedFuture(
                    Abort(.requestHeaderFieldsTooLarge, reason: "Request header fields are too large."))
            }
        }
        return next.respond(to: request)
    }
}
