import Foundation
import Identity
import Messaging
import Prometheus
import Synchronization
import Vapor

/// The metrics of one service (or the gateway), on its own port's `/metrics`: a Prometheus
/// registry of its own, so that with several services in one process each port shows its own,
/// every series labelled `service`. Names follow the OpenTelemetry semantic conventions where
/// there is one (`http_server_request_duration_seconds`, `process_*`), `hospital_*` otherwise.
public final class ServiceMetrics: Sendable, MessagingObserver {
    public let service: String
    public let registry = PrometheusCollectorRegistry()
    private let activeRequests: Gauge
    private let published: Counter
    private let requestHistograms = Mutex<[RequestKey: DurationHistogram]>([:])
    private let eventCounters = Mutex<[EventKey: Counter]>([:])
    private let delayHistograms = Mutex<[EventKey: DurationHistogram]>([:])
    private let retryCounters = Mutex<[EventKey: Counter]>([:])
    private let scrapeHooks = Mutex<[@Sendable (ServiceMetrics) async -> Void]>([])
    private let process: ProcessMetrics

    /// The OpenTelemetry advice for HTTP server durations, in seconds.
    static let requestBuckets: [Duration] = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    ].map { Duration.milliseconds(Int64($0 * 1000)) }
    /// From a few milliseconds to two hours: a patient's waits, and other waits in minutes.
    static let waitBuckets: [Duration] = [
        0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
    ].map { Duration.milliseconds(Int64($0 * 1000)) }
    /// An event's hop from one service to the next: fine where a working system's hops are
    /// (milliseconds to a second; a quantile is interpolated within its bucket), then up to the
    /// hours of a backlog delivered after an outage.
    static let hopBuckets: [Duration] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 7200,
    ].map { Duration.milliseconds(Int64($0 * 1000)) }

    public init(service: String) {
        self.service = service
        activeRequests = registry.makeGauge(
            descriptor: Self.name("http_server_active_requests", "HTTP requests being served now."),
            labels: [("service", service)])
        published = registry.makeCounter(
            descriptor: Self.name("hospital_events_published_total", "Events the outbox relay published."),
            labels: [("service", service)])
        process = ProcessMetrics(registry: registry, service: service)
    }

    static func name(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    // MARK: HTTP

    struct RequestKey: Hashable {
        var method: String
        var route: String
        var status: UInt
    }

    func requestFinished(method: String, route: String, status: UInt, nanoseconds: Int64) {
        let key = RequestKey(method: method, route: route, status: status)
        let histogram = requestHistograms.withLock { cache in
            if let known = cache[key] { return known }
            let made = registry.makeDurationHistogram(
                descriptor: Self.name(
                    "http_server_request_duration_seconds", "Duration of HTTP server requests, by route template."),
                labels: [
                    ("service", service), ("http_request_method", method), ("http_route", route),
                    ("http_response_status_code", String(status)),
                ],
                buckets: Self.requestBuckets)
            cache[key] = made
            return made
        }
        histogram.recordNanoseconds(nanoseconds)
    }

    func requestStarted() { activeRequests.increment() }
    func requestEnded() { activeRequests.decrement() }

    // MARK: Messaging

    struct EventKey: Hashable {
        var group: String
        var type: String
        var outcome: String
    }

    public func eventHandled(group: String, type: String, outcome: EventConsumer.Outcome, sinceOccurred: TimeInterval?) {
        let key = EventKey(group: group, type: type, outcome: outcome.label)
        cachedCounter(key, in: eventCounters) {
            registry.makeCounter(
                descriptor: Self.name(
                    "hospital_events_handled_total", "Events a consumer group took, by type and outcome."),
                labels: [
                    ("service", service), ("consumer_group", group), ("event_type", type), ("outcome", outcome.label),
                ])
        }.increment()
        guard let sinceOccurred, outcome == .handled else { return }
        let delayKey = EventKey(group: group, type: type, outcome: "")
        let histogram = delayHistograms.withLock { cache in
            if let known = cache[delayKey] { return known }
            let made = registry.makeDurationHistogram(
                descriptor: Self.name(
                    "hospital_event_handling_delay_seconds",
                    "From an event's occurredAt to its handling by a consumer group."),
                labels: [("service", service), ("consumer_group", group), ("event_type", type)],
                buckets: Self.hopBuckets)
            cache[delayKey] = made
            return made
        }
        histogram.recordNanoseconds(Int64(max(0, sinceOccurred) * 1e9))
    }

    public func eventRetried(group: String, type: String) {
        cachedCounter(EventKey(group: group, type: type, outcome: ""), in: retryCounters) {
            registry.makeCounter(
                descriptor: Self.name("hospital_event_retries_total", "Failed attempts at an event that were retried."),
                labels: [("service", service), ("consumer_group", group), ("event_type", type)])
        }.increment()
    }

    public func eventsPublished(_ count: Int) {
        published.increment(by: Int64(count))
    }

    private func cachedCounter(_ key: EventKey, in cache: borrowing Mutex<[EventKey: Counter]>, make: () -> Counter)
        -> Counter
    {
        cache.withLock { cache in
            if let known = cache[key] { return known }
            let made = make()
            cache[key] = made
            return made
        }
    }

    // MARK: Values read when scraped

    /// A gauge of this service, labelled with `labels` besides `service`.
    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Gauge {
        registry.makeGauge(descriptor: Self.name(name, help), labels: [("service", service)] + labels)
    }

    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Counter {
        registry.makeCounter(descriptor: Self.name(name, help), labels: [("service", service)] + labels)
    }

    public func histogram(_ name: String, help: String, labels: [(String, String)] = []) -> DurationHistogram {
        registry.makeDurationHistogram(
            descriptor: Self.name(name, help), labels: [("service", service)] + labels, buckets: Self.waitBuckets)
    }

    /// Runs before every scrape, to set gauges that are read rather than counted (an outbox's
    /// backlog, a consumer's lag).
    public func onScrape(_ hook: @escaping @Sendable (ServiceMetrics) async -> Void) {
        scrapeHooks.withLock { $0.append(hook) }
    }

    /// The exposition: every hook run, then the registry in the text format.
    public func exposition() async -> [UInt8] {
        process.update()
        for hook in scrapeHooks.withLock({ $0 }) { await hook(self) }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(32 * 1024)
        registry.emit(into: &buffer)
        return buffer
    }

    /// `GET <path>`: the exposition, for Prometheus (no patient data in it; public like the probes).
    public func register(on routes: any RoutesBuilder, path: String) {
        let components = path.split(separator: "/").map { PathComponent(stringLiteral: String($0)) }
        routes.get(components) { [self] _ async -> Response in
            var headers = HTTPHeaders()
            headers.replaceOrAdd(name: .contentType, value: "text/plain; version=0.0.4; charset=utf-8")
            headers.replaceOrAdd(name: .cacheControl, value: "no-store")
            return Response(status: .ok, headers: headers, body: .init(data: Data(await exposition())))
        }
    }
}

/// Counts every request by method, route template and status, and the requests in flight.
/// Outermost, so it sees the status the client got. A route's label is its template
/// (`/receptions/:id`), never a path with ids in it.
public struct MetricsMiddleware: Middleware {
    let metrics: ServiceMetrics

    public init(metrics: ServiceMetrics) { self.metrics = metrics }

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        let start = DispatchTime.now().uptimeNanoseconds
        metrics.requestStarted()
        return next.respond(to: request).always { result in
            metrics.requestEnded()
            let status: UInt
            switch result {
            case .success(let response): status = response.status.code
            case .failure(let error): status = (error as? any AbortError)?.status.code ?? 500
            }
            metrics.requestFinished(
                method: request.method.rawValue, route: Self.route(of: request), status: status,
                nanoseconds: Int64(DispatchTime.now().uptimeNanoseconds - start))
        }
    }

    /// The API's template for the path (the gateway proxies with wildcards, so it is asked
    /// first), else the matched route's own, else `unmatched`.
    public static func route(of request: Request) -> String {
        if let template = request.apiTemplate { return template }
        if let route = request.route {
            return "/" + route.path.map { component -> String in
                switch component {
                case .constant(let name): name
                case .parameter(let name): ":" + name
                case .anything: "*"
                case .catchall: "**"
                }
            }.joined(separator: "/")
        }
        return "unmatched"
    }
}

/// Resident memory, CPU time, open files and start time of this process, from `/proc`: the
/// names the Prometheus client libraries use.
final class ProcessMetrics: Sendable {
    private let resident: Gauge
    private let virtual: Gauge
    private let cpu: Counter
    private let openFiles: Gauge
    private let maxFiles: Gauge
    private let startTime: Gauge
    private let lastCPU = Mutex<Double>(0)
    private static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private static let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))

    init(registry: PrometheusCollectorRegistry, service: String) {
        let labels = [("service", service)]
        resident = registry.makeGauge(
            descriptor: ServiceMetrics.name("process_resident_memory_bytes", "Resident memory size in bytes."),
            labels: labels)
        virtual = registry.makeGauge(
            descriptor: ServiceMetrics.name("process_virtual_memory_bytes", "Virtual memory size in bytes."),
            labels: labels)
        cpu = registry.makeCounter(
            descriptor: ServiceMetrics.name("process_cpu_seconds_total", "User and system CPU time spent, in seconds."),
            labels: labels)
        openFiles = registry.makeGauge(
            descriptor: ServiceMetrics.name("process_open_fds", "Open file descriptors."), labels: labels)
        maxFiles = registry.makeGauge(
            descriptor: ServiceMetrics.name("process_max_fds", "The most open file descriptors allowed."),
            labels: labels)
        startTime = registry.makeGauge(
            descriptor: ServiceMetrics.name(
                "process_start_time_seconds", "When the process started, in seconds since the Unix epoch."),
            labels: labels)
        startTime.set(Date().timeIntervalSince1970 - ProcessInfo.processInfo.systemUptime + Self.startedAfterBoot())
    }

    func update() {
        #if os(Linux)
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            // Fields after the command name: state is field 3; utime 14, stime 15, vsize 23, rss 24.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 22, let utime = Double(fields[11]), let stime = Double(fields[12]),
                let vsize = Double(fields[20]), let rss = Double(fields[21])
            {
                let total = (utime + stime) / Self.ticksPerSecond
                let delta = lastCPU.withLock { last -> Double in
                    defer { last = max(last, total) }
                    return max(0, total - last)
                }
                if delta > 0 { cpu.increment(by: delta) }
                virtual.set(vsize)
                resident.set(rss * Self.pageSize)
            }
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            openFiles.set(Double(entries.count))
        }
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 { maxFiles.set(Double(limit.rlim_cur)) }
        #endif
    }

    /// Seconds from boot to this process's start (field 22 of /proc/self/stat, in ticks).
    private static func startedAfterBoot() -> Double {
        #if os(Linux)
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 19, let ticks = Double(fields[19]) { return ticks / ticksPerSecond }
        }
        #endif
        return ProcessInfo.processInfo.systemUptime
    }
}
