import Foundation
import Vapor

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
