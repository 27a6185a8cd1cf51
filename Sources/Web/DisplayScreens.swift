import Foundation
import HTTPProxy
import Vapor

/// 대기실 현황판: a page for a TV in the waiting room, signed in as a `display` account. It gets
/// the department's display pushed (server-sent events through this gateway) and shows masked
/// names only, as the board service gives them.
extension WebScreens {
    /// Which department to show: one link each.
    @Sendable func displayChoice(_ req: Request) async throws -> Response {
        let screen = Screen(req, timeZone: timeZone)
        let links = departments.map { department -> [String: Any] in
            ["name": department, "href": "/display/" + (department.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "")]
        }
        return render("home", screen.context(title: screen.t("displayTitle"), ["departments": links, "hasDepartments": !links.isEmpty]))
    }

    /// The display of one department, full screen.
    @Sendable func display(_ req: Request) async throws -> Response {
        guard let department = req.parameters.get("department"), departments.contains(department) else {
            throw Abort(.notFound)
        }
        let screen = Screen(req, timeZone: timeZone)
        return render(
            "display",
            screen.context(
                title: "\(screen.t("displayTitle")) · \(department)",
                [
                    "department": department,
                    "events": "/display/" + (department.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "")
                        + "/events",
                ]))
    }

    /// The stream, as the user's session may read it: the board service's, passed through.
    @Sendable func displayEvents(_ req: Request) async throws -> Response {
        guard let department = req.parameters.get("department"), departments.contains(department) else {
            throw Abort(.notFound)
        }
        let path = "/displays/" + (department.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "") + "/events"
        let upstream = try Self.upstream(of: "displays", in: upstreams)
        return try await StreamingProxy.forward(
            req, to: upstream.url, service: upstream.service, path: path, token: req.signedIn?.token)
    }
}
