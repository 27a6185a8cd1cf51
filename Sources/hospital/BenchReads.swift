import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// What one request costs the server, request by request at a fixed concurrency: a read by id on
/// a service's own port (a visit that exists, audited; and one that does not, 404), the same
/// through the gateway, the health check beside them (the HTTP and middleware floor), and a
/// walk-in registration; then the same from a framework-free prototype (`BenchFloorServer`),
/// the floor under the framework. Server CPU per request is the process's CPU time from /proc
/// over the requests: steadier than wall time on a machine whose client shares the cores.
enum ReadMeasurement {
    struct Figures {
        var perSecond: Double
        var cpuMicroseconds: Double
        var p50: Double
        var p99: Double
    }

    static func run(
        count: Int, concurrency: Int, gateway: URL, reception: URL, token: String?, known: String, pids: [Int32],
        floor: (port: Int, dataDirectory: URL)? = nil
    ) async throws {
        let unknown = UUID().uuidString.lowercased()
        let cases: [(String, URL, String, Bool)] = [
            ("GET /health/live, reception's port", reception, "/health/live", false),
            ("GET /receptions/{id} unknown (404), reception's port", reception, "/receptions/\(unknown)", true),
            ("GET /receptions/{id} known (audited), reception's port", reception, "/receptions/\(known)", true),
            ("GET /receptions/{id} known, through the gateway", gateway, "/receptions/\(known)", true),
        ]
        print("requests one by one, \(count) each at concurrency \(concurrency):")
        for (name, base, path, authorized) in cases {
            try await report(name, count: count, concurrency: concurrency, url: base.absoluteString + path,
                token: authorized ? token : nil, pids: pids)
        }
        // A registration as the desk's walk-in form sends it (a new patient in the same request).
        let registration = #"{"patientName":"측정환자","department":"내과"}"#
        try await report(
            "POST /receptions (walk-in), reception's port", count: count, concurrency: concurrency,
            url: reception.absoluteString + "/receptions", token: token, pids: pids, body: registration)
        guard let floor else { return }
        // The same reads from a framework-free prototype (`bench-floor-server`) on reception's file.
        let prototype = Process()
        prototype.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        prototype.arguments = [
            "bench-floor-server", "--port", "\(floor.port)",
            "--database", floor.dataDirectory.appendingPathComponent("reception.sqlite").path,
            "--scratch", floor.dataDirectory.appendingPathComponent("floor-prototype.sqlite").path,
        ]
        prototype.standardOutput = FileHandle.nullDevice
        try prototype.run()
        defer { prototype.terminate() }
        let base = "http://127.0.0.1:\(floor.port)"
        try await waitUntilAnswering(base + "/health/live")
        print("the same from a framework-free prototype (SwiftNIO alone, no sign-in, audit or metrics):")
        for (name, path) in [
            ("GET /health/live, prototype", "/health/live"),
            ("GET /receptions/{id} unknown (404), prototype", "/receptions/\(unknown)"),
            ("GET /receptions/{id} known, prototype", "/receptions/\(known)"),
        ] {
            try await report(name, count: count, concurrency: concurrency, url: base + path, token: token,
                pids: [prototype.processIdentifier])
        }
        try await report(
            "POST /receptions, prototype (a row and its event)", count: count, concurrency: concurrency,
            url: base + "/receptions", token: token, pids: [prototype.processIdentifier], body: registration)
    }

    private static func report(
        _ name: String, count: Int, concurrency: Int, url: String, token: String?, pids: [Int32], body: String? = nil
    ) async throws {
        let figures = try await measure(
            count: count, concurrency: concurrency, url: url, token: token, pids: pids, body: body)
        print(
            "  \(name.padding(toLength: 56, withPad: " ", startingAt: 0))"
                + String(
                    format: "%7.0f req/s  %5.0f µs server CPU each  p50 %.2f ms  p99 %.2f ms", figures.perSecond,
                    figures.cpuMicroseconds, figures.p50, figures.p99))
    }

    private static func waitUntilAnswering(_ url: String) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            do {
                _ = try await send(HTTPClientRequest(url: url))
                return
            } catch where ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// With `body`, a POST of that JSON.
    static func measure(
        count: Int, concurrency: Int, url: String, token: String?, pids: [Int32], body: String? = nil
    ) async throws -> Figures {
        var request = HTTPClientRequest(url: url)
        if let body {
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        let template = request
        // Warm: connections open, statements and caches at work.
        try await Load.run(count: concurrency * 20, concurrency: concurrency) { _ in _ = try await send(template) }
        let stats = Stats()
        let cpuBefore = pids.map(ProcStat.cpuSeconds).reduce(0, +)
        let started = ContinuousClock.now
        try await Load.run(count: count, concurrency: concurrency) { _ in
            let sent = ContinuousClock.now
            _ = try await send(template)
            stats.record("read", sent.duration(to: .now))
        }
        let elapsed = started.duration(to: .now).seconds
        let cpu = pids.map(ProcStat.cpuSeconds).reduce(0, +) - cpuBefore
        let sorted = stats.samples("read").sorted()
        return Figures(
            perSecond: Double(count) / elapsed, cpuMicroseconds: cpu * 1e6 / Double(count),
            p50: sorted[sorted.count / 2], p99: sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
    }

    private static func send(_ request: HTTPClientRequest) async throws -> Int {
        // The views' client (a connection for every caller): the shared one opens at most 8 to
        // a host and queues the rest, which would measure the client.
        let response = try await LiveViewMeasurement.client.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
        let status = Int(response.status.code)
        guard status == 200 || status == 201 || status == 404 else {
            throw BenchFailure(description: "\(request.url) answered \(status)")
        }
        return status
    }
}
