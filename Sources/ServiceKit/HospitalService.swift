import Contracts
import FluentKit
import Foundation
import Logging
import Messaging
import SharedKernel
import Vapor

/// What a service needs from its surroundings, built by the composition root.
public struct ServiceContext: Sendable {
    /// The service's own database.
    public var store: ServiceStore
    /// Wakes the outbox relay after a commit that appended events.
    public var nudgeRelay: @Sendable () -> Void
    /// The hospital's time zone, for "today" and date filters.
    public var timeZone: TimeZone
    public var logger: Logger
    /// The event history, for services that can rebuild from it (the read model).
    public var history: (any EventHistory)?
    public var now: @Sendable () -> Date
    /// The keys that seal and index resident registration numbers, for a service that
    /// `needs` them.
    public var residentNumberKeys: ResidentNumberKeys?
    /// The service's metrics (the visit's own: registrations, outcomes, waits).
    public var metrics: ServiceMetrics?
    /// Where result files go (the examination service).
    public var attachments: AttachmentSettings?
    /// The departments' queue letters and rooms, and the rules of calling: as the process holds
    /// them now (an administrator may change them while it runs).
    public var clinicSource = ClinicSource(.standard)
    public var clinic: ClinicLayout { clinicSource.layout }

    public init(
        store: ServiceStore, nudgeRelay: @escaping @Sendable () -> Void, timeZone: TimeZone, logger: Logger,
        history: (any EventHistory)?, now: @escaping @Sendable () -> Date = ServiceContext.millisecondNow,
        residentNumberKeys: ResidentNumberKeys? = nil, metrics: ServiceMetrics? = nil,
        attachments: AttachmentSettings? = nil
    ) {
        self.attachments = attachments
        self.residentNumberKeys = residentNumberKeys
        self.metrics = metrics
        self.store = store
        self.nudgeRelay = nudgeRelay
        self.timeZone = timeZone
        self.logger = logger
        self.history = history
        self.now = now
    }

    /// The current time at the millisecond precision the API shows, so a stored time reads back
    /// exactly as it was answered, on SQLite and on PostgreSQL.
    public static let millisecondNow: @Sendable () -> Date = {
        Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
    }

    /// Runs a command in one transaction (load, decide, save with outbox) and wakes the relay.
    public func command<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        let result = try await store.write(body)
        nudgeRelay()
        return result
    }
}

/// What a service needs from the composition root besides its database and the event log.
public struct ServiceNeeds: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// The keys that seal and index resident registration numbers (`ServiceContext.residentNumberKeys`).
    public static let residentNumberKeys = ServiceNeeds(rawValue: 1 << 0)
    /// A directory for result files and their size limit (`ServiceContext.attachments`).
    public static let attachmentStore = ServiceNeeds(rawValue: 1 << 1)
}

/// The secrets that seal resident registration numbers (`HOSPITAL_PII_KEY`, …): 32 bytes each.
/// `current` seals; `previous` only open what they sealed; `indexSecret`, the first key ever
/// used, keeps the lookup index stable across rotations (the current key when nil).
public struct ResidentNumberKeys: Sendable {
    public let current: Data
    public let previous: [Data]
    public let indexSecret: Data?

    /// Refuses a key that is not 32 bytes, naming where it came from.
    public init(current: (Data, String), previous: [(Data, String)] = [], indexSecret: (Data, String)? = nil) throws {
        for (key, source) in [current] + previous + [indexSecret].compactMap({ $0 }) where key.count != 32 {
            throw KeyError(description: "\(source): a resident number key is 32 bytes (base64 of 32 random bytes)")
        }
        self.current = current.0
        self.previous = previous.map(\.0)
        self.indexSecret = indexSecret?.0
    }

    /// 32 random bytes: a new key.
    public static func random() -> Data { Data((0..<32).map { _ in UInt8.random(in: 0...255) }) }

    public struct KeyError: Error, CustomStringConvertible {
        public var description: String
    }
}

/// A route whose bodies the gateway streams through in both directions instead of collecting
/// them (result files).
public struct StreamedRoute: Sendable {
    public var method: HTTPMethod
    /// As Vapor writes it: `examinations/:id/attachments`.
    public var path: String

    public init(_ method: HTTPMethod, _ path: String) {
        self.method = method
        self.path = path
    }
}

/// One bounded context as a deployable service: its schema, its HTTP API and its reactions to
/// the events of the others. The type is its descriptor too: the composition root, the gateway's
/// routes, the screens' calls, the command line and the settings derive from these.
public protocol HospitalService: Sendable {
    /// The service's name: its database file, consumer group, log label, command-line options
    /// (`--reception-port`) and settings (`HOSPITAL_RECEPTION_URL`).
    static var name: String { get }
    /// The port it listens on unless told otherwise.
    static var defaultPort: Int { get }
    /// The first path components it owns behind the gateway (`receptions`).
    static var routePrefixes: [String] { get }
    /// What it needs from the host; nothing by default.
    static var needs: ServiceNeeds { get }
    /// Routes the gateway streams rather than collects (bodies over 64 KB); none by default.
    static var streamedRoutes: [StreamedRoute] { get }
    /// Its schema, in order.
    static var migrations: [any Migration] { get }
    /// Its tables that hold one row per visit (or per order), the ones a history grows
    /// (`hospital bench --seed-history`); none by default.
    static var visitTables: [String] { get }
    /// With `.attachmentStore`: the SQL that lists the SHA-256 of every content file its rows
    /// name (a backup checks it holds each); nil by default.
    static var storedFilesQuery: String? { get }
    init(context: ServiceContext)
    func registerRoutes(on routes: any RoutesBuilder)
    /// The event types it reacts to (none: it runs no consumer).
    var handledEventTypes: Set<String> { get }
    /// Applies one event inside the consumer's transaction (the inbox is handled around it).
    func handle(_ envelope: EventEnvelope, on db: any Database) async throws
    /// Housekeeping of its own while it serves (sweeping files, say): a loop that returns when
    /// canceled, run under supervision in the process's service group. Nil: none.
    var maintenance: (@Sendable () async -> Void)? { get }
    /// The server is about to stop: end whatever keeps a response open (a live view's stream),
    /// so the requests in flight can finish. Nothing by default.
    func serverStopping() async
    /// Events it handled were committed: what shows them (live views) may look again. Nothing
    /// by default.
    func eventsCommitted()
}

extension HospitalService {
    public var maintenance: (@Sendable () async -> Void)? { nil }
    public func serverStopping() async {}
    public func eventsCommitted() {}
    public static var needs: ServiceNeeds { [] }
    public static var streamedRoutes: [StreamedRoute] { [] }
    public static var visitTables: [String] { [] }
    public static var storedFilesQuery: String? { nil }
}

/// Where a service keeps files and how big they may be.
public struct AttachmentSettings: Sendable {
    public var directory: URL
    public var maxBytes: Int64
    /// How long a temporary or unreferenced file is left alone before a sweep removes it.
    public var grace: TimeInterval

    public init(directory: URL, maxBytes: Int64, grace: TimeInterval) {
        self.directory = directory
        self.maxBytes = maxBytes
        self.grace = grace
    }
}
