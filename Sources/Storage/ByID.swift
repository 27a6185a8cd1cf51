import FluentKit
import FluentSQL
import Foundation
import SQLKit
import Synchronization

extension Model where IDValue == UUID {
    /// `find(_:on:)` as one fixed statement: Fluent's query builder serialises a `find` afresh
    /// every time (every column twice, each name quoted and escaped: a fifth of a by-id read's
    /// CPU), where this is a text made once per model and one bound id. The row fills the model
    /// through its listed properties, as Fluent's own read does, and the model knows it exists
    /// (a later `save` updates it). Tables and columns here are named by the code, never by input.
    public static func byID(_ id: UUID, on db: any Database) async throws -> Self? {
        let row = try await db.sql.raw("\(unsafeRaw: ByID.select(Self.self))\(bind: id)").first()
        return try row?.decode(fluentModel: Self.self)
    }
}

enum ByID {
    private static let statements = Mutex<[ObjectIdentifier: String]>([:])

    /// `SELECT * FROM "table" WHERE "id column" = ` for `model`.
    static func select<M: Model>(_ model: M.Type) -> String {
        if let known = statements.withLock({ $0[ObjectIdentifier(model)] }) { return known }
        let text = "SELECT * FROM \"\(M.schema)\" WHERE \"\(M()._$id.key.description)\" = "
        statements.withLock { $0[ObjectIdentifier(model)] = text }
        return text
    }
}
