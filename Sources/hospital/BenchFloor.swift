import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SQLiteNIO

/// `hospital bench-floor-server` (hidden): a prototype of the lightest HTTP path a service could
/// have, for `hospital bench --reads` to measure beside the real one. A plain SwiftNIO HTTP/1.1
/// pipeline with one handler and no framework: `GET /health/live`, and `GET /receptions/{id}`
/// answered from reception's own SQLite file (read only, WAL: the running service keeps writing)
/// through one statement, the row's columns as JSON. No sign-in, no audit entry, no metrics, no
/// rate limit, no security headers: it shows what HTTP and the read alone cost on this machine,
/// the floor under any framework. Since nothing guards it, it answers each column's size, never
/// its value: it serves no patient data, whatever file it is given.
///
/// And the write floor: `POST /receptions` takes a registration's JSON body and commits a row
/// and its outbox event (a trigger writes it: one statement, one transaction) to a scratch file
/// of its own, WAL and `synchronous = FULL` as the services' files are, then answers 201 with
/// the new id. It keeps the name's length, not the name.
struct BenchFloorServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-floor-server", abstract: "A framework-free HTTP prototype for the read benchmark.",
        shouldDisplay: false)

    @Option(help: "Loopback port to listen on.") var port: Int
    @Option(help: "reception.sqlite of a served data directory.") var database: String
    @Option(help: "A file of its own for the writes.") var scratch: String

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let connection = try await SQLiteConnection.open(storage: .file(path: database))
        _ = try await connection.query("PRAGMA query_only = ON", [])
        let writer = try await SQLiteConnection.open(storage: .file(path: scratch))
        for statement in [
            "PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
            "CREATE TABLE IF NOT EXISTS visits (id TEXT PRIMARY KEY, name_bytes INTEGER NOT NULL, department TEXT, created_at REAL NOT NULL)",
            "CREATE TABLE IF NOT EXISTS outbox (sequence INTEGER PRIMARY KEY, payload TEXT NOT NULL, published_at REAL)",
            """
            CREATE TRIGGER IF NOT EXISTS visit_event AFTER INSERT ON visits BEGIN
                INSERT INTO outbox (payload) VALUES (json_object('type', 'TreatmentReceived', 'receptionId', NEW.id, 'department', NEW.department, 'at', NEW.created_at));
            END
            """,
        ] {
            _ = try await writer.query(statement, [])
        }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(FloorHandler(connection: connection, writer: writer))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        print("listening on \(port)")
        try await channel.closeFuture.get()
    }
}

private final class FloorHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let connection: SQLiteConnection
    private let writer: SQLiteConnection
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?

    init(connection: SQLiteConnection, writer: SQLiteConnection) {
        self.connection = connection
        self.writer = writer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = nil
        case .body(var part):
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            guard let head else { return }
            self.head = nil
            answer(head, context: context)
        }
    }

    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let prefix = "/receptions/"
        if head.method == .POST, head.uri == "/receptions" {
            register(head, context: context)
        } else if head.method == .GET, head.uri == "/health/live" {
            respond(.ok, #"{"status":"ok"}"#, keepAlive: head.isKeepAlive, context: context)
        } else if head.method == .GET, head.uri.hasPrefix(prefix),
            let id = UUID(uuidString: String(head.uri.dropFirst(prefix.count)))
        {
            let loop = context.eventLoop
            let bound = NIOLoopBound(context, eventLoop: loop)
            // (Fluent stores a UUID as its Codable form, the uppercase string.)
            connection.query("SELECT * FROM receptions WHERE id = ?1", [.text(id.uuidString)]).hop(to: loop).whenComplete {
                let context = bound.value
                switch $0 {
                case .success(let rows):
                    guard let row = rows.first else {
                        return self.respond(.notFound, #"{"error":"not found"}"#, keepAlive: head.isKeepAlive, context: context)
                    }
                    self.respond(.ok, Self.json(row), keepAlive: head.isKeepAlive, context: context)
                case .failure:
                    self.respond(.internalServerError, #"{"error":"read failed"}"#, keepAlive: head.isKeepAlive, context: context)
                }
            }
        } else {
            respond(.notFound, #"{"error":"not found"}"#, keepAlive: head.isKeepAlive, context: context)
        }
    }

    private func register(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard let body,
            let object = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any],
            let name = object["patientName"] as? String, !name.isEmpty
        else {
            return respond(.badRequest, #"{"error":"patientName is required"}"#, keepAlive: head.isKeepAlive, context: context)
        }
        let id = UUID().uuidString
        let department = object["department"] as? String
        let loop = context.eventLoop
        let bound = NIOLoopBound(context, eventLoop: loop)
        writer.query(
            "INSERT INTO visits (id, name_bytes, department, created_at) VALUES (?1, ?2, ?3, ?4)",
            [.text(id), .integer(name.utf8.count), department.map { .text($0) } ?? .null, .float(Date().timeIntervalSince1970)]
        ).hop(to: loop).whenComplete {
            let context = bound.value
            switch $0 {
            case .success: self.respond(.created, #"{"id":"\#(id)"}"#, keepAlive: head.isKeepAlive, context: context)
            case .failure: self.respond(.internalServerError, #"{"error":"write failed"}"#, keepAlive: head.isKeepAlive, context: context)
            }
        }
    }

    /// The row's columns as one JSON object: each column's size in bytes (null for NULL), never
    /// its value.
    private static func json(_ row: SQLiteRow) -> String {
        var object: [String: Any] = [:]
        for column in row.columns {
            switch column.data {
            case .integer, .float: object[column.name] = 8
            case .text(let value): object[column.name] = value.utf8.count
            case .blob(let value): object[column.name] = value.readableBytes
            case .null: object[column.name] = NSNull()
            }
        }
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    private func respond(_ status: HTTPResponseStatus, _ body: String, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json; charset=utf-8")
        headers.add(name: "content-length", value: "\(body.utf8.count)")
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) } }
    }
}
