import Foundation
import Logging
import Messaging
import NIOCore
import NIOPosix
import SQLiteNIO
import Storage
import Synchronization

/// The embedded default's event transport: an append-only log in one SQLite file under the
/// data directory, shared by every `hospital` process on the machine.
///
/// Appends are durable when `publish` returns (a committed WAL transaction, synchronous FULL). Consumers in this process are
/// woken at once on publish; other processes' appends are picked up by polling.
///
/// Within one group every message is delivered in log order (a single partition, 0).
///
/// A consumer that keeps its own position (`consume(... positions:)`, as every service does)
/// leaves nothing here; `group_positions` serves only consumers without one (tools, tests).
public final class LocalEventLog: EventTransport, EventLogEnds {
    /// Appends and position commits go through `writer`, one at a time; reads use `reader`, so
    /// they never see the inside of an append that is still in progress.
    private let writer: SQLiteConnection
    private let reader: SQLiteConnection
    /// The writer's and the reader's threads: an append waiting for another process's lock
    /// never takes a thread some other part of this process needs (``SQLiteLockWait``).
    private let threads: NIOThreadPool
    private let logger: Logger
    private let pollInterval: Duration
    private let gate = WriteGate()
    private let listeners = Mutex<[WakeSignal]>([])
    private typealias PendingAppend = (messages: [OutgoingMessage], continuation: CheckedContinuation<Void, any Error>)
    private let appends = Mutex<(waiting: [PendingAppend], writing: Bool)>(([], false))

    public static let fileName = "events.sqlite"

    private init(
        writer: SQLiteConnection, reader: SQLiteConnection, threads: NIOThreadPool, logger: Logger,
        pollInterval: Duration
    ) {
        self.writer = writer
        self.reader = reader
        self.threads = threads
        self.logger = logger
        self.pollInterval = pollInterval
    }

    /// Opens (creating if needed) the log in `directory`.
    public static func open(
        directory: URL, pollInterval: Duration = .milliseconds(100), logger: Logger
    ) async throws -> LocalEventLog {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(fileName).path
        let threads = NIOThreadPool(numberOfThreads: 2)
        threads.start()
        var opened: [SQLiteConnection] = []
        do {
            for _ in 0..<2 {
                let connection = try await SQLiteConnection.open(
                    storage: .file(path: path), threadPool: threads, logger: logger,
                    on: MultiThreadedEventLoopGroup.singleton.any())
                opened.append(connection)
                _ = try await connection.query(SQLiteLockWait.pragma, [])
            }
            let log = LocalEventLog(
                writer: opened[0], reader: opened[1], threads: threads, logger: logger, pollInterval: pollInterval)
            try await log.migrate()
            return log
        } catch {
            for connection in opened { try? await connection.close() }
            try? await threads.shutdownGracefully()
            throw error
        }
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
                CREATE TABLE IF NOT EXISTS log_trims (
                    topic TEXT PRIMARY KEY,
                    through_position INTEGER NOT NULL
                )
                """, [])
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
        try? await threads.shutdownGracefully()
    }

    // MARK: EventPublisher

    /// Appends `messages`, durably, in order. Appends that arrive while one is being written are
    /// written together in the next transaction (group commit): one fsync for all of them.
    public func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let lead = appends.withLock { state -> Bool in
                state.waiting.append((messages, continuation))
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            if lead { Task { await self.writeAppends() } }
        }
        for listener in listeners.withLock({ $0 }) { listener.signal() }
    }

    /// Writes the waiting appends, all of them in one transaction, until none waits.
    private func writeAppends() async {
        while true {
            let round = appends.withLock { state -> [PendingAppend] in
                defer { state.waiting = [] }
                if state.waiting.isEmpty { state.writing = false }
                return state.waiting
            }
            guard !round.isEmpty else { return }
            do {
                try await append(round.flatMap(\.messages))
                for pending in round { pending.continuation.resume() }
            } catch {
                for pending in round { pending.continuation.resume(throwing: error) }
            }
        }
    }

    private func append(_ messages: [OutgoingMessage]) async throws {
        let now = ISO8601DateFormatter().string(from: Date())
        try await gate.withPermit {
            // IMMEDIATE takes the write lock up front, so two processes appending at once wait
            // for each other instead of failing on a stale snapshot.
            _ = try await writer.query("BEGIN IMMEDIATE", [])
            do {
                // Many rows per statement: each statement is a round trip to SQLite's thread.
                var rest = messages[...]
                while !rest.isEmpty {
                    let chunk = rest.prefix(200)
                    rest = rest.dropFirst(chunk.count)
                    let rows = Array(repeating: "(?, ?, ?, ?)", count: chunk.count).joined(separator: ", ")
                    _ = try await writer.query(
                        "INSERT INTO messages (topic, message_key, value, appended_at) VALUES \(rows)",
                        chunk.flatMap { message -> [SQLiteData] in
                            [.text(message.topic), .text(message.key), .blob(ByteBuffer(bytes: message.value)), .text(now)]
                        })
                }
                _ = try await writer.query("COMMIT", [])
            } catch {
                _ = try? await writer.query("ROLLBACK", [])
                throw error
            }
        }
    }

    // MARK: EventSubscriber

    public func consume(
        topics: [String], group: String, batchSize: Int, positions: StartPositions?,
        handler: @escaping @Sendable ([IncomingMessage]) async throws -> Void
    ) async throws {
        let wake = WakeSignal()
        listeners.withLock { $0.append(wake) }
        defer { listeners.withLock { $0.removeAll { $0 === wake } } }

        // Where to start: the consumer's own record if it keeps one, else this file's.
        var next: [String: Int64] = [:]
        if let positions {
            let known = try await positions(topics.map { TopicPartition(topic: $0, partition: 0) })
            for topic in topics {
                let start = known[TopicPartition(topic: topic, partition: 0)] ?? 0
                let head = try await headPosition(topic: topic)
                guard start <= head + 1 else {
                    // The consumer has applied events this log does not have: the log was
                    // replaced or restored from an older copy. Going on would skip new events.
                    throw LocalEventLogError.behindConsumer(group: group, consumerNext: start, head: head)
                }
                next[topic] = start
            }
        } else {
            for topic in topics { next[topic] = try await position(of: group, topic: topic) }
        }

        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            var delivered = 0
            for topic in topics {
                let batch = try await read(topic: topic, from: next[topic]!, limit: max(1, batchSize))
                guard let last = batch.last else { continue }
                try Task.checkCancellation()
                do {
                    try await handler(batch)
                } catch {
                    if Task.isCancelled { throw CancellationError() }
                    logger.debug("a batch will be delivered again", metadata: ["error": "\(loggable(error))"])
                    try await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(5))
                    continue
                }
                backoff = .milliseconds(100)
                next[topic] = last.offset + 1
                if positions == nil { try await commit(group: group, topic: topic, next: last.offset + 1) }
                delivered += batch.count
            }
            if delivered == 0 {
                await wake.wait(timeout: pollInterval)
            }
        }
    }

    // MARK: EventHistory

    public func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws
    {
        if let trimmed = try await trimmedThrough(topic: topic) {
            throw LocalEventLogError.trimmed(topic: topic, through: trimmed)
        }
        try await retained(topic: topic, handler: handler)
    }

    /// Delivers what `topic` holds now, oldest first, whether or not retention trimmed its start
    /// (for records where the newest is what matters: the audit checkpoints).
    public func retained(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void)
        async throws
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

    /// The position of the newest message of `topic` (0 when it has none).
    public func head(topic: String) async throws -> Int64 {
        try await headPosition(topic: topic)
    }

    /// The offset the next message of `topic` will get (one partition, 0).
    public func endOffsets(topic: String) async throws -> [Int32: Int64] {
        [0: try await headPosition(topic: topic) + 1]
    }

    /// Consumers keep their positions in their own databases here, not in the log.
    public func groupPositions(topic: String, group: String) async throws -> [Int32: Int64]? { nil }

    /// The number of messages a group that keeps its position here has not yet acknowledged.
    public func lag(group: String, topic: String) async throws -> Int64 {
        let next = try await position(of: group, topic: topic)
        let rows = try await reader.query(
            "SELECT COUNT(*) AS n FROM messages WHERE topic = ? AND position >= ?", [.text(topic), .integer(Int(next))])
        return Int64(rows.first?.column("n")?.integer ?? 0)
    }

    /// The newest position `topic` has had, even if retention has since deleted it.
    private func headPosition(topic: String) async throws -> Int64 {
        let rows = try await reader.query(
            """
            SELECT MAX(head) AS head FROM (
                SELECT COALESCE(MAX(position), 0) AS head FROM messages WHERE topic = ?
                UNION ALL SELECT through_position FROM log_trims WHERE topic = ?)
            """, [.text(topic), .text(topic)])
        return Int64(rows.first?.column("head")?.integer ?? 0)
    }

    /// The last position retention deleted from `topic`, if it deleted any.
    private func trimmedThrough(topic: String) async throws -> Int64? {
        let rows = try await reader.query(
            "SELECT through_position FROM log_trims WHERE topic = ?", [.text(topic)])
        return rows.first?.column("through_position")?.integer.map(Int64.init)
    }

    // MARK: Retention

    /// Deletes the events appended before `date`, a bounded batch per transaction, and records
    /// how far each topic was trimmed (a replay of a trimmed topic is refused: it would rebuild
    /// a read model without its oldest visits). Returns how many events went.
    @discardableResult
    public func trim(appendedBefore date: Date) async throws -> Int {
        let cutoff = ISO8601DateFormatter().string(from: date)
        var total = 0
        while true {
            let deleted = try await gate.withPermit {
                _ = try await writer.query("BEGIN IMMEDIATE", [])
                do {
                    let rows = try await writer.query(
                        """
                        DELETE FROM messages WHERE position IN (
                            SELECT position FROM messages WHERE appended_at < ? ORDER BY position LIMIT 1000)
                        RETURNING topic, position
                        """, [.text(cutoff)])
                    var through: [String: Int] = [:]
                    for row in rows {
                        guard let topic = row.column("topic")?.string, let position = row.column("position")?.integer
                        else { continue }
                        through[topic] = max(through[topic] ?? 0, position)
                    }
                    for (topic, position) in through {
                        _ = try await writer.query(
                            """
                            INSERT INTO log_trims (topic, through_position) VALUES (?, ?)
                            ON CONFLICT (topic) DO UPDATE SET through_position =
                                MAX(log_trims.through_position, excluded.through_position)
                            """, [.text(topic), .integer(position)])
                    }
                    _ = try await writer.query("COMMIT", [])
                    return rows.count
                } catch {
                    _ = try? await writer.query("ROLLBACK", [])
                    throw error
                }
            }
            total += deleted
            if deleted < 1000 { return total }
        }
    }

    /// Trims events older than `keep` every `interval` until the task is canceled.
    public func runRetention(keep: Duration, interval: Duration = .seconds(600)) async {
        while !Task.isCancelled {
            do {
                let deleted = try await trim(appendedBefore: Date().addingTimeInterval(-keep.timeInterval))
                if deleted > 0 { logger.info("event log retention", metadata: ["deleted": "\(deleted)"]) }
            } catch {
                logger.warning("event log retention failed", metadata: ["error": "\(loggable(error))"])
            }
            try? await Task.sleep(for: interval)
        }
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

public enum LocalEventLogError: Error, CustomStringConvertible {
    case behindConsumer(group: String, consumerNext: Int64, head: Int64)
    case trimmed(topic: String, through: Int64)

    public var description: String {
        switch self {
        case .behindConsumer(let group, let next, let head):
            "the event log ends at \(head), but \(group) has applied events up to \(next - 1): "
                + "was \(LocalEventLog.fileName) replaced or restored from an older copy?"
        case .trimmed(let topic, let through):
            "\(topic) no longer holds its whole history: retention deleted it through position \(through) "
                + "(HOSPITAL_EVENT_LOG_RETENTION_DAYS)"
        }
    }
}

extension LocalEventLog {
    /// The last position of the log in `file` (nil when it is empty), read without opening the
    /// log for appends: for a backup's copy.
    public static func lastPosition(in file: URL, logger: Logger) async throws -> Int64? {
        let connection = try await SQLiteConnection.open(storage: .file(path: file.path), logger: logger)
        do {
            let row = try await connection.query("SELECT max(position) AS last FROM messages", []).first
            try await connection.close()
            return row?.column("last")?.integer.map(Int64.init)
        } catch {
            try? await connection.close()
            throw error
        }
    }
}
