import Foundation
import Logging
import Messaging
import NIOCore
import SQLiteNIO
import Synchronization

/// The embedded default's event transport: an append-only log in one SQLite file under the
/// data directory, shared by every `hospital` process on the machine.
///
/// Appends are durable when `publish` returns (a committed WAL transaction). Each consumer group
/// keeps its next position in the same file and moves it only after its handler returned, so a
/// process killed at any point resumes where it stopped and loses nothing; what it handled but
/// had not yet acknowledged comes again and the inbox drops it. Consumers in this process are
/// woken at once on publish; other processes' appends are picked up by polling.
///
/// Within one group every message is delivered in log order (a single partition, 0).
public final class LocalEventLog: EventTransport {
    /// Appends and position commits go through `writer`, one at a time; reads use `reader`, so
    /// they never see the inside of an append that is still in progress.
    private let writer: SQLiteConnection
    private let reader: SQLiteConnection
    private let logger: Logger
    private let pollInterval: Duration
    private let gate = WriteGate()
    private let listeners = Mutex<[WakeSignal]>([])

    public static let fileName = "events.sqlite"

    private init(writer: SQLiteConnection, reader: SQLiteConnection, logger: Logger, pollInterval: Duration) {
        self.writer = writer
        self.reader = reader
        self.logger = logger
        self.pollInterval = pollInterval
    }

    /// Opens (creating if needed) the log in `directory`.
    public static func open(
        directory: URL, pollInterval: Duration = .milliseconds(100), logger: Logger
    ) async throws -> LocalEventLog {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(fileName).path
        let writer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        let log: LocalEventLog
        do {
            log = LocalEventLog(
                writer: writer, reader: try await SQLiteConnection.open(storage: .file(path: path), logger: logger),
                logger: logger, pollInterval: pollInterval)
            try await log.migrate()
        } catch {
            try? await writer.close()
            throw error
        }
        return log
    }

    private func migrate() async throws {
        // WAL lets readers in other processes work while one process appends; FULL makes every
        // committed append survive a power loss, not only a crash of the process.
        _ = try await writer.query("PRAGMA journal_mode = WAL", [])
        _ = try await writer.query("PRAGMA synchronous = FULL", [])
        try await gate.withPermit {
            _ = try await writer.query(
                """
                CREATE TABLE IF NOT EXISTS messages (
                    position INTEGER PRIMARY KEY AUTOINCREMENT,
                    topic TEXT NOT NULL,
                    message_key TEXT,
                    value BLOB NOT NULL,
                    appended_at TEXT NOT NULL
                )
                """, [])
            _ = try await writer.query(
                "CREATE INDEX IF NOT EXISTS messages_topic_position ON messages (topic, position)", [])
            _ = try await writer.query(
                """
                CREATE TABLE IF NOT EXISTS group_positions (
                    group_id TEXT NOT NULL,
                    topic TEXT NOT NULL,
                    next_position INTEGER NOT NULL,
                    PRIMARY KEY (group_id, topic)
                )
                """, [])
        }
    }

    public func close() async {
        try? await reader.close()
        try? await writer.close()
    }

    // MARK: EventPublisher

    public func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        let now = ISO8601DateFormatter().string(from: Date())
        try await gate.withPermit {
            // IMMEDIATE takes the write lock up front, so two processes appending at once wait
            // for each other instead of failing on a stale snapshot.
            _ = try await writer.query("BEGIN IMMEDIATE", [])
            do {
                for message in messages {
                    _ = try await writer.query(
                        "INSERT INTO messages (topic, message_key, value, appended_at) VALUES (?, ?, ?, ?)",
                        [
                            .text(message.topic), .text(message.key),
                            .blob(ByteBuffer(bytes: message.value)), .text(now),
                        ])
                }
                _ = try await writer.query("COMMIT", [])
            } catch {
                _ = try? await writer.query("ROLLBACK", [])
                throw error
            }
        }
        for listener in listeners.withLock({ $0 }) { listener.signal() }
    }

    // MARK: EventSubscriber

    public func consume(
        topics: [String], group: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws {
        let wake = WakeSignal()
        listeners.withLock { $0.append(wake) }
        defer { listeners.withLock { $0.removeAll { $0 === wake } } }

        while !Task.isCancelled {
            var delivered = 0
            for topic in topics {
                var next = try await position(of: group, topic: topic)
                let batch = try await read(topic: topic, from: next, limit: 200)
                for message in batch {
                    try Task.checkCancellation()
                    try await handler(message)
                    next = message.offset + 1
                    try await commit(group: group, topic: topic, next: next)
                    delivered += 1
                }
            }
            if delivered == 0 {
                await wake.wait(timeout: pollInterval)
            }
        }
    }

    // MARK: EventHistory

    public func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws
    {
        let end = try await headPosition(topic: topic)
        var next: Int64 = 0
        while next <= end {
            let batch = try await read(topic: topic, from: next, limit: 500).filter { $0.offset <= end }
            guard !batch.isEmpty else { break }
            for message in batch { try await handler(message) }
            next = batch.last!.offset + 1
        }
    }

    // MARK: Inspection

    /// The number of messages a group has not yet acknowledged (its lag).
    public func lag(group: String, topic: String) async throws -> Int64 {
        let next = try await position(of: group, topic: topic)
        let rows = try await reader.query(
            "SELECT COUNT(*) AS n FROM messages WHERE topic = ? AND position >= ?", [.text(topic), .integer(Int(next))])
        return Int64(rows.first?.column("n")?.integer ?? 0)
    }

    private func headPosition(topic: String) async throws -> Int64 {
        let rows = try await reader.query(
            "SELECT COALESCE(MAX(position), 0) AS head FROM messages WHERE topic = ?", [.text(topic)])
        return Int64(rows.first?.column("head")?.integer ?? 0)
    }

    private func position(of group: String, topic: String) async throws -> Int64 {
        let rows = try await reader.query(
            "SELECT next_position FROM group_positions WHERE group_id = ? AND topic = ?", [.text(group), .text(topic)])
        return Int64(rows.first?.column("next_position")?.integer ?? 0)
    }

    private func commit(group: String, topic: String, next: Int64) async throws {
        try await gate.withPermit {
            _ = try await writer.query(
                """
                INSERT INTO group_positions (group_id, topic, next_position) VALUES (?, ?, ?)
                ON CONFLICT (group_id, topic) DO UPDATE SET next_position = excluded.next_position
                """, [.text(group), .text(topic), .integer(Int(next))])
        }
    }

    private func read(topic: String, from position: Int64, limit: Int) async throws -> [IncomingMessage] {
        let rows = try await reader.query(
            "SELECT position, message_key, value FROM messages WHERE topic = ? AND position >= ? ORDER BY position LIMIT ?",
            [.text(topic), .integer(Int(position)), .integer(limit)])
        return rows.map { row in
            var value = Data()
            if case .blob(let buffer)? = row.column("value") { value = Data(buffer.readableBytesView) }
            return IncomingMessage(
                topic: topic, partition: 0, offset: Int64(row.column("position")?.integer ?? 0),
                key: row.column("message_key")?.string, value: value)
        }
    }
}
