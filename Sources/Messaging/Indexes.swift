import FluentKit
import SQLKit
import Storage

/// A migration that creates indexes (and drops them on revert), in SQL both SQLite and
/// PostgreSQL accept. `where` makes a partial index: only the rows a query looks for.
public struct CreateIndexes: AsyncMigration {
    public struct Index: Sendable {
        public var name: String
        public var table: String
        public var columns: [String]
        public var predicate: String?

        public init(_ name: String, on table: String, _ columns: [String], where predicate: String? = nil) {
            self.name = name
            self.table = table
            self.columns = columns
            self.predicate = predicate
        }
    }

    public let name: String
    public let indexes: [Index]

    public init(name: String, _ indexes: [Index]) {
        self.name = name
        self.indexes = indexes
    }

    public func prepare(on database: any Database) async throws {
        let sql = try database.sql
        for index in indexes {
            let columns = index.columns.map { "\"\($0)\"" }.joined(separator: ", ")
            let predicate = index.predicate.map { " WHERE \($0)" } ?? ""
            try await sql.raw(
                "CREATE INDEX IF NOT EXISTS \(ident: index.name) ON \(ident: index.table) (\(unsafeRaw: columns))\(unsafeRaw: predicate)"
            ).run()
        }
    }

    public func revert(on database: any Database) async throws {
        let sql = try database.sql
        for index in indexes.reversed() {
            try await sql.raw("DROP INDEX IF EXISTS \(ident: index.name)").run()
        }
    }
}
