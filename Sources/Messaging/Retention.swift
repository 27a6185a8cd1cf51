import FluentKit
import Foundation
import Logging
import SQLKit
import Storage

/// How long a service keeps the messaging rows it no longer needs for its work: outbox rows
/// after they were published, inbox entries after their event was handled. Pending outbox rows,
/// dead letters and consumer positions are never swept.
public struct RetentionSettings: Sendable, Equatable {
    /// Published outbox rows older than this go; nil keeps them for good.
    public var outbox: Duration?
    /// Inbox entries older than this go; nil keeps them for good. A copy of an event that
    /// arrives after its entry went would be applied again, so keep this well beyond the
    /// longest a redelivery can take (the consumer's own position already skips what it
    /// applied; the inbox is the second guard).
    public var inbox: Duration?
    /// How often the sweep runs.
    public var interval: Duration

    public init(outbox: Duration? = .days(7), inbox: Duration? = .days(30), interval: Duration = .seconds(600)) {
        self.outbox = outbox
        self.inbox = inbox
        self.interval = interval
    }
}

extension Duration {
    public static func days(_ n: Int) -> Duration { .seconds(n * 86_400) }

    /// The duration as a `TimeInterval`, for date arithmetic.
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}

/// Deletes what `RetentionSettings` lets go, a bounded batch per transaction so that commands
/// and the consumer never wait long behind it.
public enum Retention {
    public struct Report: Sendable, Equatable {
        public var outbox = 0
        public var inbox = 0
        public init(outbox: Int = 0, inbox: Int = 0) {
            self.outbox = outbox
            self.inbox = inbox
        }
    }

    static let batch = 1000

    public static func sweep(
        _ store: ServiceStore, settings: RetentionSettings, now: Date = Date()
    ) async throws -> Report {
        var report = Report()
        if let keep = settings.outbox {
            let before = now.addingTimeInterval(-keep.timeInterval)
            report.outbox = try await deleteAll(store) { db in
                try await db.sql.raw(
                    """
                    DELETE FROM outbox WHERE sequence IN (SELECT sequence FROM outbox
                    WHERE published_at IS NOT NULL AND published_at < \(bind: before) LIMIT \(literal: batch)) RETURNING sequence
                    """
                ).all().count
            }
        }
        if let keep = settings.inbox {
            let before = now.addingTimeInterval(-keep.timeInterval)
            report.inbox = try await deleteAll(store) { db in
                try await db.sql.raw(
                    """
                    DELETE FROM inbox WHERE event_id IN (SELECT event_id FROM inbox
                    WHERE handled_at < \(bind: before) LIMIT \(literal: batch)) RETURNING event_id
                    """
                ).all().count
            }
        }
        return report
    }

    /// Runs `deleteBatch` (which answers how many rows it deleted) until a batch deletes fewer
    /// than `batch`; returns how many went in all.
    private static func deleteAll(
        _ store: ServiceStore, _ deleteBatch: @escaping @Sendable (any Database) async throws -> Int
    ) async throws -> Int {
        var total = 0
        while true {
            let deleted = try await store.write(deleteBatch)
            total += deleted
            if deleted < batch { return total }
        }
    }


    /// Sweeps every `settings.interval` until the task is canceled, the first time one interval
    /// after the start (a start is busy enough); a failed sweep is logged and tried again next time.
    public static func run(_ store: ServiceStore, settings: RetentionSettings, logger: Logger) async {
        guard settings.outbox != nil || settings.inbox != nil else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.interval)
            if Task.isCancelled { return }
            do {
                let report = try await sweep(store, settings: settings)
                if report.outbox + report.inbox > 0 {
                    logger.info(
                        "retention sweep",
                        metadata: ["outbox": "\(report.outbox)", "inbox": "\(report.inbox)"])
                }
            } catch {
                logger.warning("retention sweep failed", metadata: ["error": "\(loggable(error))"])
            }
        }
    }
}
