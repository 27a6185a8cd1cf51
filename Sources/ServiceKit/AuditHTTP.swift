import Audit
import Foundation
import Identity
import Vapor

/// Who reads or changes what, recorded for every request a service answers (see the `Audit`
/// module for the trail itself).
extension AuditEntry: Content {}

extension Request {
    private struct AuditVisitsKey: StorageKey {
        typealias Value = [UUID]
    }

    private struct AuditPatientsKey: StorageKey {
        typealias Value = [String]
    }

    /// The chart numbers a handler says this request disclosed (a patient read, a search, a
    /// merge): the entry names them, whatever the answer holds.
    public var auditPatients: [String] {
        get { storage[AuditPatientsKey.self] ?? [] }
        set { storage[AuditPatientsKey.self] = newValue }
    }

    /// The visits a handler says this request touched, for an answer that does not name them
    /// itself (a file's bytes, a list of a visit's files).
    public var auditVisits: [UUID] {
        get { storage[AuditVisitsKey.self] ?? [] }
        set { storage[AuditVisitsKey.self] = newValue }
    }
}

/// Records every signed-in request to patient data in the service's audit trail: who, what,
/// which visits (read from the answer: every row a list showed), outcome and client.
public struct AuditMiddleware: Middleware {
    let trail: AuditTrail

    public init(trail: AuditTrail) { self.trail = trail }

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        next.respond(to: request).map { response in
            record(request, status: Int(response.status.code), body: response.body.buffer)
            return response
        }.flatMapErrorThrowing { error in
            record(request, status: Int(ProblemMiddleware.problem(for: error).status), body: nil)
            throw error
        }
    }

    private func record(_ request: Request, status: Int, body: ByteBuffer?) {
        // Only what the table guards: public operations and refused callers are not patient reads
        // (a refusal never got as far; AccessControl logs those).
        guard let user = request.signedIn?.principal, !request.url.path.hasPrefix("/admin/") else { return }
        let template = request.apiTemplate ?? request.url.path
        let pathId = (request.parameters.get("id") ?? request.parameters.get("receptionId")).flatMap(
            UUID.init(uuidString:))
        let peer = request.remoteAddress?.ipAddress ?? "?"
        // Only the gateway's claim is recorded; anyone else's is not even looked at.
        let forwarded =
            request.application.gatewayAddresses.trusts(peer) ? Self.forwardedFor(request.headers[.xForwardedFor]) : ""
        // The answer is read for the visits it held by the trail's writer, not here: the request
        // does not wait for that.
        trail.record(
            user: user.username, role: user.role.rawValue, action: "\(request.method.rawValue) \(template)",
            receptionIds: request.auditVisits,
            patientId: request.auditPatients.isEmpty ? nil : request.auditPatients.joined(separator: ","), answer: (200..<300).contains(status) ? body : nil, pathId: pathId,
            outcome: status,
            client: peer + forwarded)
    }
}

extension AuditMiddleware {
    /// What the entry says the gateway forwarded for: the one address the gateway (or the
    /// screens) put in `X-Forwarded-For`, its last entry; anything that is not an address (a
    /// 30 KB value, a name) is recorded as unreadable, never as is. The peer itself is always
    /// recorded first.
    static func forwardedFor(_ values: [String]) -> String {
        guard !values.isEmpty else { return "" }
        guard let last = values.last?.split(separator: ",").last, last.utf8.count <= 64 else { return " for ?" }
        let hop = TrustedProxies.withoutPort(last.trimmingCharacters(in: .whitespaces))
        return TrustedProxies.bytes(of: hop) != nil ? " for \(hop)" : " for ?"
    }
}

/// `GET /admin/audit?receptionId=&patientId=&user=&from=&to=&format=csv` (admin only): this
/// service's trail, oldest first, as JSON or CSV.
public enum AuditRoutes {
    public struct Page: Content {
        public var items: [AuditEntry]
    }

    public static func register(on routes: any RoutesBuilder, trail: AuditTrail) {
        routes.get("admin", "audit") { req async throws -> Response in
            var query = QueryReader(req)
            let receptionId = query.uuid("receptionId")
            let patientId = query.text("patientId", maxLength: 20)
            let user = query.text("user", maxLength: 64)
            let from = query.instant("from")
            let to = query.instant("to")
            try query.check()
            try await trail.flush()
            let items = try await trail.entries(
                receptionId: receptionId, patientId: patientId, user: user, from: from, to: to, limit: 10_000)
            return try answer(items, csv: req.query[String.self, at: "format"] == "csv")
        }
    }

    public static func answer(_ items: [AuditEntry], csv: Bool) throws -> Response {
        let response = Response(status: .ok)
        if csv {
            response.headers.contentType = HTTPMediaType(type: "text", subType: "csv", parameters: ["charset": "utf-8"])
            response.headers.replaceOrAdd(name: .contentDisposition, value: "attachment; filename=\"audit.csv\"")
            response.body = .init(string: csvText(items))
        } else {
            try response.content.encode(Page(items: items), using: APIJSON.encoder())
        }
        return response
    }

    /// RFC 4180: a header line, fields quoted where needed.
    public static func csvText(_ items: [AuditEntry]) -> String {
        func field(_ text: String) -> String {
            // A leading =, +, - or @ would be a formula to a spreadsheet.
            let safe = text.first.map { "=+-@".contains($0) } == true ? "'" + text : text
            return safe.contains(where: { ",\"\n\r".contains($0) })
                ? "\"" + safe.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : safe
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var lines = ["service,seq,at,user,role,action,receptionIds,patientId,outcome,client,hash"]
        for e in items {
            lines.append(
                [
                    e.service, String(e.seq), formatter.string(from: e.at), e.user, e.role, e.action,
                    e.receptionIds.map(\.uuidString).joined(separator: " "), e.patientId ?? "", String(e.outcome),
                    e.client, e.hash,
                ].map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}
