import Logging
import Messaging
import ServiceKit
import ServiceLifecycle
import Vapor

/// A long-running loop of a process (a relay, a consumer, a sweep, a refresh): its body runs
/// until its task is canceled.
struct Loop: Sendable {
    /// Who it is in the logs and in `/health/ready` ("reception: outbox relay").
    let name: String
    let body: @Sendable () async throws -> Void
    /// Runs once the loop has stopped at a graceful shutdown (the audit trail's last entries);
    /// what it throws fails the stop.
    var finish: (@Sendable () async throws -> Void)?

    init(
        _ name: String, finish: (@Sendable () async throws -> Void)? = nil,
        body: @escaping @Sendable () async throws -> Void
    ) {
        self.name = name
        self.body = body
        self.finish = finish
    }
}

/// How soon a loop that ended unexpectedly is started again: `initial`, doubled after each end up
/// to `maximum`, and `initial` again once a run lasted `stable`. A consumer ends with an error on
/// some rebalances (a rolling restart makes several in a minute): a run of ten seconds counts as
/// recovered, so those restarts stay at one second.
struct Backoff: Sendable {
    var initial: Duration = .seconds(1)
    var maximum: Duration = .seconds(30)
    var stable: Duration = .seconds(10)
}

/// A `Loop` under supervision, as a swift-service-lifecycle `Service`. A body that returns or
/// throws before the process stops is logged, makes the process unready (`Readiness`) while it is
/// down, and is started again after a backoff. At a graceful shutdown the body is canceled, then
/// `finish` runs; its error is logged and thrown, so the service group fails the stop.
struct SupervisedLoop: Service, CustomStringConvertible {
    let loop: Loop
    let readiness: Readiness
    let logger: Logger
    var backoff = Backoff()

    var description: String { loop.name }

    func run() async throws {
        await cancelWhenGracefulShutdown { await supervise() }
        guard let finish = loop.finish else { return }
        do {
            try await finish()
        } catch {
            logger.critical("\(loop.name) did not finish its work at shutdown", metadata: ["error": "\(loggable(error))"])
            throw error
        }
    }

    /// Runs the body until canceled, starting it again whenever it ends by itself.
    func supervise() async {
        var delay = backoff.initial
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let ended: String
            do {
                try await loop.body()
                ended = "returned"
            } catch {
                ended = "\(loggable(error))"
            }
            if Task.isCancelled { return }
            if ContinuousClock.now - started >= backoff.stable { delay = backoff.initial }
            readiness.loopStopped(loop.name, reason: ended)
            logger.error(
                "\(loop.name) stopped unexpectedly; starting it again",
                metadata: ["ended": "\(ended)", "after": "\(delay)"])
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, backoff.maximum)
            readiness.loopRunning(loop.name)
        }
    }
}

/// An HTTP server as a `Service`: serving from before the group starts (the composition root
/// binds it, so the ports are known), it stops at a graceful shutdown, after the requests in
/// flight are answered.
struct HTTPServerService: Service, CustomStringConvertible {
    let name: String
    let app: Application
    /// Ends what would keep a connection open for ever (live views' streams).
    let stopping: @Sendable () async -> Void

    var description: String { "\(name): HTTP server" }

    func run() async throws {
        try? await gracefulShutdown()
        await stopping()
        await app.server.shutdown()
    }
}

/// The first step of a stop: `/health/ready` turns 503 while every server still answers, for
/// `delay`, so the load balancer (a Kubernetes Service's endpoints) stops sending new requests
/// before the servers stop.
struct Draining: Service, CustomStringConvertible {
    let readiness: Readiness
    let delay: Duration
    let logger: Logger

    var description: String { "draining" }

    func run() async throws {
        try? await gracefulShutdown()
        readiness.beginStopping()
        logger.notice("shutting down", metadata: ["unready for": "\(delay)"])
        if delay > .zero { try? await Task.sleep(for: delay) }
    }
}

extension ServiceGroupConfiguration.ServiceConfiguration {
    /// A member that must not end by itself: if it does (or throws), the group stops gracefully,
    /// and a throw during the stop fails it after every other member has stopped.
    static func member(_ service: any Service) -> Self {
        .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
              failureTerminationBehavior: .gracefullyShutdownGroup)
    }
}
