import Contracts
import Foundation
import Messaging
import SharedKernel
import Vapor

extension Request {
    /// The UUID in path parameter `name`; an id that is not a UUID names no resource (404).
    public func id(_ name: String = "id", of resource: String) throws -> UUID {
        let raw = parameters.get(name) ?? ""
        guard let id = UUID(uuidString: raw) else { throw AppError.notFound(resource: resource, id: raw) }
        return id
    }

    /// Decodes the JSON body; malformed JSON is a 400 problem (see `ProblemMiddleware`).
    public func body<T: Decodable>(_ type: T.Type) throws -> T {
        guard let contentType = headers.contentType, contentType.type == "application",
            contentType.subType == "json" || contentType.subType.hasSuffix("+json")
        else { throw Abort(.unsupportedMediaType) }
        guard let buffer = body.data, buffer.readableBytes > 0 else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "empty body"))
        }
        return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
    }

    /// Decodes the JSON body if there is one; a command whose fields are all optional may be sent
    /// without a body.
    public func optionalBody<T: Decodable>(_ type: T.Type, default empty: T) throws -> T {
        if headers.contentType == nil, (body.data?.readableBytes ?? 0) == 0 { return empty }
        return try self.body(type)
    }

    /// The room a calling step names (`{room}`): 422 naming `room` when it is missing (and
    /// `required`) or not one `isKnown` accepts (`hint` says which are).
    public func room(required: Bool, isKnown: (String) -> Bool, hint: String) throws -> String? {
        struct RoomBody: Decodable { var room: String? }
        let raw = try optionalBody(RoomBody.self, default: RoomBody()).room
        var v = FieldValidation()
        let room = required ? v.required(raw, "room", maxLength: 30) : v.optional(raw, "room", maxLength: 30)
        if let room, !isKnown(room) { v.fail("room", .invalidFormat, hint) }
        try v.check()
        return room
    }

    /// Who caused an event: the signed-in user, from the verified token (never a header a
    /// client could set; `X-Actor` is ignored).
    public func actor(default role: String) -> String {
        signedIn?.principal.username ?? role
    }

    /// The signed-in caller's role (`desk`, `doctor`…), if signed in.
    public var callerRole: String? { signedIn?.principal.role.rawValue }

    /// The departments the signed-in caller works in (their token's `departments`).
    public var callerDepartments: [String] { signedIn?.principal.departments ?? [] }

    /// The trace this request belongs to: its server span when tracing is on, else the
    /// caller's `traceparent` continued (or a new trace).
    public var trace: TraceParent {
        TraceContext.traceparent(of: serviceContext).flatMap(TraceParent.init(span:))
            ?? TraceParent.continuing(headers.first(name: "traceparent"))
    }
}

/// Stamps domain events into envelopes: who produced them, who caused them, which trace.
public struct EventStamp: Sendable {
    public var producer: String
    public var actor: String
    public var trace: TraceParent

    public init(producer: String, actor: String, trace: TraceParent) {
        self.producer = producer
        self.actor = actor
        self.trace = trace
    }

    /// For work caused by a consumed event: same trace, the service itself as actor.
    public static func reacting(to envelope: EventEnvelope, producer: String) -> EventStamp {
        EventStamp(
            producer: producer, actor: "system:\(producer)",
            trace: TraceContext.current ?? TraceParent.continuing(envelope.traceparent))
    }

    public func envelopes(_ events: [VisitEvent], receptionId: UUID, at now: Date) -> [EventEnvelope] {
        events.map {
            EventEnvelope(
                occurredAt: now, receptionId: receptionId, producer: producer, traceparent: trace.forEvent.description,
                actor: actor, event: $0)
        }
    }
}

/// `limit`, `offset` and `after` of a list request, validated.
public struct Page: Sendable {
    public var limit: Int
    public var offset: Int
    /// Where the previous page ended (keyset paging): the next page starts after it, at the same
    /// cost however deep into the list it is.
    public var after: PageCursor?

    public init(limit: Int, offset: Int = 0, after: PageCursor? = nil) {
        self.limit = limit
        self.offset = offset
        self.after = after
    }
}

/// The sort key of the last item of a page (its time and id), opaque to clients.
public struct PageCursor: Sendable, Equatable {
    public var date: Date
    public var id: UUID

    public init(date: Date, id: UUID) {
        self.date = date
        self.id = id
    }

    /// Base64url of `seconds|uuid`, the seconds since 2001 as `Date` holds them, so the date comes
    /// back bit for bit (seconds since 1970 would round, and the boundary item repeat or vanish).
    public var token: String {
        Data("\(date.timeIntervalSinceReferenceDate)|\(id.uuidString)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public init?(token: String) {
        guard token.count <= 100,
            token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else { return nil }
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8) else { return nil }
        let parts = text.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count == 2, let seconds = Double(parts[0]), seconds.isFinite,
            let id = UUID(uuidString: String(parts[1]))
        else { return nil }
        self.init(date: Date(timeIntervalSinceReferenceDate: seconds), id: id)
    }
}

/// How far a list counts its matches.
public enum ListCount {
    public static let limit = 1000
}

/// A page of a list.
public struct ListResponse<Item: Content>: Content {
    public var items: [Item]
    /// How many items match, counted up to `ListCount.limit`: a count of a million rows would
    /// cost what the page itself does not.
    public var total: Int
    /// True when more than `ListCount.limit` items match (`total` then says `ListCount.limit`).
    public var totalCapped: Bool
    public var limit: Int
    public var offset: Int
    /// The `after` that reads the next page; null on the last page.
    @Nullable public var next: String?

    public init(items: [Item], total: Int, page: Page, next: PageCursor? = nil) {
        self.items = items
        self.total = min(total, ListCount.limit)
        self.totalCapped = total > ListCount.limit
        self.limit = page.limit
        self.offset = page.offset
        self.next = next?.token
    }
}

/// Reads query parameters of list requests, collecting every problem before answering 400.
public struct QueryReader {
    private let request: Request
    private var validation = FieldValidation()

    public init(_ request: Request) { self.request = request }

    /// The raw value of `name`: "" when present but empty (a mistake, not "no filter"), nil
    /// when absent.
    private func raw(_ name: String) -> String? {
        FormEncoding.pairs(request.url.query ?? "").last { $0.name == name }?.value
    }

    /// `limit` (1–200, default 50), and either `offset` (0–1000000, default 0) or `after` (the
    /// `next` of the previous page).
    public mutating func page() -> Page {
        var page = Page(limit: 50, offset: 0, after: nil)
        if let raw = raw("limit") {
            if let n = Int(raw), (1...200).contains(n) {
                page.limit = n
            } else {
                validation.fail("limit", .outOfRange, "must be a whole number from 1 to 200")
            }
        }
        if let raw = raw("offset") {
            if let n = Int(raw), (0...1_000_000).contains(n) {
                page.offset = n
            } else {
                validation.fail("offset", .outOfRange, "must be a whole number from 0 to 1000000")
            }
        }
        if let raw = raw("after") {
            if let cursor = PageCursor(token: raw) {
                page.after = cursor
            } else {
                validation.fail("after", .invalidFormat, "must be the `next` of a page of this list")
            }
            if page.offset != 0 {
                validation.fail("offset", .outOfRange, "cannot be combined with after")
            }
        }
        return page
    }

    /// An enum value such as a status.
    public mutating func value<T: RawRepresentable & CaseIterable>(_ name: String, as: T.Type) -> T?
    where T.RawValue == String {
        guard let raw = raw(name) else { return nil }
        guard let value = T(rawValue: raw) else {
            validation.fail(
                name, .invalidFormat, "must be one of " + T.allCases.map(\.rawValue).joined(separator: ", "))
            return nil
        }
        return value
    }

    public mutating func uuid(_ name: String) -> UUID? {
        guard let raw = raw(name) else { return nil }
        guard let id = UUID(uuidString: raw) else {
            validation.fail(name, .invalidFormat, "must be a UUID")
            return nil
        }
        return id
    }

    /// Free text such as a name to search for, trimmed; at most `maxLength` characters.
    public mutating func text(_ name: String, maxLength: Int) -> String? {
        guard let raw = raw(name) else { return nil }
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        // Counted as JSON Schema's maxLength counts: code points, before trimming.
        guard !text.isEmpty, raw.unicodeScalars.count <= maxLength else {
            validation.fail(name, .outOfRange, "must be 1 to \(maxLength) characters")
            return nil
        }
        return text
    }

    /// A calendar day `YYYY-MM-DD` in `timeZone`, as the half-open interval of its instants.
    public mutating func day(_ name: String, in timeZone: TimeZone) -> Range<Date>? {
        guard let raw = raw(name) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = raw.split(separator: "-").compactMap { Int($0) }
        guard raw.count == 10, parts.count == 3, raw.allSatisfy({ $0 == "-" || ("0"..."9").contains($0) }),
            let start = calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2])),
            // The calendar rolls 2026-13-01 over into 2027; a real date reads back unchanged.
            calendar.dateComponents([.year, .month, .day], from: start)
                == DateComponents(year: parts[0], month: parts[1], day: parts[2]),
            let end = calendar.date(byAdding: .day, value: 1, to: start)
        else {
            validation.fail(name, .invalidFormat, "must be a date written as YYYY-MM-DD")
            return nil
        }
        return start..<end
    }

    /// An instant, ISO 8601 (`2026-11-30T09:00:00Z`, fractions allowed) or a day (its start, UTC).
    public mutating func instant(_ name: String) -> Date? {
        guard let raw = raw(name) else { return nil }
        let full = ISO8601DateFormatter()
        full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        guard let date = full.date(from: raw) ?? plain.date(from: raw) ?? day.date(from: raw) else {
            validation.fail(name, .invalidFormat, "must be an ISO 8601 time, e.g. 2026-11-30T09:00:00Z")
            return nil
        }
        return date
    }

    /// Throws 400 if any parameter was invalid.
    public func check() throws {
        if !validation.failures.isEmpty { throw AppError.invalidRequest(validation.failures) }
    }
}
