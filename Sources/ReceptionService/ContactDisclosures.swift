import FluentKit
import Foundation
import Prometheus
import ReceptionDomain
import SQLKit
import ServiceKit
import SharedKernel
import Storage
import Vapor

/// Minimum necessary: a visit's contact details (the phone number) are the desk's to read, and a
/// doctor's only for the departments they work in. Anyone else who needs them (a doctor covering
/// another department, calling back about a result) states a reason, and gets them once: the
/// disclosure is recorded here with who, when, which visit and why, for the administrator's
/// report (`GET /admin/contact-disclosures` on this service's port), counted in
/// `hospital_contact_disclosures_total` (an alert tells the administrator), and audited like
/// every read.
enum ContactDisclosures {
    static let table = "contact_disclosures"

    /// Whether `role` working in `departments` reads `visitDepartment`'s contact details as is.
    static func mayRead(role: String?, departments: [String], visitDepartment: String?) -> Bool {
        switch role {
        case "desk": true
        case "doctor": visitDepartment.map(departments.contains) ?? false
        default: false
        }
    }

    struct Create: AsyncMigration {
        var name: String { "R008_ContactDisclosures" }

        func prepare(on database: any Database) async throws {
            try await database.schema(ContactDisclosures.table)
                .id()
                .field("reception_id", .uuid, .required)
                .field("username", .string, .required)
                .field("role", .string, .required)
                .field("departments", .string, .required)
                .field("visit_department", .string)
                .field("reason", .string, .required)
                .field("disclosed_at", .datetime, .required)
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(ContactDisclosures.table).delete()
        }
    }

    struct Body: Decodable { var reason: String? }

    /// `POST /receptions/{id}/contact {reason}`: the answer.
    struct Contact: Content {
        var receptionId: UUID
        @Nullable var phone: String?
        /// Whether the caller could have read it anyway (their own department).
        var withinDepartment: Bool
    }

    /// One line of the administrator's report.
    struct Disclosure: Content {
        var id: UUID
        var receptionId: UUID
        var user: String
        var role: String
        var departments: [String]
        @Nullable var visitDepartment: String?
        var reason: String
        var disclosedAt: Date
    }

    struct Report: Content {
        var items: [Disclosure]
    }

    /// A reason a person wrote: 5 to 500 characters, like a cancellation's.
    static func reason(_ raw: String?) throws -> String {
        var v = FieldValidation()
        let text = v.required(raw, "reason", maxLength: 500, multiline: true)
        if v.failures.isEmpty, text.count < 5 {
            v.fail("reason", .required, "must say why, in at least 5 characters")
        }
        try v.check()
        return text
    }
}

extension ReceptionService {
    /// 연락처 열람 (break-the-glass): POST /receptions/{id}/contact `{reason}`. The disclosure is
    /// committed before the number is answered.
    @Sendable func contact(_ req: Request) async throws -> ContactDisclosures.Contact {
        let id = try req.id(of: "reception")
        let reason = try ContactDisclosures.reason(try req.body(ContactDisclosures.Body.self).reason)
        let user = req.actor(default: "unknown")
        let role = req.callerRole ?? "unknown"
        let departments = req.callerDepartments
        let now = context.now()
        let (phone, department) = try await context.command { db -> (String?, String?) in
            let visit = try await ReceptionModel.require(id, on: db)
            try await db.sql.insert(into: ContactDisclosures.table)
                .columns(
                    "id", "reception_id", "username", "role", "departments", "visit_department", "reason",
                    "disclosed_at"
                )
                .values(
                    SQLBind(UUID()), SQLBind(id), SQLBind(user), SQLBind(role),
                    SQLBind(departments.joined(separator: "\n")), SQLBind(visit.department), SQLBind(reason),
                    SQLBind(now)
                )
                .run()
            // The registry's phone (a visit from before the registry may hold its own).
            let patient = try await visit.patientRef.asyncFlatMap { try await PatientModel.byID($0, on: db) }
            return (patient?.phone ?? visit.phone, visit.department)
        }
        let within = ContactDisclosures.mayRead(role: role, departments: departments, visitDepartment: department)
        context.metrics?.counter(
            "hospital_contact_disclosures_total",
            help: "Contact details read with a stated reason (break-the-glass), for the administrator's review.",
            labels: [("within_department", within ? "true" : "false")]
        ).increment()
        // Who and that it happened; never the visit, the patient or the reason (the report has them).
        req.logger.notice(
            "contact details disclosed with a stated reason (break-the-glass)",
            metadata: ["user": "\(user)", "withinDepartment": "\(within)"])
        return ContactDisclosures.Contact(receptionId: id, phone: phone, withinDepartment: within)
    }

    /// GET /admin/contact-disclosures?from=&to= (admin, on this service's port): newest first, at most 1000.
    @Sendable func disclosures(_ req: Request) async throws -> ContactDisclosures.Report {
        var query = QueryReader(req)
        let from = query.instant("from")
        let to = query.instant("to")
        try query.check()
        var select = try context.store.database.sql.select()
            .columns(
                "id", "reception_id", "username", "role", "departments", "visit_department", "reason", "disclosed_at"
            )
            .from(ContactDisclosures.table)
        if let from { select = select.where("disclosed_at", .greaterThanOrEqual, SQLBind(from)) }
        if let to { select = select.where("disclosed_at", .lessThan, SQLBind(to)) }
        let rows = try await select.orderBy("disclosed_at", .descending).orderBy("id", .descending).limit(1000).all()
        return ContactDisclosures.Report(
            items: try rows.map { row in
                let departments = try row.decode(column: "departments", as: String.self)
                return ContactDisclosures.Disclosure(
                    id: try row.decode(column: "id", as: UUID.self),
                    receptionId: try row.decode(column: "reception_id", as: UUID.self),
                    user: try row.decode(column: "username", as: String.self),
                    role: try row.decode(column: "role", as: String.self),
                    departments: departments.split(separator: "\n").map(String.init),
                    visitDepartment: try row.decode(column: "visit_department", as: String?.self),
                    reason: try row.decode(column: "reason", as: String.self),
                    disclosedAt: try row.decode(column: "disclosed_at", as: Date.self))
            })
    }
}

extension Optional where Wrapped: Sendable {
    func asyncFlatMap<T>(_ transform: (Wrapped) async throws -> T?) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
