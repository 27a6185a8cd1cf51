import Contracts
import FluentKit
import Foundation
import Messaging
import SQLKit
import Storage

/// A Fluent model that stores one aggregate, with a version for optimistic concurrency.
/// A stored record in a state this build does not know: written by a newer version during a
/// rolling upgrade. Refused with a clear answer (409), never a crash.
public struct UnknownState: Error, Equatable, Sendable {
    public var resource: String
    public var state: String

    public init(resource: String, state: String) {
        self.resource = resource
        self.state = state
    }

    /// `Status(rawValue:)`, or this error.
    public static func parse<Status: RawRepresentable>(_ raw: String, as _: Status.Type, resource: String) throws
        -> Status where Status.RawValue == String
    {
        guard let status = Status(rawValue: raw) else { throw UnknownState(resource: resource, state: raw) }
        return status
    }
}

public protocol AggregateRecord: Model where IDValue == UUID {
    associatedtype Aggregate: Sendable
    /// What the API calls it in messages, e.g. "diagnosis".
    static var resource: String { get }
    var version: Int { get set }
    func aggregate() throws -> Aggregate
    /// Copies the aggregate's mutable state into the record's fields.
    func copy(_ aggregate: Aggregate) throws
}

extension AggregateRecord {
    /// Saves a changed aggregate, provided nobody else changed it since it was loaded.
    public func update(to aggregate: Aggregate, on db: any Database) async throws {
        // One statement: the changed fields, provided the version is still the loaded one.
        let loaded = version
        version += 1
        try copy(aggregate)
        guard try await saveChanges(on: db, onlyIf: "version", is: loaded) else {
            version = loaded
            throw ConcurrentModification()
        }
    }

    /// Loads the record or answers 404.
    public static func require(_ id: UUID, on db: any Database) async throws -> Self {
        guard let record = try await byID(id, on: db) else {
            throw AppError.notFound(resource: resource, id: id.uuidString)
        }
        return record
    }
}

extension ServiceContext {
    /// The shape of every command on an existing aggregate: load, decide, save with its events
    /// in the outbox, in one transaction; answers the new state.
    public func change<Record: AggregateRecord>(
        _ type: Record.Type, _ id: UUID, stamp: EventStamp, receptionId: @escaping @Sendable (Record.Aggregate) -> UUID,
        _ decide: @escaping @Sendable (inout Record.Aggregate, Date) throws -> [VisitEvent]
    ) async throws -> Record.Aggregate {
        let now = now()
        return try await command { db in
            let record = try await Record.require(id, on: db)
            var aggregate = try record.aggregate()
            let events = try decide(&aggregate, now)
            try await record.update(to: aggregate, on: db)
            try await Outbox.append(stamp.envelopes(events, receptionId: receptionId(aggregate), at: now), on: db)
            return aggregate
        }
    }
}

extension QueryBuilder where Model.IDValue == UUID {
    /// One page of the query's results sorted by `date` (then by id, ascending), how many there
    /// are (counted up to one more than `ListCount.limit`: the count stops there, so it
    /// costs the same in a history of millions), and the cursor of the next page if there is one.
    ///
    /// With `page.after`, the page starts right after that item, through the index on `date`
    /// (the outer `<=`/`>=` bounds the scan; the inner condition breaks ties by id): its cost
    /// does not grow with how many items come before it, as an offset's does.
    public func page(
        _ page: Page, sortedBy date: KeyPath<Model, FieldProperty<Model, Date>>, descending: Bool,
        id: KeyPath<Model, IDProperty<Model, UUID>>
    ) async throws -> (items: [Model], total: Int, next: PageCursor?) {
        // Counting the rows as they come, without building a model from each.
        nonisolated(unsafe) var total = 0
        try await copy().field(id).limit(ListCount.limit + 1).run { _ in total += 1 }
        if let after = page.after {
            // The cursor's date is the stored one as read back, which SQLite's driver rounds to
            // the microsecond: a window of one microsecond either side counts as "the same time",
            // ordered by id (two visits less than a microsecond apart would be the only casualty).
            let low = after.date.addingTimeInterval(-1e-6)
            let high = after.date.addingTimeInterval(1e-6)
            if descending {
                filter(date <= high).group(.or) { $0.filter(date < low).filter(id > after.id) }
            } else {
                filter(date >= low).group(.or) { $0.filter(date > high).filter(id > after.id) }
            }
        }
        sort(date, descending ? .descending : .ascending).sort(id, .ascending)
        // One more than the page: whether there is a next page, without a second query.
        // `page` is bounded (see QueryReader), so the range cannot overflow.
        var items = try await range(page.offset..<(page.offset + page.limit + 1)).all()
        var next: PageCursor?
        if items.count > page.limit {
            items.removeLast()
            if let last = items.last, let lastDate = last[keyPath: date].value, let lastId = last[keyPath: id].value {
                next = PageCursor(date: lastDate, id: lastId)
            }
        }
        return (items, total, next)
    }
}
