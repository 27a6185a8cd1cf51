import FluentKit
import FluentSQL
import SQLKit

/// One ordered, bounded selection of a table's rows: `WHERE condition ORDER BY order LIMIT limit`.
public struct Selection: Sendable {
    /// The condition, values bound (`"status = \(bind: status)"`).
    public var condition: SQLQueryString
    /// Columns named by the code, e.g. `created_at, id`.
    public var order: String
    public var limit: Int

    public init(_ condition: SQLQueryString, orderedBy order: String, limit: Int) {
        self.condition = condition
        self.order = order
        self.limit = limit
    }
}

extension Model {
    /// Several selections of this model's table read as one statement, so all of them see the
    /// table at one moment: a view made of a selection per state (the waiting, the called, those
    /// at their exams) cannot show a row that changed state between two queries in both of
    /// them, or in neither. Each selection's rows come in its own order.
    public static func select(_ selections: [Selection], on db: any Database) async throws -> [[Self]] {
        guard !selections.isEmpty else { return [] }
        var query = SQLQueryString("")
        for (index, selection) in selections.enumerated() {
            if index > 0 { query += " UNION ALL " }
            let head: String = """
                SELECT * FROM (SELECT *, \(index) AS selection_part, \
                ROW_NUMBER() OVER (ORDER BY \(selection.order)) AS selection_position FROM "\(schema)" WHERE\u{20}
                """
            let tail: String = " ORDER BY \(selection.order) LIMIT \(selection.limit)) AS selection_\(index)"
            query += SQLQueryString(head) + selection.condition + SQLQueryString(tail)
        }
        query += " ORDER BY selection_part, selection_position"
        var parts = [[Self]](repeating: [], count: selections.count)
        for row in try await db.sql.raw(query).all() {
            let part = try row.decode(column: "selection_part", as: Int.self)
            parts[part].append(try row.decode(fluentModel: Self.self))
        }
        return parts
    }
}
