import Instrumentation
import Messaging
import Synchronization
import Tracing
import Vapor

/// The tracing system's context (swift-service-context's `ServiceContext`; this module's own
/// `ServiceContext` is what a service is built with).
public typealias TracingContext = Instrumentation.ServiceContext

/// Whether a tracer is installed in this process (`hospital serve` with an OTLP endpoint).
/// Without one, no span middleware is installed at all: tracing off costs nothing per request.
public enum Traces {
    private static let on = Atomic<Bool>(false)

    public static var isOn: Bool { on.load(ordering: .relaxed) }

    /// Called once, after `InstrumentationSystem.bootstrap` installed a real tracer.
    public static func turnOn() { on.store(true, ordering: .relaxed) }

    /// Sets `traceparent` on a call made on behalf of the current span (a client span, or the
    /// request's own), replacing whatever the caller sent; without tracing, leaves `headers` as
    /// they are (the caller's trace passes through).
    public static func propagate(_ context: TracingContext?, into headers: inout HTTPHeaders) {
        guard let traceparent = TraceContext.traceparent(of: context) else { return }
        headers.replaceOrAdd(name: "traceparent", value: traceparent)
    }
}

/// A server span per request, continuing the caller's `traceparent` (OpenTelemetry HTTP
/// conventions: named `METHOD route`, the route a template). Not Vapor's `TracingMiddleware`:
/// that one records the query string, where a name search would carry a patient's name; and it
/// is async, a task hop per request. This one runs on the event loop; with the application's
/// `traceAutoPropagation` on, Vapor makes the span current for every later middleware and the
/// route handler.
///
/// Requests that only ask whether all is well make no span: the probes (`/health/…`), the
/// metrics scrape, and what the other processes read from the gateway every few seconds (the
/// clinic layout, the revoked sessions, the key set). They arrive on an idle system and say
/// nothing about the work.
public struct ServerSpans: Middleware {
    let service: String
    let metricsPath: String?
    /// What the other processes poll at the gateway.
    static let polled: Set<String> = ["/clinic/layout", "/auth/revocations", "/.well-known/jwks.json"]

    /// - Parameter metricsPath: the scrape's path, when metrics are served.
    public init(service: String, metricsPath: String? = nil) {
        self.service = service
        self.metricsPath = metricsPath
    }

    /// Whether a request to `path` makes a span.
    public func traces(_ path: String) -> Bool {
        !PlatformPaths.contains(path, metricsPath: metricsPath) && !Self.polled.contains(path)
    }

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        guard traces(request.url.path) else { return next.respond(to: request) }
        let route = MetricsMiddleware.route(of: request)
        if let forwarding = request.forwardedInProcess {
            // The gateway's forward of this very request, in this process: its span is this
            // request's span (one span, not a second one for a hop that did not happen), named
            // for the service's route and the service's from here on.
            forwarding.span.operationName = "\(request.method.rawValue) \(route)"
            forwarding.span.updateAttributes { attributes in
                attributes["http.route"] = route
                attributes["hospital.service"] = service
                attributes["hospital.forwarded_by"] = forwarding.service
            }
            request.serviceContext = forwarding.span.context
            return next.respond(to: request)
        }
        var parent = TracingContext.topLevel
        if let traceparent = request.headers.first(name: "traceparent") {
            parent = TraceContext.context(of: traceparent)
        }
        let span = InstrumentationSystem.tracer.startSpan(
            "\(request.method.rawValue) \(route)", context: parent, ofKind: .server)
        span.updateAttributes { attributes in  // one lock for all of them
            attributes["http.request.method"] = request.method.rawValue
            attributes["http.route"] = route
            attributes["url.scheme"] = request.url.scheme ?? "http"
            attributes["network.protocol.version"] =
                request.version == .http1_1 ? "1.1" : "\(request.version.major).\(request.version.minor)"
            attributes["hospital.service"] = service
        }
        request.serviceContext = span.context
        request.serverSpan = ServerSpan(span: span, service: service)
        return next.respond(to: request).always { result in
            switch result {
            case .success(let response):
                span.attributes["http.response.status_code"] = Int(response.status.code)
                if response.status.code >= 500 { span.setStatus(.init(code: .error)) }
            case .failure(let error):
                span.recordError(error)
                span.setStatus(.init(code: .error))
            }
            span.end()
        }
    }
}

/// A request's server span and the service that made it.
public struct ServerSpan: Sendable {
    public let span: any Span
    public let service: String
}

extension Request {
    private struct ServerSpanKey: StorageKey { typealias Value = ServerSpan }
    private struct ForwardedKey: StorageKey { typealias Value = ServerSpan }

    /// This request's server span (nil without tracing, or on a path that makes none).
    public var serverSpan: ServerSpan? {
        get { storage[ServerSpanKey.self] }
        set { storage[ServerSpanKey.self] = newValue }
    }

    /// Set on a request the gateway forwards to a service of its own process: the gateway's
    /// span, which the service continues instead of starting its own.
    public var forwardedInProcess: ServerSpan? {
        get { storage[ForwardedKey.self] }
        set { storage[ForwardedKey.self] = newValue }
    }
}
