import Foundation
import Logging
import OTel

/// One JSON object per line on standard error, for Loki and its kin: `timestamp`, `level`,
/// `service`, `message`, `trace_id` and `span_id` of the current span (when tracing is on),
/// `request_id`, then the entry's metadata. What goes in is what the text format writes: the
/// code never logs patient data or secrets, in either format.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let service: String

    public init(label: String, metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.metadataProvider = metadataProvider
        // "hospital.reception" → "reception"; the process's own logger → "hospital".
        service = label.hasPrefix("hospital.") ? String(label.dropFirst("hospital.".count)) : label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: Any] = [
            "timestamp": Self.timestamp(Date()), "level": event.level.rawValue, "service": service,
            "message": event.message.description, "logger": label,
        ]
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let own = event.metadata { all.merge(own) { $1 } }
        for (key, value) in all {
            let name = Self.renamed[key] ?? key
            guard fields[name] == nil else { continue }
            fields[name] = Self.json(value)
        }
        guard
            var line = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        line.append(0x0A)
        FileHandle.standardError.write(line)
    }

    /// Loki's and OpenTelemetry's spelling for the keys that tie lines together.
    static let renamed = ["request-id": "request_id", "trace-id": "trace_id", "span-id": "span_id"]

    static func json(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(json)
        case .dictionary(let values): values.mapValues(json)
        }
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

/// The log format: `text` (a terminal's, the default) or `json` (the container's).
public enum LogFormat: String, Sendable {
    case text
    case json

    /// Sets up logging once for the process: `level`, `format`, and each line tagged with the
    /// current span's `trace_id` and `span_id` when tracing is on.
    public static func bootstrap(_ format: LogFormat, level: Logger.Level) {
        let provider = OTel.makeLoggingMetadataProvider()
        LoggingSystem.bootstrap(
            { label, provider in
                switch format {
                case .text:
                    var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
                    handler.logLevel = level
                    return handler
                case .json:
                    var handler = JSONLogHandler(label: label, metadataProvider: provider)
                    handler.logLevel = level
                    return handler
                }
            }, metadataProvider: provider)
    }
}
