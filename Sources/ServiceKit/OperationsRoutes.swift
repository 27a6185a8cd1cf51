import Foundation
import Logging
import Vapor

import Synchronization

/// Whether a process still takes traffic: set when it begins to stop, so `/health/ready` turns
/// 503 while in-flight requests finish and the load balancer moves on.
///
/// Also unready while one of the process's long-running loops (a relay, a consumer, …) has ended
/// unexpectedly and waits to be started again.
public final class Readiness: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let stopped = Mutex<[String: String]>([:])

    public init() {}

    public var isStopping: Bool { stopping.load(ordering: .relaxed) }

    public func beginStopping() { stopping.store(true, ordering: .relaxed) }

    /// `loop` ended by itself (`reason`) and is not running until `loopRunning`.
    public func loopStopped(_ loop: String, reason: String) { stopped.withLock { $0[loop] = reason } }

    public func loopRunning(_ loop: String) { _ = stopped.withLock { $0.removeValue(forKey: loop) } }

    /// Throws while stopping, or while a loop is down.
    public func check() throws {
        if isStopping { throw AppError.notReady("Shutting down: finishing the requests in flight.") }
        if let down = stopped.withLock({ $0.min { $0.key < $1.key } }) {
            throw AppError.notReady("\(down.key) stopped (\(down.value)) and is being started again.")
        }
    }
}

/// A SQLite database file that must stay where and what it was: deleted, replaced, made
/// read-only or immutable means the service can no longer keep what it accepts. Its writes check
/// it before and after each transaction (a write that lands in a file that is gone is answered
/// 503, never 201), and so does readiness; the first time it fails, one log line says what
/// happened and what the operator must do.
public final class DatabaseFile: Sendable {
    public let path: String
    private let inode: UInt64?
    private let logger: Logger?
    private let reported = Atomic<Bool>(false)

    public init(path: String, logger: Logger? = nil) {
        self.path = path
        self.logger = logger
        var info = stat()
        inode = stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    public func check() throws {
        var info = stat()
        let problem: String?
        if stat(path, &info) != 0 {
            problem = "The database file is gone: \(path)."
        } else if let inode, UInt64(info.st_ino) != inode {
            problem = "The database file was replaced under the running service: \(path)."
        } else if info.st_mode & S_IWUSR == 0 || access(path, W_OK) != 0 {
            // (access also refuses a file made immutable, which its mode does not show.)
            problem = "The database file is read-only: \(path)."
        } else {
            problem = nil
        }
        guard let problem else { return }
        if !reported.exchange(true, ordering: .relaxed) {
            logger?.critical(
                "\(problem) Writes are refused (503) from now on. Restart the service once the file is back (restored, or writable again): it reopens the file and catches up from the event log."
            )
        }
        throw AppError.notReady(problem)
    }
}

/// Routes every process answers: liveness, readiness and the API description.
public enum OperationsRoutes {
    /// - Parameter ready: throws (with a reason) when the process should not get traffic.
    public static func register(on routes: any RoutesBuilder, ready: @escaping @Sendable () async throws -> Void) {
        routes.get("health", "live") { _ in HealthStatus(status: "ok") }
        routes.get("health", "ready") { _ async throws -> HealthStatus in
            do {
                try await ready()
            } catch let error as AppError {
                throw error
            } catch {
                throw AppError.notReady("Not ready: \(error)")
            }
            return HealthStatus(status: "ok")
        }
        routes.get("openapi.yaml") { _ in
            var headers = HTTPHeaders()
            headers.contentType = HTTPMediaType(type: "application", subType: "yaml")
            return Response(status: .ok, headers: headers, body: .init(string: openAPIDocument))
        }
    }

    /// The OpenAPI 3.1 description of the whole API, compiled into the binary.
    public static let openAPIDocument = String(decoding: PackageResources.openapi_yaml, as: UTF8.self)
}

public struct HealthStatus: Content {
    public var status: String
}
