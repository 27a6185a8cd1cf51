/// Who works with the system. Every signed-in user has exactly one role.
public enum Role: String, Sendable, Codable, CaseIterable, Comparable {
    /// 원무과: registers patients and visits, cancels visits, reads receptions and the board.
    case desk
    /// 의사: reads the worklist and patients, prescribes, completes, rejects.
    case doctor
    /// 검사자: reads exams, performs and cancels them.
    case examiner
    /// 관리자: accounts, audit trail, dead letters, replay, rebuild.
    case admin
    /// 대기실 현황판: a waiting-room screen; reads its department's display and nothing else.
    case display

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// The role table: which roles may call which operation. The one place it is written; the
/// gateway, every service port and the screens consult it, and the README shows it.
///
/// Anything not listed here is refused to every role (403), and to anyone not signed in (401),
/// except the public operations (`publicOperations`).
public enum AccessPolicy {
    public struct Rule: Sendable, Hashable {
        public var method: String
        /// The route template, components separated by `/`, parameters as `:name`.
        public var path: String
        public var roles: Set<Role>
    }

    public static let rules: [Rule] = [
        // reception
        .init(method: "POST", path: "/receptions", roles: [.desk]),
        .init(method: "GET", path: "/receptions", roles: [.desk]),
        .init(method: "POST", path: "/receptions/search", roles: [.desk]),
        .init(method: "GET", path: "/receptions/:id", roles: [.desk, .doctor]),
        .init(method: "POST", path: "/receptions/:id/cancel", roles: [.desk]),
        // Minimum necessary: a doctor outside the visit's department states a reason (recorded).
        .init(method: "POST", path: "/receptions/:id/contact", roles: [.doctor]),
        .init(method: "POST", path: "/receptions/:id/priority", roles: [.desk]),
        .init(method: "GET", path: "/admin/contact-disclosures", roles: [.admin]),
        // the patient registry (reception's): the desk registers, searches and corrects; a
        // doctor reads without contact details, an examiner name, chart number, age and sex.
        .init(method: "POST", path: "/patients", roles: [.desk]),
        .init(method: "POST", path: "/patients/search", roles: [.desk]),
        // The chart numbers beside the names on the board and the worklists.
        .init(method: "POST", path: "/patients/lookup", roles: [.desk, .doctor, .examiner]),
        .init(method: "GET", path: "/patients/:id", roles: [.desk, .doctor, .examiner]),
        .init(method: "PATCH", path: "/patients/:id", roles: [.desk]),
        .init(method: "POST", path: "/patients/:id/merge", roles: [.admin]),
        // diagnosis
        .init(method: "GET", path: "/diagnoses", roles: [.doctor]),
        .init(method: "GET", path: "/diagnoses/:id", roles: [.doctor]),
        .init(method: "GET", path: "/diagnoses/:id/history", roles: [.doctor]),
        .init(method: "POST", path: "/diagnoses/:id/prescriptions", roles: [.doctor]),
        .init(method: "POST", path: "/diagnoses/:id/complete", roles: [.doctor]),
        .init(method: "POST", path: "/diagnoses/:id/reject", roles: [.doctor]),
        .init(method: "GET", path: "/diagnoses/queue", roles: [.doctor]),
        .init(method: "GET", path: "/diagnoses/queue/live", roles: [.doctor]),
        .init(method: "GET", path: "/diagnoses/live", roles: [.doctor]),
        // The waiting-room display: masked names and queue numbers only.
        .init(method: "GET", path: "/displays/:department", roles: [.desk, .display]),
        .init(method: "GET", path: "/displays/:department/events", roles: [.desk, .display]),
        .init(method: "POST", path: "/diagnoses/:id/call", roles: [.doctor]),
        .init(method: "POST", path: "/diagnoses/:id/start", roles: [.doctor]),
        .init(method: "POST", path: "/diagnoses/:id/no-show", roles: [.doctor]),
        .init(method: "POST", path: "/diagnoses/:id/undo", roles: [.doctor]),
        // examination
        .init(method: "GET", path: "/examinations", roles: [.examiner]),
        .init(method: "GET", path: "/examinations/live", roles: [.examiner]),
        .init(method: "GET", path: "/examinations/queue", roles: [.examiner]),
        .init(method: "POST", path: "/examinations/:id/call", roles: [.examiner]),
        .init(method: "POST", path: "/examinations/:id/start", roles: [.examiner]),
        .init(method: "POST", path: "/examinations/:id/no-show", roles: [.examiner]),
        .init(method: "POST", path: "/examinations/:id/undo", roles: [.examiner]),
        .init(method: "GET", path: "/examinations/:id", roles: [.examiner]),
        .init(method: "POST", path: "/examinations/:id/perform", roles: [.examiner]),
        .init(method: "POST", path: "/examinations/:id/cancel", roles: [.examiner]),
        .init(method: "POST", path: "/examinations/:id/attachments", roles: [.examiner]),
        .init(method: "GET", path: "/examinations/:id/attachments", roles: [.doctor, .examiner]),
        .init(method: "GET", path: "/examinations/:id/attachments/:attachmentId", roles: [.doctor, .examiner]),
        // the desk's board
        .init(method: "GET", path: "/patientManagements", roles: [.desk]),
        .init(method: "GET", path: "/patientManagements/waits", roles: [.desk]),
        .init(method: "GET", path: "/patientManagements/waits/live", roles: [.desk]),
        .init(method: "GET", path: "/patientManagements/live", roles: [.desk]),
        .init(method: "GET", path: "/patientManagements/:receptionId", roles: [.desk, .doctor]),
        // operations
        .init(method: "GET", path: "/admin/dead-letters", roles: [.admin]),
        .init(method: "POST", path: "/admin/devices", roles: [.admin]),
        .init(method: "GET", path: "/admin/clinic", roles: [.admin]),
        .init(method: "PUT", path: "/admin/clinic", roles: [.admin]),
        .init(method: "GET", path: "/admin/devices", roles: [.admin]),
        .init(method: "POST", path: "/admin/dead-letters/:id/replay", roles: [.admin]),
        .init(method: "POST", path: "/admin/patientManagements/rebuild", roles: [.admin]),
        .init(method: "GET", path: "/admin/audit", roles: [.admin]),
        .init(method: "GET", path: "/admin/sessions", roles: [.admin]),
        .init(method: "POST", path: "/admin/sessions/end", roles: [.admin]),
    ]

    /// Operations anyone may call: probes, the API description, signing in and the keys that
    /// verify tokens, and the clinic layout the processes work by (rooms, never a patient).
    public static let publicOperations: Set<String> = [
        "GET /health/live", "GET /health/ready", "GET /openapi.yaml", "POST /auth/token", "GET /auth/revocations",
        "GET /clinic/layout",
        "GET /.well-known/jwks.json", "GET /.well-known/openid-configuration",
    ]

    public enum Decision: Equatable, Sendable {
        /// Anyone may call it.
        case open
        /// These roles may call it.
        case roles(Set<Role>)
        /// No rule names it: refused to everyone signed in.
        case unlisted
    }

    /// What the table says of `method` on the route template `path` (e.g. `/receptions/:id`).
    public static func decision(method: String, path: String) -> Decision {
        let key = "\(method == "HEAD" ? "GET" : method) \(path)"
        if publicOperations.contains(key) { return .open }
        if let rule = index[key] { return .roles(rule.roles) }
        return .unlisted
    }

    /// What the table says of a request for the concrete `path` (e.g. `/receptions/1b4e…`): the
    /// template it matches, a constant component before a parameter (`/receptions/search`
    /// before `/receptions/:id`).
    public static func decision(method: String, requestPath path: String) -> Decision {
        guard let template = template(of: path) else { return .unlisted }
        return decision(method: method, path: template)
    }

    /// The template among the table's (and the public operations') that `path` matches.
    public static func template(of path: String) -> String? {
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        var best: (template: String, parameters: Int)?
        for (template, parts) in templates where parts.count == components.count {
            var parameters = 0
            var matches = true
            for (part, component) in zip(parts, components) {
                if part.hasPrefix(":") {
                    parameters += 1
                } else if part != component {
                    matches = false
                    break
                }
            }
            if matches, parameters < (best?.parameters ?? .max) { best = (template, parameters) }
        }
        return best?.template
    }

    private static let templates: [(String, [Substring])] = Set(
        rules.map(\.path) + publicOperations.map { String($0.split(separator: " ")[1]) }
    ).map { ($0, $0.split(separator: "/")) }

    /// Whether `role` may call `method` on `path`.
    public static func allows(_ role: Role?, method: String, path: String) -> Bool {
        switch decision(method: method, path: path) {
        case .open: true
        case .roles(let roles): role.map(roles.contains) ?? false
        case .unlisted: false
        }
    }

    private static let index: [String: Rule] = Dictionary(
        uniqueKeysWithValues: rules.map { ("\($0.method) \($0.path)", $0) })
}
