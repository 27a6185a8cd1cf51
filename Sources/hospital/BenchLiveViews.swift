import AsyncHTTPClient
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import SQLiteNIO
import Synchronization

/// `hospital bench --serve --live-views N`: N screens held open by server-sent events while the
/// visits run (desk boards, doctors' queues of 내과 and examiners' lists, 2:2:1), measured for
/// what a view costs the server and how soon it shows a change; and the audit entries an open
/// screen adds per hour, live against asking every 2 seconds as the screens used to.
enum LiveViewMeasurement {
    /// Live views one account may hold (the services' bound per user).
    static let perUser = 16
    /// The account of the polling screens compared against.
    static let pollingUser = "desk-poll"
    static let pollingScreens = 10
    static let pollingEvery = Duration.seconds(2)

    struct Kind: Sendable {
        var role: String
        var path: String
        var count: Int
        /// Whether the view lists visits from their registration on (the delay is measured from
        /// the registration's answer): boards and doctors' queues; an examiner's list shows a
        /// visit only once the doctor ordered an exam.
        var showsRegistrations: Bool
    }

    static func kinds(_ total: Int) -> [Kind] {
        let boards = total * 2 / 5
        let queues = total * 2 / 5
        return [
            Kind(role: "desk", path: "/patientManagements/live", count: boards, showsRegistrations: true),
            Kind(
                role: "doctor", path: "/diagnoses/queue/live?department=%EB%82%B4%EA%B3%BC", count: queues,
                showsRegistrations: true),
            Kind(role: "examiner", path: "/examinations/live", count: total - boards - queues, showsRegistrations: false),
        ]
    }

    /// The accounts the views sign in as (`perUser` views each), and the polling screens' one.
    static func accounts(_ total: Int) -> [(name: String, role: String)] {
        kinds(total).flatMap { kind in
            (0..<((kind.count + perUser - 1) / perUser)).map { ("\(kind.role)-live-\($0 + 1)", kind.role) }
        } + [(pollingUser, "desk")]
    }

    /// A connection for every view, as that many screens would have.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 4096)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    static func run(
        total: Int, base: URL, password: String, dataDirectory: URL, client: BenchClient, visits: Int,
        concurrency: Int, pids: [Int32], cpuPerVisitWithout: Double
    ) async throws {
        // Tokens: one per account.
        var tokens: [String: String] = [:]
        for (name, _) in accounts(total) {
            tokens[name] = try await signIn(name, password: password, base: base)
        }
        func serverCPU() -> Double { pids.map(ProcStat.cpuSeconds).reduce(0, +) }
        func serverRSS() -> Int { pids.map(ProcStat.residentKiB).reduce(0, +) }
        func idleCPU(for window: Duration) async throws -> Double {
            let before = serverCPU()
            try await Task.sleep(for: window)
            return (serverCPU() - before) / window.seconds
        }
        let idleWithout = try await idleCPU(for: .seconds(10))
        let rssWithout = serverRSS()

        // Open every view; each counts as open once its first event came.
        let views = Views()
        let opening = ContinuousClock.now
        var readers: [Task<Void, Never>] = []
        for kind in kinds(total) {
            for index in 0..<kind.count {
                let account = "\(kind.role)-live-\(index / perUser + 1)"
                let url = base.absoluteString + kind.path
                let token = tokens[account]!
                readers.append(
                    Task { await views.hold(url: url, token: token, showsRegistrations: kind.showsRegistrations, times: client.registered) })
            }
        }
        let deadline = ContinuousClock.now + .seconds(120)
        while views.settled < total, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        let opened = views.open
        print(
            String(
                format: "live views: %d of %d open in %.1f s (%@); %d refused",
                opened, total, opening.duration(to: .now).seconds,
                kinds(total).map { "\($0.count) \($0.role == "desk" ? "boards" : $0.role == "doctor" ? "doctors' queues" : "examiners' lists")" }
                    .joined(separator: ", "), views.refused))
        defer { for reader in readers { reader.cancel() } }

        let idleWith = try await idleCPU(for: .seconds(10))
        let rssWith = serverRSS()
        if opened > 0 {
            print(
                String(
                    format: "idle server CPU: %.1f ms/s without views, %.1f ms/s with them: %.1f µs/s per view",
                    idleWithout * 1000, idleWith * 1000, (idleWith - idleWithout) * 1e6 / Double(opened)))
            print(
                String(
                    format: "server RSS: %.1f MB without views, %.1f MB with them: %.1f KB per view",
                    Double(rssWithout) / 1024, Double(rssWith) / 1024, Double(rssWith - rssWithout) / Double(opened)))
        }

        // The visits again, with the views open.
        views.startCounting()
        let windowStart = Date()
        let cpuBefore = serverCPU()
        let started = ContinuousClock.now
        try await Load.run(count: visits, concurrency: concurrency) { _ in
            _ = try await client.visit(registrationOnly: false)
        }
        let elapsed = started.duration(to: .now).seconds
        let cpu = serverCPU() - cpuBefore
        // Last deliveries, then the window closes.
        try await Task.sleep(for: .seconds(2))
        let windowEnd = Date()
        let delays = views.delays
        print(
            String(
                format: "%d whole visits with the views open: %.1f visits/s, server CPU %.2f ms per visit (%.2f without views)",
                visits, Double(visits) / elapsed, cpu * 1000 / Double(visits), cpuPerVisitWithout))
        print(
            "delivery (registration answered → shown on a board or doctor's queue): p50 \(percentile(delays, 50)) ms  "
                + "p99 \(percentile(delays, 99)) ms over \(delays.count) deliveries; \(views.events) events, "
                + String(format: "%.1f MB", Double(views.bytes) / 1_048_576) + " sent to the views")

        // The views close; each records what it showed since it opened (gathered up to a minute)
        // once the server finds it closed (its next keep-alive, within 5 s).
        for reader in readers { reader.cancel() }
        let hours = windowEnd.timeIntervalSince(windowStart) / 3600
        var liveEntries = -1
        let settleBy = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < settleBy {
            try await Task.sleep(for: .seconds(2))
            let now = try await auditEntries(in: dataDirectory, from: windowStart, to: Date(), where: "action LIKE '%/live%'")
            if now == liveEntries, now >= opened { break }
            liveEntries = now
        }

        // Polling screens, as before: each asks for the board every 2 s.
        let pollStart = Date()
        let pollToken = tokens[pollingUser]!
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<pollingScreens {
                group.addTask {
                    let end = ContinuousClock.now + .seconds(30)
                    while ContinuousClock.now < end {
                        var request = HTTPClientRequest(url: base.absoluteString + "/patientManagements?limit=50")
                        request.headers.add(name: "authorization", value: "Bearer \(pollToken)")
                        _ = try? await Self.client.execute(request, timeout: .seconds(30)).body.collect(upTo: 8 << 20)
                        try await Task.sleep(for: pollingEvery)
                    }
                }
            }
            try await group.waitForAll()
        }
        try await Task.sleep(for: .seconds(2))
        let pollEnd = Date()
        let pollEntries = try await auditEntries(
            in: dataDirectory, from: pollStart, to: pollEnd, where: "user_name = '\(pollingUser)'")
        let pollHours = pollEnd.timeIntervalSince(pollStart) / 3600
        print(
            String(
                format: "audit entries per open screen per hour: %.0f asking every 2 s (%d screens, %d entries in %.0f s), %.1f live (%d views, %d entries for %.0f s of visits, recorded by the time they closed; besides one opening entry each)",
                Double(pollEntries) / Double(pollingScreens) / pollHours, pollingScreens, pollEntries, pollHours * 3600,
                opened > 0 ? Double(liveEntries) / Double(opened) / hours : 0, opened, liveEntries, hours * 3600))
    }

    static func signIn(_ name: String, password: String, base: URL) async throws -> String {
        for _ in 0..<60 {
            var request = HTTPClientRequest(url: base.absoluteString + "/auth/token")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(
                ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: ["username": name, "password": password])))
            let response = try await client.execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 1 << 20)
            if response.status == .tooManyRequests {
                // Sign-in has a small bucket per client: wait as told.
                let wait = response.headers.first(name: "retry-after").flatMap(Int.init) ?? 1
                try await Task.sleep(for: .seconds(wait))
                continue
            }
            guard response.status == .ok,
                let json = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any],
                let token = json["accessToken"] as? String
            else { throw BenchFailure(description: "signing in as \(name) answered \(response.status.code)") }
            return token
        }
        throw BenchFailure(description: "signing in as \(name) was refused for a minute")
    }

    /// Audit entries recorded between `from` and `to` by the services whose views these are.
    static func auditEntries(in directory: URL, from: Date, to: Date, where condition: String) async throws -> Int {
        var total = 0
        for service in ["patient-management", "diagnosis", "examination"] {
            let file = directory.appendingPathComponent("audit-\(service).sqlite")
            guard FileManager.default.fileExists(atPath: file.path) else { continue }
            let connection = try await SQLiteConnection.open(storage: .file(path: file.path), logger: Logger(label: "bench"))
            let rows = try await connection.query(
                "SELECT count(*) AS n FROM audit_log WHERE at >= \(from.timeIntervalSince1970) AND at < \(to.timeIntervalSince1970) AND \(condition)",
                [])
            total += rows.first?.column("n")?.integer ?? 0
            try await connection.close()
        }
        return total
    }

    static func percentile(_ samples: [Double], _ p: Double) -> String {
        guard !samples.isEmpty else { return "-" }
        let sorted = samples.sorted()
        return String(format: "%.1f", sorted[min(sorted.count - 1, Int(Double(sorted.count) * p / 100))])
    }
}

/// When each visit's registration was answered, for the views' delivery delay.
final class RegistrationTimes: Sendable {
    private let times = Mutex<[String: ContinuousClock.Instant]>([:])

    func record(_ id: String) { times.withLock { $0[id] = .now } }
    func time(of id: String) -> ContinuousClock.Instant? { times.withLock { $0[id] } }
    func any() -> String? { times.withLock { $0.keys.first } }
}

/// The open views: how many opened or were refused, and what they received.
final class Views: Sendable {
    private struct State {
        var open = 0
        var refused = 0
        var counting = false
        var delays: [Double] = []
        var events = 0
        var bytes = 0
    }

    private let state = Mutex(State())

    var open: Int { state.withLock { $0.open } }
    var refused: Int { state.withLock { $0.refused } }
    var settled: Int { state.withLock { $0.open + $0.refused } }
    var delays: [Double] { state.withLock { $0.delays } }
    var events: Int { state.withLock { $0.events } }
    var bytes: Int { state.withLock { $0.bytes } }

    func startCounting() { state.withLock { $0.counting = true } }

    /// Where `needle` first stands in `bytes[start..<end]`, by memchr and memcmp: the views'
    /// bytes are many, and the client shares the server's cores.
    static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int, to end: Int) -> Int? {
        let count = needle.count
        guard count > 0, end - start >= count else { return nil }
        return bytes.withUnsafeBytes { hay in
            needle.withUnsafeBytes { wanted in
                let base = hay.baseAddress!
                var i = start
                while i <= end - count {
                    guard let hit = memchr(base + i, Int32(wanted[0]), end - count + 1 - i) else { return nil }
                    let at = UnsafeRawPointer(hit) - base
                    if memcmp(base + at, wanted.baseAddress!, count) == 0 { return at }
                    i = at + 1
                }
                return nil
            }
        }
    }

    /// Holds one view open until cancelled: records each visit it shows for the first time.
    func hold(url: String, token: String, showsRegistrations: Bool, times: RegistrationTimes) async {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "authorization", value: "Bearer \(token)")
        request.headers.add(name: "accept", value: "text/event-stream")
        guard let response = try? await LiveViewMeasurement.client.execute(request, timeout: .seconds(3600)),
            response.status == .ok
        else {
            state.withLock { $0.refused += 1 }
            return
        }
        var first = true
        var shown = Set<String>()
        // Bytes, not strings: the client shares the server's cores, and must cost little per event.
        var pending: [UInt8] = []
        var scanned = 0
        let marker = Array(#""receptionId":""#.utf8)
        let eventStart = Array("id: ".utf8)
        let blankLine = Array("\n\n".utf8)
        do {
            for try await buffer in response.body {
                pending.append(contentsOf: buffer.readableBytesView)
                while let end = Self.find(blankLine, in: pending, from: scanned, to: pending.count) {
                    let block = pending[..<end]
                    let arrived = ContinuousClock.now
                    var found: [Double] = []
                    // Blocks without data: the reconnect delay, keep-alives.
                    let isEvent = block.starts(with: eventStart)
                    if isEvent, showsRegistrations {
                        var from = 0
                        while let at = Self.find(marker, in: pending, from: from, to: end) {
                            from = at + marker.count
                            let id = String(decoding: pending[from..<min(from + 36, end)], as: UTF8.self)
                            guard shown.insert(id).inserted, !first, let registered = times.time(of: id) else { continue }
                            found.append(registered.duration(to: arrived).seconds * 1000)
                        }
                    }
                    let size = end
                    let wasFirst = first && isEvent
                    if isEvent { first = false }
                    pending.removeFirst(end + 2)
                    scanned = 0
                    guard isEvent else { continue }
                    state.withLock { state in
                        if wasFirst { state.open += 1 }
                        guard state.counting else { return }
                        state.events += 1
                        state.bytes += size
                        state.delays += found
                    }
                }
                scanned = max(0, pending.count - 1)
            }
        } catch {
            return
        }
    }
}
