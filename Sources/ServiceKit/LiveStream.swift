import Audit
import Crypto
import Foundation
import Synchronization
import Vapor

/// The open live views (server-sent events) of one service: woken when the service changes
/// something, bounded per user and in all, ended when the server stops.
public final class LiveStreams: Sendable {
    private struct State {
        var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
        var open = 0
        var byUser: [String: Int] = [:]
        var ended = false
    }

    private let state = Mutex(State())
    public let maxOpen: Int
    public let maxPerUser: Int

    public init(maxOpen: Int = 200, maxPerUser: Int = 4) {
        self.maxOpen = maxOpen
        self.maxPerUser = maxPerUser
    }

    /// How many are open now.
    public var count: Int { state.withLock { $0.open } }

    /// The server stops: every stream ends (a browser reconnects to another replica).
    public func end() {
        state.withLock { $0.ended = true }
        changed()
    }

    public var ended: Bool { state.withLock { $0.ended } }

    /// A change is being written: the streams look again once it is likely committed (and each
    /// second anyway). Nothing at all while no stream is open.
    public func changedSoon() {
        guard state.withLock({ $0.open > 0 }) else { return }
        Task {
            try? await Task.sleep(for: .milliseconds(50))
            self.changed()
        }
    }

    /// Something changed: every stream looks again.
    public func changed() {
        let waiters = state.withLock { state in
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns at the next change or after `timeout`, whichever is first.
    public func nextChange(timeout: Duration) async {
        let id = UUID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    self.state.withLock { $0.waiters[id] = continuation }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                waiter?.resume()
            }
            await group.next()
            group.cancelAll()
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
            await group.waitForAll()
        }
    }

    /// Takes a place for a stream of `user`, or says why there is none.
    public func open(for user: String) -> String? {
        state.withLock { state in
            if state.ended { return "the server is stopping: try again shortly" }
            if state.open >= maxOpen { return "\(maxOpen) live views are open on this server: try again shortly" }
            if state.byUser[user, default: 0] >= maxPerUser {
                return "you have \(maxPerUser) live views open already: close one first"
            }
            state.open += 1
            state.byUser[user, default: 0] += 1
            return nil
        }
    }

    public func close(for user: String) {
        state.withLock { state in
            state.open -= 1
            state.byUser[user, default: 1] -= 1
            if state.byUser[user] == 0 { state.byUser[user] = nil }
        }
    }
}

/// A live view as server-sent events: the whole view on each change (its `id` a digest, so a
/// reconnect with `Last-Event-ID` gets nothing until it differs), a keep-alive comment every
/// 15 s, woken by the service's changes and looking again each second anyway (another replica's
/// changes). Opening it is one audit entry naming the visits it showed; each later push that
/// shows visits this subscription had not shown is one more entry naming only those, recorded
/// against the subscription (`… (pushed)`), never a fresh read per push.
public enum LiveStream {
    public struct Snapshot: Sendable {
        public var body: Data
        public var visits: [UUID]

        public init(body: Data, visits: [UUID]) {
            self.body = body
            self.visits = visits
        }
    }

    public static func response(
        _ req: Request, streams: LiveStreams, event: String,
        snapshot: @escaping @Sendable () async throws -> Snapshot
    ) async throws -> Response {
        let user = req.signedIn?.principal.username ?? req.actor(default: "unknown")
        if let refusal = streams.open(for: user) {
            let response = ProblemMiddleware.response(
                for: Problem(type: "/problems/too-many-streams", title: "Too Many Requests", status: 429, detail: refusal))
            response.headers.replaceOrAdd(name: .retryAfter, value: "5")
            return response
        }
        let first: Snapshot
        do {
            first = try await snapshot()
        } catch {
            streams.close(for: user)
            throw error
        }
        // Opening the live view is one audit entry, naming the visits it showed.
        req.auditVisits = first.visits
        let disclosure = Disclosure(req)
        let lastSeen = req.headers.first(name: "Last-Event-ID")
        let response = Response(status: .ok)
        response.headers.contentType = HTTPMediaType(type: "text", subType: "event-stream", parameters: ["charset": "utf-8"])
        response.headers.replaceOrAdd(name: .cacheControl, value: "no-store")
        response.headers.replaceOrAdd(name: "X-Accel-Buffering", value: "no")
        let logger = req.logger
        response.body = .init(asyncStream: { writer in
            defer { streams.close(for: user) }
            var sent = lastSeen
            var current = first
            var shown = Set(first.visits)
            var quietSince = ContinuousClock.now
            do {
                // Tells the browser how soon to reconnect after a drop.
                try await writer.write(.buffer(ByteBuffer(string: "retry: 1000\n\n")))
                while !Task.isCancelled && !streams.ended {
                    let id = digest(current.body)
                    if id != sent {
                        let new = current.visits.filter { !shown.contains($0) }
                        if !new.isEmpty {
                            disclosure.record(new)
                            shown.formUnion(new)
                        }
                        try await writer.write(
                            .buffer(ByteBuffer(string: "id: \(id)\nevent: \(event)\ndata: \(String(decoding: current.body, as: UTF8.self))\n\n")))
                        sent = id
                        quietSince = .now
                    } else if ContinuousClock.now - quietSince >= .seconds(15) {
                        try await writer.write(.buffer(ByteBuffer(string: ": keep-alive\n\n")))
                        quietSince = .now
                    }
                    await streams.nextChange(timeout: .seconds(1))
                    if streams.ended { break }
                    current = try await snapshot()
                }
                try await writer.write(.end)
            } catch {
                logger.debug("live stream ended", metadata: ["reason": "\(error)"])
                try? await writer.write(.end)
            }
        })
        return response
    }

    public static func digest(_ data: Data) -> String {
        SHA256.hash(data: data).prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    /// Records what a subscription showed after it opened, as its opening was recorded.
    struct Disclosure: Sendable {
        let trail: AuditTrail?
        let user: String
        let role: String
        let action: String
        let client: String

        init(_ req: Request) {
            trail = req.application.auditTrail
            let principal = req.signedIn?.principal
            user = principal?.username ?? "unknown"
            role = principal?.role.rawValue ?? ""
            action = "\(req.method.rawValue) \(req.apiTemplate ?? req.url.path) (pushed)"
            let peer = req.remoteAddress?.ipAddress ?? "?"
            let forwarded =
                req.application.gatewayAddresses.trusts(peer)
                ? AuditMiddleware.forwardedFor(req.headers[.xForwardedFor]) : ""
            client = peer + forwarded
        }

        func record(_ visits: [UUID]) {
            trail?.record(
                user: user, role: role, action: action,
                receptionIds: visits.sorted { $0.uuidString < $1.uuidString }, outcome: 200, client: client)
        }
    }
}

extension Application {
    private struct AuditTrailKey: StorageKey {
        typealias Value = AuditTrail
    }

    /// The service's audit trail, for what is recorded outside a request's own entry (a live
    /// view's later disclosures).
    public var auditTrail: AuditTrail? {
        get { storage[AuditTrailKey.self] }
        set { storage[AuditTrailKey.self] = newValue }
    }
}
