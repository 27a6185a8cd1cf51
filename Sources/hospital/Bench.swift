import ArgumentParser
import AsyncHTTPClient
import Backup
import Foundation
import Identity
import JWTKit
import NIOCore
import NIOHTTP1
import Logging
import SQLiteNIO
import Synchronization

/// `hospital bench`: drives a running system through its gateway as the screens would, and
/// prints what it took.
///
/// Each visit is the whole journey: register, wait for the doctor's worklist, prescribe one exam,
/// wait for the examiner's list, perform it, wait for EXAM_DONE, complete, wait for the desk's
/// board to say COMPLETED. A hop is the time from a command's answer until its effect is visible
/// in another service. With `--serve` the command starts `hospital serve` itself on a fresh data
/// directory, so it can read the server's CPU time and memory from /proc, and every service's
/// `/metrics` for the hops as the services saw them, without the client's polls in them
/// (`EventDelays`).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure whole visits per second, hop latencies and server CPU per visit.")

    @Option(help: "Whole visits to run.") var visits = 500
    @Option(help: "Visits in flight at once.") var concurrency = 32
    @Option(
        help: """
            Open loop: start this many visits a second, whatever is still in flight (no concurrency \
            cap), as patients arrive at a clinic; the hops then show queueing at that load.
            """)
    var rate: Double?
    @Flag(help: "Only register (no doctor, no exam): N registrations at the concurrency.")
    var registrationsOnly = false
    @Option(help: "Gateway of a running system (ignored with --serve).") var url = "http://127.0.0.1:8088"
    @Option(
        name: .customLong("server-pid"),
        help: "Processes of the running system whose CPU and memory to report (repeatable).")
    var serverPids: [Int32] = []
    @Flag(help: "Start `hospital serve` on a fresh temporary data directory and measure it.")
    var serve = false
    @Option(help: "The server binary to start with --serve (default: this one), e.g. an older build to compare.")
    var serverBinary: String?
    @Option(
        help: """
            History before measuring. With --serve: up to 1000 whole visits through the API, then their rows \
            copied into the past until the databases hold this many visits. Without: registrations through the API.
            """)
    var seedHistory = 0
    @Option(help: "With --serve: megabytes of result files (10 MB each, each on an exam of its own) before measuring.")
    var seedAttachmentsMb = 0
    @Flag(
        help: """
            With --serve: measure `hospital backup` (encrypted) of the seeded system instead of visits: its time, \
            size and writers' pause, and the registration latency before it and while it runs.
            """)
    var measureBackup = false
    @Option(
        help: """
            With --serve: after the visits, open this many live views (server-sent events: desk boards, doctors' \
            queues, examiners' lists, 2:2:1) and run the visits again: their delivery delay, the server's CPU and \
            memory per view, and audit entries per open screen per hour against screens asking every 2 s.
            """)
    var liveViews = 0
    @Option(
        help: """
            With --serve: after the visits, this many requests of each kind one by one at concurrency 16: a read \
            by id on reception's own port (known and unknown) and through the gateway, the health check, a \
            walk-in registration, and the same from a framework-free prototype; req/s and server CPU per request.
            """)
    var reads = 0
    @Option(help: "Visits run before measuring (connections, caches).") var warmup = 20
    @Option(help: "How often a waiting visit looks again for a step's effect, in milliseconds.") var pollMs = 10
    @Option(
        help: """
            The password of the accounts desk, doctor and examiner of a running system (without --serve; \
            HOSPITAL_BENCH_PASSWORD). With --serve the benchmark makes them itself.
            """)
    var password: String?

    func run() async throws {
        var server: Process?
        var base = URL(string: url)!
        var pids = serverPids
        var dataDir: URL?
        let port = 18_000 + Int.random(in: 0..<2000)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hospital-bench-\(UUID())")
        let binary = URL(
            fileURLWithPath: serverBinary ?? URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path)
        func startServer() throws {
            let process = Process()
            process.executableURL = binary
            process.arguments = [
                "serve", "--data-dir", directory.path, "--log-level", "error", "--gateway-port", "\(port)",
                "--reception-port", "\(port + 1)", "--diagnosis-port", "\(port + 2)", "--examination-port",
                "\(port + 3)", "--patient-management-port", "\(port + 4)",
            ]
            process.standardOutput = FileHandle.nullDevice
            if reads > 0 || rate != nil {
                // One client address sends what a clinic's many would: above 1,000 requests a
                // second (the default limit per address) the reads, or an open loop's polls,
                // would be measuring 429s. The limiter still counts every request.
                process.environment = ProcessInfo.processInfo.environment.merging(["HOSPITAL_RATE_LIMIT": "1000000"]) { $1 }
            }
            try process.run()
            server = process
            pids = [process.processIdentifier]
        }
        // HOSPITAL_BENCH_PASSWORD: the password of a running system's desk, doctor and examiner accounts.
        var password = self.password ?? ProcessInfo.processInfo.environment["HOSPITAL_BENCH_PASSWORD"]
        if serve {
            dataDir = directory
            // An account per role, as an operator makes them (a build without sign-in has no
            // `users`: it is measured without tokens).
            password = "bench-\(UUID().uuidString)"
            let accounts = [("desk", "desk"), ("doctor", "doctor"), ("examiner", "examiner")]
                + (liveViews > 0 ? LiveViewMeasurement.accounts(liveViews) : [])
            for (name, role) in accounts {
                let add = Process()
                add.executableURL = binary
                add.arguments = ["users", "add", name, "--role", role, "--data-dir", directory.path]
                add.environment = ProcessInfo.processInfo.environment.merging(["HOSPITAL_BCRYPT_COST": "10"]) { $1 }
                let input = Pipe()
                add.standardInput = input
                add.standardOutput = FileHandle.nullDevice
                add.standardError = FileHandle.nullDevice
                try add.run()
                input.fileHandleForWriting.write(Data("\(password!)\n\(password!)\n".utf8))
                try input.fileHandleForWriting.close()
                add.waitUntilExit()
            }
            try startServer()
            base = URL(string: "http://127.0.0.1:\(port)")!
        }
        defer {
            if let server, server.isRunning {
                server.terminate()
                server.waitUntilExit()
            }
            if let dataDir { try? FileManager.default.removeItem(at: dataDir) }
        }
        var signingIn = BenchClient(
            base: base, poll: .milliseconds(pollMs), http: rate == nil ? .shared : LiveViewMeasurement.client)
        try await signingIn.waitUntilReady()
        if let password { try await signingIn.signIn(password: password) }
        let client = signingIn
        if let token = client.tokens[.desk] { try await reportTokenCheck(token, base: base) }
        // Returning patients, as a clinic's day mostly is: visits name one of them.
        try await client.preparePatients(count: 200)

        if seedHistory > 0, serve, let running = server {
            // Real visits through the API, then copies of their rows into the past, with the
            // system stopped: a million visits in minutes rather than hours.
            let started = ContinuousClock.now
            let real = min(seedHistory, 1000)
            try await Load.run(count: real, concurrency: concurrency) { _ in
                _ = try await client.visit(registrationOnly: false)
            }
            try await client.measureLists(history: real)
            running.terminate()
            running.waitUntilExit()
            let added = try await HistorySeed.grow(dataDirectory: directory, to: seedHistory)
            try startServer()
            try await client.waitUntilReady()
            print(
                "seeded \(seedHistory) historic visits (\(real) through the API, \(added) rows copied) in "
                    + String(format: "%.0f s", started.duration(to: .now).seconds))
        } else if seedHistory > 0 {
            let started = ContinuousClock.now
            try await Load.run(count: seedHistory, concurrency: concurrency) { _ in
                _ = try await client.register()
            }
            try await client.waitUntilBoardHas(atLeast: seedHistory)
            print("seeded \(seedHistory) registered visits in \(started.duration(to: .now).seconds) s")
        }
        if seedAttachmentsMb > 0, serve {
            let started = ContinuousClock.now
            let files = (seedAttachmentsMb + 9) / 10
            try await Load.run(count: files, concurrency: 2) { i in
                let size = min(10, seedAttachmentsMb - i * 10) << 20
                try await client.attachFile(bytes: size)
            }
            print(
                "seeded \(seedAttachmentsMb) MB of result files (\(files) files) in "
                    + String(format: "%.0f s", started.duration(to: .now).seconds))
        }
        // Warm-up: connections, caches, the first compilations of queries.
        try await Load.run(count: warmup, concurrency: min(warmup, concurrency)) { _ in
            _ = try await client.visit(registrationOnly: registrationsOnly)
        }

        if measureBackup, serve {
            try await BackupMeasurement.run(
                binary: binary, dataDirectory: directory, client: client, concurrency: concurrency, pids: pids)
            return
        }
        let history = max(seedHistory, warmup)
        try await client.measureLists(history: history)
        let searches = serve ? try await client.measureSearches(dataDirectory: directory, history: history) : []
        let histories = seedHistory > 1000 && serve ? [1000, history] : [history]
        let lists = histories.flatMap { h in BenchClient.lists.map { BenchClient.sample($0.name, history: h) } }

        // Every service's port, for the hops as the services saw them (their /metrics); a run
        // of registrations alone has no hops.
        let servicePorts = serve && !registrationsOnly ? Array(port..<(port + 5)) : []
        let delaysBefore = await EventDelays.scrape(ports: servicePorts)
        let measured = pids
        let cpuBefore = measured.map(ProcStat.cpuSeconds).reduce(0, +)
        let started = ContinuousClock.now
        let sampler = Task { () -> Int in
            var peak = 0
            while !Task.isCancelled {
                peak = max(peak, measured.map(ProcStat.residentKiB).reduce(0, +))
                try? await Task.sleep(for: .milliseconds(200))
            }
            return peak
        }
        let job: @Sendable (Int) async throws -> Void = { _ in
            _ = try await client.visit(registrationOnly: registrationsOnly)
        }
        if let rate {
            try await Load.paced(count: visits, perSecond: rate, job)
        } else {
            try await Load.run(count: visits, concurrency: concurrency, job)
        }
        let elapsed = started.duration(to: .now).seconds
        let cpu = measured.map(ProcStat.cpuSeconds).reduce(0, +) - cpuBefore
        sampler.cancel()
        let peakKiB = await sampler.value

        let what = registrationsOnly ? "registrations" : "whole visits"
        let load = rate.map { String(format: "offered at %.1f/s", $0) } ?? "at concurrency \(concurrency)"
        print(
            String(
                format: "%d %@ %@ in %.2f s: %.1f %@/s", visits, what, load, elapsed, Double(visits) / elapsed, what))
        print(
            "errors: \(client.stats.errors) (5xx: \(client.stats.serverErrors)); "
                + String(
                    format: "%.1f requests per visit",
                    Double(
                        client.stats.samples("request").count - lists.count * BenchClient.listSamples
                            - searches.count * BenchClient.searchSamples - client.patients.requests)
                        / Double(visits + warmup + min(seedHistory, 1000))))
        print(
            "request latency ms      p50 \(client.stats.percentile("request", 50))  p99 \(client.stats.percentile("request", 99))"
        )
        for hop in BenchClient.hops where !client.stats.samples(hop).isEmpty {
            print(
                "hop \(hop.padding(toLength: 28, withPad: " ", startingAt: 0)) p50 \(client.stats.percentile(hop, 50))  p99 \(client.stats.percentile(hop, 99))"
            )
        }
        if !servicePorts.isEmpty {
            print("hops as the services saw them (an event's occurredAt → handled and committed, from /metrics):")
            let delays = EventDelays.report(
                from: delaysBefore, to: await EventDelays.scrape(ports: servicePorts), minimum: visits / 2)
            for line in delays { print("  " + line) }
        }
        for name in lists {
            print(
                "list \(name.padding(toLength: 42, withPad: " ", startingAt: 0)) p50 \(client.stats.percentile(name, 50))  p99 \(client.stats.percentile(name, 99))"
            )
        }
        for name in searches {
            print(
                "\(name.padding(toLength: 47, withPad: " ", startingAt: 0)) p50 \(client.stats.percentile(name, 50))  p99 \(client.stats.percentile(name, 99))"
            )
        }
        if !pids.isEmpty {
            print(String(format: "server CPU: %.2f s in all, %.2f ms per visit", cpu, cpu * 1000 / Double(visits)))
            print(String(format: "server peak RSS: %.1f MB", Double(peakKiB) / 1024))
        }
        if reads > 0, serve, let known = client.registered.any() {
            try await ReadMeasurement.run(
                count: reads, concurrency: 16, gateway: base, reception: URL(string: "http://127.0.0.1:\(port + 1)")!,
                token: client.tokens[.desk], known: known, pids: pids, floor: (port + 5, directory))
        }
        if liveViews > 0, serve, let password {
            try await LiveViewMeasurement.run(
                total: liveViews, base: base, password: password, dataDirectory: directory, client: client,
                visits: visits, concurrency: concurrency, pids: pids, cpuPerVisitWithout: cpu * 1000 / Double(visits))
        }
        if client.stats.serverErrors > 0 { throw ExitCode(1) }
    }
}

/// What checking a token costs a service per request, as `AccessControl` does it, timed alone:
/// a token's first use (the ES256 signature and the claims; the key set read in process) and
/// every later use (a token verified once is known until it expires).
private func reportTokenCheck(_ token: String, base: URL) async throws {
    var request = HTTPClientRequest(url: base.absoluteString + "/.well-known/jwks.json")
    request.method = .GET
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    let jwks = try JSONDecoder().decode(JWKS.self, from: Data(buffer: try await response.body.collect(upTo: 1 << 20)))
    func median(_ samples: [Double]) -> Double { samples.sorted()[samples.count / 2] }
    var first: [Double] = []
    for _ in 0..<300 {
        let verifier = TokenVerifier(settings: .init(issuer: "hospital", audience: "hospital-api")) { jwks }
        let started = ContinuousClock.now
        _ = try await verifier.verify(token)
        first.append(started.duration(to: .now).seconds * 1e6)
    }
    /// Microseconds of each of 2,000 checks of a token `verifier` already verified once.
    func knownTokenChecks(_ verifier: TokenVerifier) async throws -> [Double] {
        _ = try await verifier.verify(token)
        var samples: [Double] = []
        for _ in 0..<2000 {
            let started = ContinuousClock.now
            _ = try await verifier.verify(token)
            samples.append(started.duration(to: .now).seconds * 1e6)
        }
        return samples
    }
    let later = try await knownTokenChecks(
        TokenVerifier(settings: .init(issuer: "hospital", audience: "hospital-api")) { jwks })
    // The same with a revocation list as a busy day leaves it: 1,000 ended sessions, 50 accounts.
    let revocations = Revocations()
    revocations.replace(
        with: .init(
            sessions: (0..<1000).map { String(format: "%032x", $0) },
            users: (0..<50).map { .init(user: Revocations.userKey("user\($0)"), notBefore: Date().timeIntervalSince1970) }))
    let checked = try await knownTokenChecks(
        TokenVerifier(settings: .init(issuer: "hospital", audience: "hospital-api"), revocations: revocations) {
            jwks
        })
    print(
        String(
            format:
                "token check per request: first use p50 %.0f µs (signature and claims), later uses p50 %.1f µs, with a revocation list of 1,000 sessions and 50 accounts p50 %.1f µs",
            median(first), median(later), median(checked)))
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Runs `count` jobs with at most `concurrency` at once.
enum Load {
    static func run(
        count: Int, concurrency: Int, _ job: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            for _ in 0..<min(concurrency, count) {
                let i = next
                next += 1
                group.addTask { try await job(i) }
            }
            while try await group.next() != nil {
                if next < count {
                    let i = next
                    next += 1
                    group.addTask { try await job(i) }
                }
            }
        }
    }
}

extension Load {
    /// Starts job `i` at `i / perSecond` seconds after the first, however many are still
    /// running (an open loop: a slow server makes the jobs pile up, not the arrivals slow down).
    static func paced(
        count: Int, perSecond: Double, _ job: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        precondition(perSecond > 0)
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                try await clock.sleep(until: start + .seconds(Double(i) / perSecond))
                group.addTask { try await job(i) }
            }
            try await group.waitForAll()
        }
    }
}

/// The server's CPU time and memory, from /proc.
enum ProcStat {
    static func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func residentKiB(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }
}

/// Latency samples by name, and error counts.
final class Stats: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: [Double]] = [:]
    private(set) var errors = 0
    private(set) var serverErrors = 0

    func record(_ name: String, _ duration: Duration) {
        lock.withLock { values[name, default: []].append(duration.seconds * 1000) }
    }

    func failed(status: Int) {
        lock.withLock {
            errors += 1
            if status >= 500 || status == 0 { serverErrors += 1 }
        }
    }

    func samples(_ name: String) -> [Double] { lock.withLock { values[name] ?? [] } }

    func percentile(_ name: String, _ p: Double) -> String {
        let sorted = samples(name).sorted()
        guard !sorted.isEmpty else { return "-" }
        let index = min(sorted.count - 1, Int((Double(sorted.count) * p / 100).rounded(.up)) - 1)
        return String(format: "%.1f", sorted[max(0, index)])
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String
}

/// The screens' calls, timed.
struct BenchClient: Sendable {
    static let hops = [
        "registered → worklist", "prescribed → exam list", "performed → EXAM_DONE", "completed → board",
    ]

    let base: URL
    let poll: Duration
    let stats = Stats()
    /// The registry's patients whose visits it registers (empty on a build without a registry).
    let patients = PatientPool()
    /// An access token per role, for each call as a role the table allows.
    var tokens: [Role: String] = [:]
    /// When each registration was answered (the live views' delivery delay).
    let registered = RegistrationTimes()
    /// Eight connections per host (AsyncHTTPClient's default) at a fixed concurrency; a
    /// connection for every request in flight in an open loop, as that many screens would have.
    let http: HTTPClient

    init(base: URL, poll: Duration, http: HTTPClient = .shared) {
        self.base = base
        self.poll = poll
        self.http = http
    }

    /// Signs in as desk, doctor and examiner (`POST /auth/token`).
    mutating func signIn(password: String) async throws {
        for role in [Role.desk, .doctor, .examiner] {
            let (status, json) = try await send(
                .POST, "/auth/token", ["username": role.rawValue, "password": password])
            guard status == 200, let token = json["accessToken"] as? String else {
                // A build without sign-in answers 404 here and needs no token.
                if status == 404 { return }
                throw BenchFailure(description: "signing in as \(role.rawValue) answered \(status)")
            }
            tokens[role] = token
        }
    }

    func send(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil) async throws -> (Int, [String: Any]) {
        var request = HTTPClientRequest(url: base.absoluteString + path)
        request.method = method
        let bare = String(path.split(separator: "?", maxSplits: 1).first ?? "")
        if case .roles(let roles) = AccessPolicy.decision(method: method.rawValue, requestPath: bare),
            let role = roles.min(), let token = tokens[role]
        {
            request.headers.add(name: "authorization", value: "Bearer \(token)")
        }
        if let body {
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
            request.headers.add(name: "content-type", value: "application/json")
        }
        let started = ContinuousClock.now
        do {
            let response = try await http.execute(request, timeout: .seconds(30))
            let bytes = try await response.body.collect(upTo: 8 << 20)
            stats.record("request", started.duration(to: .now))
            let status = Int(response.status.code)
            if status >= 400 && !(method == .GET && status == 404) { stats.failed(status: status) }
            let json = (try? JSONSerialization.jsonObject(with: Data(buffer: bytes))) as? [String: Any] ?? [:]
            return (status, json)
        } catch {
            stats.failed(status: 0)
            throw error
        }
    }

    func waitUntilReady() async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let (status, _) = try? await send(.GET, "/health/ready"), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchFailure(description: "the system at \(base) did not become ready")
    }

    /// Polls `path` until `done` holds; records the hop from `since`.
    func await(
        _ hop: String, since: ContinuousClock.Instant, _ path: String, _ done: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let (status, json) = try await send(.GET, path)
            if status == 200, done(json) {
                stats.record(hop, since.duration(to: .now))
                return json
            }
            try await Task.sleep(for: poll)
        }
        throw BenchFailure(description: "\(hop): \(path) never got there")
    }

    /// A name as common as Korean names are: 김 about one in five, 김민 about one in fifty.
    static func name() -> String {
        let surnames = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
        let weights = [21, 15, 8, 5, 4, 2, 2, 2, 2, 2]
        var pick = Int.random(in: 0..<weights.reduce(0, +))
        var surname = surnames.last!
        for (name, weight) in zip(surnames, weights) {
            if pick < weight {
                surname = name
                break
            }
            pick -= weight
        }
        let given = ["민수", "민지", "서연", "지훈", "현우", "수빈", "예은", "도윤", "하은", "준서", "지민", "유진"]
        return surname + given.randomElement()!
    }

    /// 접수 of a returning patient (재진) from the pool when the server has a registry; a walk-in
    /// (the patient's name typed) on a build from before it.
    func register() async throws -> String {
        let body: [String: Any] =
            if let patientId = patients.any() {
                ["patientId": patientId, "department": "내과", "symptom": "기침"]
            } else {
                ["patientName": Self.name(), "department": "내과", "symptom": "기침"]
            }
        let (status, json) = try await send(.POST, "/receptions", body)
        guard status == 201, let id = json["id"] as? String else {
            throw BenchFailure(description: "registration answered \(status)")
        }
        registered.record(id)
        return id
    }

    /// Registers `count` patients (신환 등록) whose visits the benchmark then registers, if the
    /// server has a registry (a build from before it answers 404 and is left to walk-ins).
    func preparePatients(count: Int) async throws {
        let (probe, _) = try await send(.POST, "/patients/search", ["name": "김"])
        patients.counted(1)
        guard probe == 200 else { return }
        try await Load.run(count: count, concurrency: 8) { _ in
            let birth = String(format: "%04d-%02d-%02d", Int.random(in: 1930...2020), Int.random(in: 1...12), Int.random(in: 1...28))
            let (status, json) = try await self.send(
                .POST, "/patients",
                ["name": Self.name(), "birthDate": birth, "sex": Bool.random() ? "M" : "F", "confirmDistinct": true])
            guard status == 201, let id = json["id"] as? String else {
                throw BenchFailure(description: "a new patient answered \(status)")
            }
            self.patients.add(id)
        }
        patients.counted(count)
    }

    static let searchSamples = 100

    /// 환자 검색 as the desk does it, each timed alone: by the first two letters of a name with
    /// the birth date, and by chart number, for patients sampled from reception's database.
    func measureSearches(dataDirectory: URL, history: Int) async throws -> [String] {
        let file = dataDirectory.appendingPathComponent("reception.sqlite")
        let connection = try await SQLiteConnection.open(storage: .file(path: file.path), logger: Logger(label: "bench"))
        defer { Task { try? await connection.close() } }
        guard
            !(try await connection.query("SELECT name FROM sqlite_master WHERE name = 'patients'", [])).isEmpty
        else { return [] }
        let rows = try await connection.query(
            "SELECT name, birth_date, chart_number FROM patients WHERE birth_date IS NOT NULL ORDER BY random() LIMIT \(Self.searchSamples)",
            [])
        let byName = Self.sample("search, 2 letters + birth date", history: history)
        let byChart = Self.sample("search, chart number", history: history)
        for row in rows {
            guard let name = row.column("name")?.string, let birth = row.column("birth_date")?.string,
                let chart = row.column("chart_number")?.string
            else { continue }
            for (sample, body) in [
                (byName, ["name": String(name.prefix(2)), "birthDate": birth]), (byChart, ["chartNumber": chart]),
            ] {
                let started = ContinuousClock.now
                let (status, json) = try await send(.POST, "/patients/search?limit=20", body)
                guard status == 200, !((json["items"] as? [Any]) ?? []).isEmpty else {
                    throw BenchFailure(description: "a search for a patient in the database answered \(status), empty")
                }
                stats.record(sample, started.duration(to: .now))
            }
        }
        return [byName, byChart]
    }

    /// The list requests the screens make, each timed alone (one at a time, before the load).
    static let lists: [(name: String, path: String)] = [
        ("board, first page", "/patientManagements?limit=50"),
        ("board, today", "/patientManagements?date=\(today)&limit=50"),
        ("board, name 김민…", "/patientManagements?name=%EA%B9%80%EB%AF%BC&limit=50"),
        ("board, status", "/patientManagements?status=RECEIVED&limit=50"),
        ("receptions, today", "/receptions?date=\(today)&limit=50"),
        ("worklist, waiting", "/diagnoses?status=WAITING&limit=50"),
        ("exams, requested", "/examinations?status=REQUESTED&limit=50"),
    ]
    static let listSamples = 50

    private static var today: String {
        let formatter = DateFormatter()
        formatter.timeZone = TimeZone(identifier: "Asia/Seoul")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: Date())
    }

    static func sample(_ name: String, history: Int) -> String { "\(name), \(history) visits" }

    func measureLists(history: Int) async throws {
        for (name, path) in Self.lists {
            for _ in 0..<Self.listSamples {
                let started = ContinuousClock.now
                let (status, _) = try await send(.GET, path)
                guard status == 200 else { throw BenchFailure(description: "\(path) answered \(status)") }
                stats.record(Self.sample(name, history: history), started.duration(to: .now))
            }
        }
    }

    func waitUntilBoardHas(atLeast count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(3600)
        while ContinuousClock.now < deadline {
            // The count stops at 1,000: look for the count-th visit instead.
            let (_, board) = try await send(.GET, "/patientManagements?limit=1&offset=\(count - 1)")
            if !((board["items"] as? [[String: Any]]) ?? []).isEmpty { return }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// A new exam (registered, ordered) and a result file of `bytes` bytes attached to it.
    func attachFile(bytes: Int) async throws {
        let receptionId = try await register()
        let worklist = try await self.await("registered → worklist", since: .now, "/diagnoses?receptionId=\(receptionId)") {
            !(($0["items"] as? [[String: Any]]) ?? []).isEmpty
        }
        let diagnosisId = ((worklist["items"] as? [[String: Any]])?.first?["id"] as? String) ?? ""
        let (prescribed, _) = try await send(
            .POST, "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": "XR", "name": "흉부 X선"]]])
        guard prescribed == 200 else { throw BenchFailure(description: "prescription answered \(prescribed)") }
        let exams = try await self.await("prescribed → exam list", since: .now, "/examinations?diagnosisId=\(diagnosisId)") {
            !(($0["items"] as? [[String: Any]]) ?? []).isEmpty
        }
        let examId = ((exams["items"] as? [[String: Any]])?.first?["id"] as? String) ?? ""
        // A PNG signature, then bytes of its own (every file a different one).
        var body = ByteBuffer(bytes: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var generator = SystemRandomNumberGenerator()
        body.writeBytes((0..<(bytes - 8) / 8).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64, Array.init) })
        var request = HTTPClientRequest(url: base.absoluteString + "/examinations/\(examId)/attachments")
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer \(tokens[.examiner] ?? "")")
        request.headers.add(name: "content-type", value: "image/png")
        request.headers.add(name: "content-disposition", value: "attachment; filename=\"bench.png\"")
        request.body = .bytes(body)
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(300))
        _ = try await response.body.collect(upTo: 1 << 20)
        guard response.status.code == 201 else {
            throw BenchFailure(description: "an upload answered \(response.status.code)")
        }
    }

    /// One whole visit (or only its registration); returns the reception id.
    func visit(registrationOnly: Bool) async throws -> String {
        let receptionId = try await register()
        if registrationOnly { return receptionId }
        var since = ContinuousClock.now
        let worklist = try await self.await(
            "registered → worklist", since: since, "/diagnoses?receptionId=\(receptionId)"
        ) {
            !(($0["items"] as? [[String: Any]]) ?? []).isEmpty
        }
        let diagnosisId = ((worklist["items"] as? [[String: Any]])?.first?["id"] as? String) ?? ""
        let (prescribed, _) = try await send(
            .POST, "/diagnoses/\(diagnosisId)/prescriptions", ["examinations": [["code": "CBC", "name": "혈액검사"]]])
        guard prescribed == 200 else { throw BenchFailure(description: "prescription answered \(prescribed)") }
        since = .now
        let exams = try await self.await(
            "prescribed → exam list", since: since, "/examinations?diagnosisId=\(diagnosisId)"
        ) {
            !(($0["items"] as? [[String: Any]]) ?? []).isEmpty
        }
        let examId = ((exams["items"] as? [[String: Any]])?.first?["id"] as? String) ?? ""
        let (performed, _) = try await send(.POST, "/examinations/\(examId)/perform", ["result": "정상"])
        guard performed == 200 else { throw BenchFailure(description: "perform answered \(performed)") }
        since = .now
        _ = try await self.await("performed → EXAM_DONE", since: since, "/diagnoses/\(diagnosisId)") {
            $0["status"] as? String == "EXAM_DONE"
        }
        let (completed, _) = try await send(.POST, "/diagnoses/\(diagnosisId)/complete", ["note": "이상 없음"])
        guard completed == 200 else { throw BenchFailure(description: "completion answered \(completed)") }
        since = .now
        _ = try await self.await("completed → board", since: since, "/patientManagements/\(receptionId)") {
            $0["status"] as? String == "COMPLETED"
        }
        return receptionId
    }
}

/// `hospital bench --serve --measure-backup`: registrations at the bench's concurrency, first
/// 1,000 alone, then for as long as `hospital backup` (encrypted, in another process) runs on the
/// served data directory; the backup's own report, and both latencies, side by side.
enum BackupMeasurement {
    static func run(binary: URL, dataDirectory: URL, client: BenchClient, concurrency: Int, pids: [Int32]) async throws {
        let scratch = dataDirectory.deletingLastPathComponent().appendingPathComponent(
            "\(dataDirectory.lastPathComponent)-backups")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let keyFile = scratch.appendingPathComponent("key")
        try Data(BackupKey.random().utf8).write(to: keyFile)
        let timings = Stats()
        @Sendable func register(_ name: String) async throws {
            let started = ContinuousClock.now
            _ = try await client.register()
            timings.record(name, started.duration(to: .now))
        }
        try await Load.run(count: 1000, concurrency: concurrency) { _ in try await register("before") }

        let backup = Process()
        backup.executableURL = binary
        backup.arguments = [
            "backup", "--data-dir", dataDirectory.path, "--to", scratch.appendingPathComponent("backups").path,
            "--key-file", keyFile.path,
        ]
        let output = Pipe()
        backup.standardOutput = output
        let cpuBefore = pids.map(ProcStat.cpuSeconds).reduce(0, +)
        let started = ContinuousClock.now
        let running = RunningFlag()
        backup.terminationHandler = { _ in running.value.store(false, ordering: .relaxed) }
        try backup.run()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while running.value.load(ordering: .relaxed) { try await register("during") }
                }
            }
            try await group.waitForAll()
        }
        backup.waitUntilExit()
        let elapsed = started.duration(to: .now).seconds
        let serverCPU = pids.map(ProcStat.cpuSeconds).reduce(0, +) - cpuBefore
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        print(report, terminator: "")
        guard backup.terminationStatus == 0 else { throw BenchFailure(description: "the backup failed") }
        print(String(format: "backup ran %.1f s beside the load; the server used %.1f s of CPU meanwhile", elapsed, serverCPU))
        for phase in ["before", "during"] {
            print(
                "registration latency ms \(phase.padding(toLength: 7, withPad: " ", startingAt: 0)) "
                    + "p50 \(timings.percentile(phase, 50))  p99 \(timings.percentile(phase, 99))  "
                    + "(\(timings.samples(phase).count) registrations)")
        }
        print("errors: \(client.stats.errors) (5xx: \(client.stats.serverErrors))")
        if client.stats.serverErrors > 0 { throw ExitCode(1) }
    }
}

/// Whether the measured backup still runs (its process's termination handler clears it).
private final class RunningFlag: Sendable {
    let value = Atomic(true)
}


/// The registry's patients a benchmark registers visits of, and the requests it took to make them.
final class PatientPool: Sendable {
    private let state = Mutex<(ids: [String], requests: Int)>(([], 0))

    func add(_ id: String) { state.withLock { $0.ids.append(id) } }
    func any() -> String? { state.withLock { $0.ids.randomElement() } }
    func counted(_ requests: Int) { state.withLock { $0.requests += requests } }
    var requests: Int { state.withLock { $0.requests } }
    var count: Int { state.withLock { $0.ids.count } }
}
