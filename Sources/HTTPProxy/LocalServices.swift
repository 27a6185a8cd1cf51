import NIOCore
import ServiceKit
import Synchronization
import Vapor

/// The services that run in this process, by the address the gateway calls them at. A call to
/// one of them is handed to its application's responder instead of being sent over a socket:
/// the same middlewares, the same handler, the same answer (its sign-in, role table, audit
/// entry, metrics; a span of its own, or the gateway's when it forwards), without encoding the
/// request, parsing it again, and doing the same for the answer. In one process (the embedded
/// default) that was a second HTTP exchange on every call the gateway and the screens made. A
/// service in another process, or one stopped, is called over HTTP as before.
public final class LocalServices: Sendable {
    private let applications = Mutex<[String: Application]>([:])

    public init() {}

    /// `application` answers calls to `url` (its host and port) from now on.
    public func add(_ application: Application, at url: URL) {
        guard let key = Self.key(host: url.host, port: url.port) else { return }
        applications.withLock { $0[key] = application }
    }

    /// Calls to `url` go over HTTP again (the service is stopping).
    public func remove(at url: URL) {
        guard let key = Self.key(host: url.host, port: url.port) else { return }
        applications.withLock { _ = $0.removeValue(forKey: key) }
    }

    func application(for uri: URI) -> Application? {
        guard let key = Self.key(host: uri.host, port: uri.port) else { return nil }
        return applications.withLock { $0[key] }
    }

    private static func key(host: String?, port: Int?) -> String? {
        guard let host, let port else { return nil }
        return "\(host):\(port)"
    }

    /// A client for `request`'s calls: in process where it can, else `request.client`. With
    /// `forwarding`, the call is the request itself passed on (the gateway's proxy, not a screen
    /// that calls a service to make a page): a service in process continues the request's span.
    public func client(for request: Request, forwarding: Bool = false) -> any Client {
        InProcessClient(
            local: self, fallback: request.client, eventLoop: request.eventLoop,
            forwardedSpan: forwarding ? request.serverSpan : nil)
    }
}

extension Application {
    private struct LocalServicesKey: StorageKey {
        typealias Value = LocalServices
    }

    /// The services this application can call in process (set on the gateway).
    public var localServices: LocalServices? {
        get { storage[LocalServicesKey.self] }
        set { storage[LocalServicesKey.self] = newValue }
    }
}

extension Request {
    /// The client the gateway and the screens call the services with.
    public var serviceClient: any Client {
        application.localServices?.client(for: self) ?? client
    }

    /// The client the gateway passes this request on with (its span continues in a service of
    /// the same process).
    public var forwardingClient: any Client {
        application.localServices?.client(for: self, forwarding: true) ?? client
    }
}

/// The call as the service's HTTP server would have made it: the method, path and query, the
/// headers, the body, and a loopback peer (where the gateway calls from, in one process; a
/// service believes the gateway's `X-Forwarded-For` from there). Unlike the HTTP client it has
/// no read timeout of its own: the service's handler is the one waited for.
struct InProcessClient: Client {
    let local: LocalServices
    let fallback: any Client
    let eventLoop: any EventLoop
    let forwardedSpan: ServerSpan?

    private static let peer = try? SocketAddress(ipAddress: "127.0.0.1", port: 0)

    func delegating(to eventLoop: any EventLoop) -> any Client {
        InProcessClient(
            local: local, fallback: fallback.delegating(to: eventLoop), eventLoop: eventLoop,
            forwardedSpan: forwardedSpan)
    }

    func send(_ request: ClientRequest) -> EventLoopFuture<ClientResponse> {
        // A body over the service's limit goes over HTTP too, where the service refuses it (413).
        guard let application = local.application(for: request.url),
            (request.body?.readableBytes ?? 0) <= application.routes.defaultMaxBodySize.value
        else { return fallback.send(request) }
        let target = request.url.query.map { request.url.path + "?" + $0 } ?? request.url.path
        let call = Request(
            application: application, method: request.method, url: URI(string: target),
            headers: request.headers, collectedBody: request.body, remoteAddress: Self.peer,
            logger: application.logger, on: eventLoop)
        call.forwardedInProcess = forwardedSpan
        let eventLoop = eventLoop
        return application.responder.current.respond(to: call).flatMap { response in
            response.body.collect(on: eventLoop).map { body in
                ClientResponse(status: response.status, headers: response.headers, body: body)
            }
        }
    }
}
