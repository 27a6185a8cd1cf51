import Foundation

/// One event of the published language, in the envelope every service uses on the wire.
///
/// `receptionId` identifies the visit and is also the message key, so all events of one visit
/// land in one partition and keep their order.
public struct EventEnvelope: Sendable, Equatable {
    public var eventId: UUID
    public var occurredAt: Date
    public var receptionId: UUID
    public var producer: String
    public var traceparent: String?
    public var actor: String
    public var event: VisitEvent

    public var type: String { event.type }
    public var version: Int { event.version }

    public init(
        eventId: UUID = UUID(), occurredAt: Date, receptionId: UUID, producer: String,
        traceparent: String?, actor: String, event: VisitEvent
    ) {
        self.eventId = eventId
        self.occurredAt = occurredAt
        self.receptionId = receptionId
        self.producer = producer
        self.traceparent = traceparent
        self.actor = actor
        self.event = event
    }
}

extension EventEnvelope: Codable {
    enum CodingKeys: String, CodingKey {
        case eventId, type, version, occurredAt, receptionId, producer, traceparent, actor, payload
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        eventId = try c.decode(UUID.self, forKey: .eventId)
        occurredAt = try c.decode(Date.self, forKey: .occurredAt)
        receptionId = try c.decode(UUID.self, forKey: .receptionId)
        producer = try c.decode(String.self, forKey: .producer)
        traceparent = try c.decodeIfPresent(String.self, forKey: .traceparent)
        actor = try c.decode(String.self, forKey: .actor)
        let type = try c.decode(String.self, forKey: .type)
        let version = try c.decode(Int.self, forKey: .version)
        event = try VisitEvent.decode(type: type, version: version, from: c.superDecoder(forKey: .payload))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventId, forKey: .eventId)
        try c.encode(type, forKey: .type)
        try c.encode(version, forKey: .version)
        try c.encode(occurredAt, forKey: .occurredAt)
        try c.encode(receptionId, forKey: .receptionId)
        try c.encode(producer, forKey: .producer)
        try c.encodeIfPresent(traceparent, forKey: .traceparent)
        try c.encode(actor, forKey: .actor)
        try event.encodePayload(to: c.superEncoder(forKey: .payload))
    }
}

/// The wire format: JSON, dates as ISO 8601 with fractional seconds, UTC.
public enum EventCoding {
    public static func encode(_ envelope: EventEnvelope) throws -> Data {
        try encoder.encode(envelope)
    }

    public static func decode(_ data: Data) throws -> EventEnvelope {
        try decoder.decode(EventEnvelope.self, from: data)
    }

    private static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(Timestamp.format(date))
        }
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    private static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let raw = try c.decode(String.self)
            guard let date = Timestamp.parse(raw) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an ISO 8601 timestamp: \(raw)")
            }
            return date
        }
        return d
    }
}

/// ISO 8601 timestamps in UTC with millisecond precision, the one date format of the API and the events.
public enum Timestamp {
    /// Rounded to the nearest millisecond first: a time kept as ….2839999 in one place and read
    /// back from a database as ….284 in another is the same millisecond (formatting truncates).
    public static func format(_ date: Date) -> String {
        let rounded = Date(timeIntervalSince1970: (date.timeIntervalSince1970 * 1000).rounded() / 1000)
        return rounded.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
    }

    public static func parse(_ string: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt).parse(string) {
            return date
        }
        return try? Date.ISO8601FormatStyle(timeZone: .gmt).parse(string)
    }
}
