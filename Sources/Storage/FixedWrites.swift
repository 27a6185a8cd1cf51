import FluentKit
import FluentSQL
import Foundation
import SQLKit

/// Inserts and updates of a model as plain statements: the model's own listed properties give
/// the columns and values (as Fluent's `create` and `save` take them), and the text is joined
/// here instead of going through Fluent's query converter and SQLKit's serialiser, which build,
/// quote and escape every column on every call (a fifth of a whole visit's CPU went there).
/// The values are bound, never spliced; tables and columns are named by the code.
extension Model {
    /// `create(on:)` as one statement. A nil UUID id is given a random one, as Fluent does; a
    /// database-generated id (an autoincrement) is left to the database. Afterwards the model
    /// knows it exists and has no pending changes, as after Fluent's `create`.
    public func insert(on db: any Database) async throws {
        try await [self].insert(on: db)
    }

    /// The changed fields (Fluent's `save` of an existing model) as one `UPDATE … WHERE id = ?`,
    /// and only if `column` still holds `expected` when `column` is given (an optimistic check in
    /// the same statement). Returns whether a row was updated; nothing to update counts as one.
    @discardableResult
    public func saveChanges(
        on db: any Database, onlyIf column: FieldKey? = nil, is expected: (any Encodable & Sendable)? = nil
    ) async throws -> Bool {
        guard _$idExists, let id else { throw FixedWriteError.notStored(Self.schema) }
        let changes = RowInput(allFields: false)
        input(to: changes)
        if changes.values.isEmpty { return true }
        // The id's column, e.g. `id` or a custom key such as `event_id`.
        let idColumn = quote(_$id.key.description)
        var query = SQLQueryString("UPDATE " + quote(Self.schema) + " SET ")
        for (index, (key, value)) in changes.values.enumerated() {
            if index > 0 { query.appendLiteral(", ") }
            query.appendLiteral("\(quote(key.description)) = ")
            try query.append(value: value, of: Self.self)
        }
        query.appendLiteral(" WHERE \(idColumn) = ")
        query.appendInterpolation(bind: id)
        if let column, let expected {
            query.appendLiteral(" AND \(quote(column.description)) = ")
            query.appendInterpolation(bind: expected)
        }
        query.appendLiteral(" RETURNING \(idColumn)")
        let updated = try await db.sql.raw(query).first() != nil
        if updated { try output(from: SavedRow(changes.values)) }
        return updated
    }
}

extension Array where Element: Model {
    /// Fluent's `create(on:)` of many as one `INSERT … VALUES (…), (…)`: rows of the same
    /// columns together (a row whose columns differ starts another statement), at most
    /// `maxBinds` values a statement (SQLite takes 32,766, PostgreSQL 65,535).
    public func insert(on db: any Database, maxBinds: Int = 5000) async throws {
        guard !isEmpty else { return }
        var rows: [(model: Element, values: [(FieldKey, DatabaseQuery.Value)])] = []
        for model in self {
            if model._$idExists { throw FixedWriteError.alreadyStored(Element.schema) }
            if model.id == nil, let fresh = UUID() as? Element.IDValue { model.id = fresh }
            let row = RowInput(allFields: true)
            model.input(to: row)
            // An unset field (a database-generated id) is left to the column's default.
            rows.append((model, row.values.filter { if case .default = $0.1 { false } else { true } }))
        }
        var start = 0
        while start < rows.count {
            let columns = rows[start].values.map(\.0)
            let most = start + Swift.max(1, maxBinds / Swift.max(1, columns.count))
            var end = start + 1
            while end < Swift.min(rows.count, most), rows[end].values.map(\.0) == columns { end += 1 }
            let names = columns.map { quote($0.description) }.joined(separator: ", ")
            var query = SQLQueryString("INSERT INTO " + quote(Element.schema) + " (" + names + ") VALUES ")
            for (index, row) in rows[start..<end].enumerated() {
                query.appendLiteral(index == 0 ? "(" : ", (")
                for (column, (_, value)) in row.values.enumerated() {
                    if column > 0 { query.appendLiteral(", ") }
                    try query.append(value: value, of: Element.self)
                }
                query.appendLiteral(")")
            }
            try await db.sql.raw(query).run()
            for row in rows[start..<end] { try row.model.output(from: SavedRow(row.values)) }
            start = end
        }
    }
}

public enum FixedWriteError: Error, CustomStringConvertible {
    case notStored(String)
    case alreadyStored(String)
    case unsupportedValue(String)

    public var description: String {
        switch self {
        case .notStored(let table): "an update of a \(table) row that was never stored"
        case .alreadyStored(let table): "an insert of a \(table) row that is already stored"
        case .unsupportedValue(let table): "a \(table) value of a kind fixed writes do not bind"
        }
    }
}

/// A table or column name in double quotes (names come from the code; a quote in one would be
/// doubled all the same).
private func quote(_ name: String) -> String {
    "\"" + (name.contains("\"") ? name.replacingOccurrences(of: "\"", with: "\"\"") : name) + "\""
}

extension SQLQueryString {
    mutating func append<M: Model>(value: DatabaseQuery.Value, of _: M.Type) throws {
        switch value {
        case .bind(let bound): appendInterpolation(bind: bound)
        case .enumCase(let name): appendInterpolation(bind: name)
        case .null: appendLiteral("NULL")
        default: throw FixedWriteError.unsupportedValue(M.schema)
        }
    }
}

/// The fields a model hands over, in the order of its properties.
private final class RowInput: DatabaseInput {
    var values: [(FieldKey, DatabaseQuery.Value)] = []
    let wantsUnmodifiedKeys: Bool

    init(allFields: Bool) { wantsUnmodifiedKeys = allFields }

    func set(_ value: DatabaseQuery.Value, at key: FieldKey) {
        if let index = values.firstIndex(where: { $0.0 == key }) {
            values[index].1 = value
        } else {
            values.append((key, value))
        }
    }
}

/// What was written, read back into the model (Fluent does the same after a create or save):
/// the fields are no longer pending, and the id marks the model as stored.
private struct SavedRow: DatabaseOutput {
    let values: [FieldKey: DatabaseQuery.Value]

    init(_ written: [(FieldKey, DatabaseQuery.Value)]) {
        values = Dictionary(written, uniquingKeysWith: { $1 })
    }

    func schema(_: String) -> any DatabaseOutput { self }
    func contains(_ key: FieldKey) -> Bool { values[key] != nil }

    func decodeNil(_ key: FieldKey) throws -> Bool {
        if case .null = values[key] { return true }
        return false
    }

    func decode<T: Decodable>(_ key: FieldKey, as _: T.Type) throws -> T {
        switch values[key] {
        case .bind(let value as T): return value
        case .enumCase(let name as T): return name
        case .null:
            if let none = (Optional<Any>.none as Any) as? T { return none }
        default: break
        }
        throw FluentError.invalidField(
            name: key.description, valueType: T.self,
            error: DecodingError.typeMismatch(T.self, .init(codingPath: [], debugDescription: "not what was written")))
    }

    var description: String { "saved row" }
}

extension SQLQueryString {
    /// `(?, ?, …)` binding each value: the right side of an `IN`. An empty list is `(NULL)`,
    /// which matches nothing.
    public mutating func appendInterpolation(list values: [some Encodable & Sendable]) {
        appendLiteral("(")
        if values.isEmpty { appendLiteral("NULL") }
        for (index, value) in values.enumerated() {
            if index > 0 { appendLiteral(", ") }
            appendInterpolation(bind: value)
        }
        appendLiteral(")")
    }
}
