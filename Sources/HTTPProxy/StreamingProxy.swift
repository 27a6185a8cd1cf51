import AsyncHTTPClient
import Foundation
import Messaging
import NIOCore
import ServiceKit
import Vapor

/// Forwards a request to a service with its body streamed there and the answer's body streamed
/// back (backpressure both ways: a 50 MB file never sits in memory). The gateway's route for
/// result files, and the screens' uploads and downloads, go through it.
public enum StreamingProxy {
    /// Headers that describe one connection, not the message (RFC 9110, 7.6.1).
    public static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length",
    ]

    /// The client for streamed requests. A live view holds its connection to the service for as
    /// long as it is open, and a file for as long as it takes, so each needs a connection of its
    /// own. AsyncHTTPClient's shared client opens at most 8 connections to one host and queues
    /// the rest until they fail (10 s): a ninth open board waited and then failed, and every
    /// upload and download waited behind the open views meanwhile.
    public static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2))
        // Dropped before the services drop them (their idle timeout is 60 s), as the gateway's.
        configuration.connectionPool = .init(
            idleTimeout: .seconds(20), concurrentHTTP1ConnectionsPerHostSoftLimit: 4096)
        // No spans of its own, as the gateway's client: the caller sets `traceparent`.
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Sets `X-Forwarded-For` on a request to a service to the one client address this hop
    /// vouches for (`Request.clientAddress`), replacing whatever the client sent there (and in
    /// the other headers that name a client).
    public static func forwardFor(_ req: Request, in headers: inout HTTPHeaders) {
        headers.remove(name: .xForwardedFor)
        headers.remove(name: .forwarded)
        headers.remove(name: "X-Real-IP")
        if let client = req.clientAddress { headers.add(name: .xForwardedFor, value: client) }
    }

    /// - Parameters:
    ///   - path: the service's path (default: the request's own, with its query).
    ///   - token: the user's token for a screen's request (it replaces the cookie).
    public static func forward(
        _ req: Request, to upstream: URL, service: String, path: String? = nil, token: String? = nil
    ) async throws -> Response {
        var url = upstream.absoluteString + (path ?? req.url.path)
        if path == nil, let query = req.url.query { url += "?" + query }
        var outgoing = HTTPClientRequest(url: url)
        outgoing.method = .init(rawValue: req.method.rawValue)
        for (name, value) in req.headers where !hopByHop.contains(name.lowercased()) {
            outgoing.headers.add(name: name, value: value)
        }
        if let token {
            outgoing.headers.replaceOrAdd(name: "Authorization", value: "Bearer \(token)")
            outgoing.headers.remove(name: "Cookie")
        }
        forwardFor(req, in: &outgoing.headers)
        Traces.propagate(req.serviceContext, into: &outgoing.headers)
        if req.method == .POST || req.method == .PUT {
            let length = req.headers.first(name: .contentLength).flatMap(Int64.init)
            outgoing.body = .stream(req.body, length: length.map { .known($0) } ?? .unknown)
            // A connection of its own: a service that refuses an upload before reading all of it
            // (too large, not an allowed type) closes the connection, and a pooled connection
            // reused just then would reset the next upload.
            outgoing.headers.replaceOrAdd(name: "Connection", value: "close")
        }
        let answer: HTTPClientResponse
        do {
            answer = try await client.execute(outgoing, timeout: .seconds(600))
        } catch {
            req.logger.warning(
                "upstream unavailable", metadata: ["service": "\(service)", "error": "\(loggable(error))"])
            throw AppError.serviceUnavailable(service)
        }
        var headers = HTTPHeaders()
        for (name, value) in answer.headers where !hopByHop.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        let length = answer.headers.first(name: "content-length").flatMap(Int.init)
        let body = answer.body
        return Response(
            status: .init(statusCode: Int(answer.status.code)), headers: headers,
            body: .init(
                asyncStream: { writer in
                    do {
                        for try await chunk in body { try await writer.write(.buffer(chunk)) }
                        try await writer.write(.end)
                    } catch {
                        try await writer.write(.error(error))
                    }
                }, count: length ?? -1))
    }
}
