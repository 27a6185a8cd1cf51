import AsyncHTTPClient

/// The HTTP client of this process's own loops (the clinic layout, the revoked sessions and the
/// key set, read from the gateway): it makes no spans. AsyncHTTPClient's shared client starts a
/// root span for every call made outside a trace, so each poll was a trace an idle system sent
/// every few seconds, saying nothing had happened.
enum BackgroundClient {
    static let shared: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
}
