import Foundation
import SQLKit
import SharedKernel

/// Which departments (진료과) each member of staff works in, as an administrator assigned them
/// (`hospital users departments NAME 내과 …`), for local accounts and for users an OpenID
/// provider signs in alike; kept in the gateway's database beside the accounts. A doctor reads
/// the contact details of their own departments' patients; anyone else's only with a stated
/// reason (see the reception service's `POST /receptions/:id/contact`).
public struct Departments: Sendable {
    public static let table = "staff_departments"
    let database: any SQLDatabase

    public init(database: any SQLDatabase) { self.database = database }

    /// Creates the table if it is missing.
    public func prepare() async throws {
        try await database.create(table: Self.table).ifNotExists()
            .column("username", type: .text, .notNull)
            .column("department", type: .text, .notNull)
            .primaryKey("username", "department")
            .run()
    }

    /// A department's name under the rules the desk's form applies to a visit's department
    /// (`FieldValidation`: at most 50 characters, no control, invisible or direction characters),
    /// trimmed; nil if it breaks them. So an assignment can match a visit's department exactly.
    public static func validated(_ name: String) -> String? {
        var validation = FieldValidation()
        let text = validation.required(name, "department", maxLength: 50)
        return validation.failures.isEmpty ? text : nil
    }

    /// Whether `name` is a department's name as it is stored (valid and already trimmed).
    public static func isName(_ name: String) -> Bool { validated(name) == name }

    /// The departments of `username`, by name.
    public func of(_ username: String) async throws -> [String] {
        try await database.select().column("department").from(Self.table).where("username", .equal, username)
            .orderBy("department").all().map { try $0.decode(column: "department", as: String.self) }
    }

    /// Every assignment, by user.
    public func all() async throws -> [String: [String]] {
        var result: [String: [String]] = [:]
        for row in try await database.select().columns("username", "department").from(Self.table)
            .orderBy("username").orderBy("department").all()
        {
            result[try row.decode(column: "username", as: String.self), default: []].append(
                try row.decode(column: "department", as: String.self))
        }
        return result
    }

    /// Makes `departments` the departments of `username` (none: takes them all away). Takes
    /// effect with the user's next token (within half a token's lifetime on the screens).
    public func set(_ username: String, to departments: [String]) async throws {
        guard AccountStore.validUsername(username) else {
            throw AccountError("A user name is 1 to 64 lower-case letters, digits, '.', '_' or '-'.")
        }
        var wanted: Set<String> = []
        for name in departments {
            guard let valid = Self.validated(name) else {
                throw AccountError("A department is 1 to 50 characters without control characters, not \"\(name)\".")
            }
            wanted.insert(valid)
        }
        guard wanted.count <= 16 else { throw AccountError("At most 16 departments.") }
        let current = Set(try await of(username))
        for gone in current.subtracting(wanted) {
            try await database.delete(from: Self.table).where("username", .equal, username)
                .where("department", .equal, gone).run()
        }
        for added in wanted.subtracting(current).sorted() {
            try await database.insert(into: Self.table).columns("username", "department")
                .values(SQLBind(username), SQLBind(added)).ignoringConflicts(with: ["username", "department"]).run()
        }
    }
}
