import AsyncHTTPClient
import Foundation
import HTTPProxy
import NIOCore
import ServiceKit
import Synchronization
import Vapor

/// Regions of a page that change by push: the page's server holds the service's live view
/// (server-sent events of JSON) and sends the browser the region's HTML as it would have rendered
/// it, each time it changes. The browser's EventSource reconnects on its own, with the last id.
extension WebScreens {
    /// The desk's board rows, live: GET /desk/board/events with the board's search.
    @Sendable func deskBoardEvents(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let charts = ChartNumberCache()
        return try await liveRegion(req, path: boardPath(req, screen, live: true)) { json in
            let board = try APIJSON.decoder().decode(ListOf<VisitDTO>.self, from: json)
            let known = await charts.numbers(for: board.items.map(\.patientId)) { missing in
                await self.chartNumbers(req, of: missing)
            }
            let rows = self.boardRowContexts(board, charts: known, screen)
            return self.library.render(["visits": rows, "t": screen.language.strings], withTemplate: "boardRows") ?? ""
        }
    }

    /// Streams `path`'s live view to the browser as `rows` events of HTML made by `render`; the
    /// HTML is made again every 30 s from the last view (the minutes waited move on without any
    /// change), and sent when it differs. The service's refusal (429, 403) is passed on as is.
    func liveRegion(
        _ req: Request, path: String, render: @escaping @Sendable (Data) async throws -> String
    ) async throws -> Response {
        let upstream = try Self.upstream(of: path, in: upstreams)
        var outgoing = HTTPClientRequest(url: upstream.url.absoluteString + path)
        outgoing.headers.add(name: "Accept", value: "text/event-stream")
        if let token = req.signedIn?.token { outgoing.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let last = req.headers.first(name: "Last-Event-ID") { outgoing.headers.add(name: "Last-Event-ID", value: last) }
        StreamingProxy.forwardFor(req, in: &outgoing.headers)
        let answer: HTTPClientResponse
        do {
            answer = try await StreamingProxy.client.execute(outgoing, timeout: .seconds(600))
        } catch {
            throw API.Failure.unavailable(upstream.service)
        }
        guard answer.status == .ok else {
            let body = try await answer.body.collect(upTo: 64 * 1024)
            var headers = HTTPHeaders()
            for (name, value) in answer.headers where ["content-type", "retry-after"].contains(name.lowercased()) {
                headers.add(name: name, value: value)
            }
            return Response(status: .init(statusCode: Int(answer.status.code)), headers: headers, body: .init(buffer: body))
        }
        let response = Response(status: .ok)
        response.headers.contentType = HTTPMediaType(type: "text", subType: "event-stream", parameters: ["charset": "utf-8"])
        response.headers.replaceOrAdd(name: .cacheControl, value: "no-store")
        response.headers.replaceOrAdd(name: "X-Accel-Buffering", value: "no")
        let body = answer.body
        let logger = req.logger
        response.body = .init(asyncStream: { writer in
            let items = AsyncStream<ServerSentEvents.Item> { continuation in
                let reader = Task {
                    var parser = ServerSentEvents()
                    do {
                        for try await chunk in body {
                            for item in parser.feed(chunk) { continuation.yield(item) }
                        }
                    } catch {
                        logger.debug("live view's upstream ended", metadata: ["reason": "\(error)"])
                    }
                    continuation.finish()
                }
                let ticker = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(30))
                        continuation.yield(.tick)
                    }
                }
                continuation.onTermination = { _ in
                    reader.cancel()
                    ticker.cancel()
                }
            }
            var last: (id: String, data: Data)?
            var shown = ""
            do {
                try await writer.write(.buffer(ByteBuffer(string: "retry: 1000\n\n")))
                for await item in items {
                    switch item {
                    case .event(let id, let data):
                        last = (id, data)
                    case .comment:
                        try await writer.write(.buffer(ByteBuffer(string: ": keep-alive\n\n")))
                        continue
                    case .tick:
                        guard last != nil else { continue }
                    }
                    guard let (id, data) = last else { continue }
                    let html = try await render(data)
                    if html == shown { continue }
                    shown = html
                    let lines = html.split(separator: "\n", omittingEmptySubsequences: false)
                        .map { "data: \($0)" }.joined(separator: "\n")
                    try await writer.write(.buffer(ByteBuffer(string: "id: \(id)\nevent: rows\n\(lines)\n\n")))
                }
                try await writer.write(.end)
            } catch {
                logger.debug("live view ended", metadata: ["reason": "\(error)"])
                try? await writer.write(.end)
            }
        })
        return response
    }
}

/// Chart numbers a live view has looked up: each patient asked for once per view.
final class ChartNumberCache: Sendable {
    private let known = Mutex<[UUID: String]>([:])

    func numbers(for ids: [UUID?], lookUp: ([UUID?]) async -> [UUID: String]) async -> [UUID: String] {
        let wanted = Set(ids.compactMap { $0 })
        let missing = known.withLock { known in wanted.filter { known[$0] == nil } }
        if !missing.isEmpty {
            let found = await lookUp(Array(missing))
            known.withLock { $0.merge(found) { first, _ in first } }
        }
        return known.withLock { $0 }
    }
}

/// A reader of a server-sent event stream (the parts the services send: id, data, comments).
struct ServerSentEvents {
    enum Item: Sendable {
        case event(id: String, data: Data)
        case comment
        case tick
    }

    private var pending = Data()
    private var id = ""
    private var data: [Data] = []

    mutating func feed(_ chunk: ByteBuffer) -> [Item] {
        pending.append(contentsOf: chunk.readableBytesView)
        var items: [Item] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            var line = pending[pending.startIndex..<newline]
            pending.removeSubrange(pending.startIndex...newline)
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.isEmpty {
                if !data.isEmpty {
                    items.append(.event(id: id, data: Data(data.joined(separator: [UInt8(ascii: "\n")]))))
                }
                data = []
                continue
            }
            let text = String(decoding: line, as: UTF8.self)
            if text.hasPrefix(":") {
                items.append(.comment)
            } else if text.hasPrefix("data:") {
                data.append(Data(text.dropFirst(5).drop(while: { $0 == " " }).utf8))
            } else if text.hasPrefix("id:") {
                id = String(text.dropFirst(3).drop(while: { $0 == " " }))
            }
        }
        return items
    }
}
