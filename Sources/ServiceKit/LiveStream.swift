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
        /// Counts the changes: a shared frame taken before the latest change is stale.
        var generation = 0
        var frames: [String: SharedFrame] = [:]
    }

    /// One view's latest frame, shared by every stream showing that view.
    private struct SharedFrame {
        var generation: Int
        var taken: ContinuousClock.Instant
        var task: Task<LiveStream.Frame, any Error>
        var reading = true
    }

    /// How long a frame serves streams that were not woken by a change (another replica's changes
    /// show within this).
    static let frameLifetime: Duration = .seconds(1)

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

    /// Something changed and is committed: every stream looks again.
    public func changed() {
        let waiters = state.withLock { state in
            state.generation += 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// The current frame of `view`: taken once per change (or per second without one) and shared
    /// by every stream showing that view, so a hundred open boards cost one query, not a hundred.
    /// A read in progress is joined; one finished before the latest change is not.
    public func frame(
        of view: String, event: String, make: @escaping @Sendable () async throws -> LiveStream.Snapshot
    ) async throws -> LiveStream.Frame {
        let key = event + "\u{1}" + view
        let now = ContinuousClock.now
        let task = state.withLock { state -> Task<LiveStream.Frame, any Error> in
            if let shared = state.frames[key], shared.generation == state.generation,
                shared.reading || now - shared.taken < Self.frameLifetime
            {
                return shared.task
            }
            // Views nobody showed for a while are forgotten.
            state.frames = state.frames.filter { $0.value.reading || now - $0.value.taken < .seconds(10) }
            let generation = state.generation
            let task = Task {
                defer {
                    self.state.withLock { state in
                        if state.frames[key]?.generation == generation { state.frames[key]?.reading = false }
                    }
                }
                return LiveStream.Frame(try await make(), event: event)
            }
            state.frames[key] = SharedFrame(generation: generation, taken: now, task: task)
            return task
        }
        do {
            return try await task.value
        } catch {
            // A failed read is not kept: the next stream to look asks again.
            state.withLock { state in
                if let shared = state.frames[key], shared.task == task { state.frames[key] = nil }
            }
            throw error
        }
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

/// A live view as server-sent events: the whole view on each change, at most four times a
/// second (its `id` a digest, so a
/// reconnect with `Last-Event-ID` gets nothing until it differs), a keep-alive comment every
/// 5 s (which also finds a closed connection), woken by the service's changes and looking again
/// each second anyway (another replica's changes). Every stream showing the same view shares one
/// frame per change (`LiveStreams.frame`).
///
/// Audit: opening it is one entry naming the visits it showed. Visits shown later that this
/// subscription had not shown are gathered and recorded against it (`… (pushed)`), one entry
/// naming them a minute at most after the first was shown, and one when the stream ends; never a
/// fresh read per push.
public enum LiveStream {
    public struct Snapshot: Sendable {
        public var body: Data
        public var visits: [UUID]

        public init(body: Data, visits: [UUID]) {
            self.body = body
            self.visits = visits
        }
    }

    /// A snapshot as sent: its digest and the whole event, made once for every stream showing it.
    public struct Frame: Sendable {
        public let visits: [UUID]
        public let id: String
        let bytes: ByteBuffer

        init(_ snapshot: Snapshot, event: String) {
            visits = snapshot.visits
            id = LiveStream.digest(snapshot.body)
            var bytes = ByteBuffer(string: "id: \(id)\nevent: \(event)\ndata: ")
            bytes.writeBytes(snapshot.body)
            bytes.writeString("\n\n")
            self.bytes = bytes
        }
    }

    /// How long newly shown visits are gathered before they are recorded.
    public static let disclosureWindow: Duration = .seconds(60)
    static let keepAlive: Duration = .seconds(5)
    /// At most four pushes a second per stream: a burst of changes is one push, not one each
    /// (a change still shows within a second).
    static let minimumGap: Duration = .milliseconds(250)

    /// `view` names what `snapshot` shows (the filter, the department): streams with the same
    /// `event` and `view` share their frames.
    public static func response(
        _ req: Request, streams: LiveStreams, event: String, view: String,
        snapshot: @escaping @Sendable () async throws -> Snapshot
    ) async throws -> Response {
        let user = req.signedIn?.principal.username ?? req.actor(default: "unknown")
        if let refusal = streams.open(for: user) {
            let response = ProblemMiddleware.response(
                for: Problem(type: "/problems/too-many-streams", title: "Too Many Requests", status: 429, detail: refusal))
            response.headers.replaceOrAdd(name: .retryAfter, value: "5")
            return response
        }
        let first: Frame
        do {
            first = try await streams.frame(of: view, event: event, make: snapshot)
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
            var shown = Set(first.visits)
            var unrecorded: Set<UUID> = []
            var recordedAt = ContinuousClock.now
            defer {
                if !unrecorded.isEmpty { disclosure.record(unrecorded) }
                streams.close(for: user)
            }
            var sent = lastSeen
            var current = first
            var quietSince = ContinuousClock.now
            do {
                // Tells the browser how soon to reconnect after a drop.
                try await writer.write(.buffer(ByteBuffer(string: "retry: 1000\n\n")))
                while !Task.isCancelled && !streams.ended {
                    if current.id != sent {
                        for visit in current.visits where !shown.contains(visit) {
                            if unrecorded.isEmpty { recordedAt = .now }
                            unrecorded.insert(visit)
                            shown.insert(visit)
                        }
                        try await writer.write(.buffer(current.bytes))
                        sent = current.id
                        quietSince = .now
                    } else if ContinuousClock.now - quietSince >= keepAlive {
                        try await writer.write(.buffer(ByteBuffer(string: ": keep-alive\n\n")))
                        quietSince = .now
                    }
                    if !unrecorded.isEmpty && ContinuousClock.now - recordedAt >= disclosureWindow {
                        disclosure.record(unrecorded)
                        unrecorded = []
                    }
                    await streams.nextChange(timeout: .seconds(1))
                    if streams.ended { break }
                    let sincePush = ContinuousClock.now - quietSince
                    if sincePush < minimumGap { try await Task.sleep(for: minimumGap - sincePush) }
                    current = try await streams.frame(of: view, event: event, make: snapshot)
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

        func record(_ visits: Set<UUID>) {
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
