import Crypto
import FluentKit
import Foundation
import Logging
import Messaging
import NIOCore
import NIOFoundationCompat
import SQLKit
import Storage
import Synchronization

/// One line of the audit trail: who read or changed which visit's data, when, and how it ended.
public struct AuditEntry: Sendable, Equatable, Codable {
    public var seq: Int
    public var at: Date
    public var user: String
    public var role: String
    /// The operation, e.g. `GET /receptions/:id`.
    public var action: String
    /// The visits whose data the answer held (a list: every row it showed).
    public var receptionIds: [UUID]
    /// The chart number the answer or the search named (several, comma-separated, for a search).
    public var patientId: String?
    /// The HTTP status of the answer.
    public var outcome: Int
    /// The client's address (and, through the gateway, the address it forwarded).
    public var client: String
    public var service: String
    public var hash: String

    /// The hash of this entry, chained to the one before.
    static func hash(previous: String, _ e: AuditEntry) -> String {
        let fields = [
            String(e.seq), String(format: "%.6f", e.at.timeIntervalSince1970), e.user, e.role, e.action,
            e.receptionIds.map(\.uuidString).joined(separator: ","), e.patientId ?? "", String(e.outcome), e.client,
        ]
        let line = previous + "\n" + fields.joined(separator: "\u{1F}")
        return SHA256.hash(data: Data(line.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// The audit trail of one service: every read and change of patient data, append-only and
/// tamper-evident. Each entry is sealed with an HMAC under the audit key (kept out of the
/// database) over its content and the seal before it; checkpoints of the chain's head are
/// published on the event log and in the logs, so a truncation or a rewrite by someone holding
/// the database (and even the key) shows against them; retention removes old entries only
/// through a sealed sweep (see `AuditIntegrity.swift` and docs/security.md). Requests never wait
/// for it: entries are buffered and written in batches by one writer, in a database of their own
/// (on SQLite a file of its own, so they never queue behind the commands' writes).
public final class AuditTrail: Sendable {
    public static let table = "audit_log"
    /// The topic the checkpoints are published on (keyed by service).
    public static let checkpointTopic = "hospital.audit-checkpoints"
    public static let genesis = String(repeating: "0", count: 64)
    /// The shortest retention there is (HOSPITAL_AUDIT_RETENTION_DAYS refuses less): a sweep of
    /// anything younger is not retention's.
    public static let minimumRetention: Duration = .seconds(730 * 86_400)
    static let columns = [
        "seq", "at", "user_name", "role", "action", "reception_ids", "patient_id", "outcome", "client", "hash",
        "key_id", "chain_start",
    ]

    let service: String
    /// The engine of the trail's database.
    let engine: DatabaseEngine.Kind
    let fluent: @Sendable () -> any Database
    let logger: Logger
    let keys: AuditKeys
    private let publisher: (any EventPublisher)?
    private let checkpointInterval: Duration
    /// Throws when the trail's database can no longer keep entries (its file gone): they stay queued.
    private let storage: (@Sendable () throws -> Void)?
    private let pending = Mutex<[Pending]>([])
    /// The head last published: a checkpoint is published only when the head moved.
    private let published = Mutex<(seq: Int, head: String)?>(nil)
    /// How long entries are kept (nil: for good); two years by default.
    let retention: Duration?

    /// - Parameters:
    ///   - keys: the key that seals new entries, and retired ones to check older entries with.
    ///   - checkpoints: where checkpoints are published (the event log); nil publishes them in
    ///     the logs only.
    ///   - checkpointInterval: how often the head is published when it moved: entries written
    ///     since the last checkpoint can be removed from the end without a trace.
    public init(
        service: String, engine: DatabaseEngine.Kind, retention: Duration? = .days(730), keys: AuditKeys,
        checkpoints: (any EventPublisher)?,
        checkpointInterval: Duration = .seconds(10), storage: (@Sendable () throws -> Void)? = nil, logger: Logger,
        database: @escaping @Sendable () -> any Database
    ) {
        self.storage = storage
        self.service = service
        self.engine = engine
        self.retention = retention
        self.keys = keys
        self.publisher = checkpoints
        self.checkpointInterval = checkpointInterval
        self.logger = logger
        self.fluent = database
    }

    private func database() throws -> any SQLDatabase { try fluent().sql }

    /// A request's entry before the writer reads its answer for the visits it held.
    struct Pending: Sendable {
        var entry: AuditEntry
        var answer: ByteBuffer?
        var pathId: UUID?
    }

    /// Queues an entry; the writer stores it within its interval.
    public func record(
        user: String, role: String, action: String, receptionIds: [UUID] = [], patientId: String? = nil,
        answer: ByteBuffer? = nil, pathId: UUID? = nil, outcome: Int, client: String, at: Date = Date()
    ) {
        let entry = AuditEntry(
            seq: 0, at: at, user: user, role: role, action: action, receptionIds: receptionIds, patientId: patientId,
            outcome: outcome, client: client, service: service, hash: "")
        pending.withLock { $0.append(Pending(entry: entry, answer: answer, pathId: pathId)) }
    }

    /// The visits (and chart number) an answer held: every row of a list, or the one record.
    static func subjects(of pending: Pending) -> AuditEntry {
        var entry = pending.entry
        let ownIds = entry.action.contains(" /receptions")
        guard let answer = pending.answer,
            let json = try? JSONSerialization.jsonObject(with: Data(buffer: answer)) as? [String: Any]
        else {
            if let id = pending.pathId, ownIds || entry.action.contains(" /patientManagements") {
                entry.receptionIds = [id]
            }
            return entry
        }
        var ids: Set<UUID> = []
        for row in (json["items"] as? [[String: Any]]) ?? [json] {
            let raw = row["receptionId"] as? String ?? (ownIds ? row["id"] as? String : nil)
            if let id = raw.flatMap(UUID.init(uuidString:)) { ids.insert(id) }
            if entry.patientId == nil { entry.patientId = row["chartNumber"] as? String }
        }
        if !ids.isEmpty { entry.receptionIds = ids.sorted { $0.uuidString < $1.uuidString } }
        return entry
    }

    /// Writes what is queued, in one transaction: each entry numbered and chained after the last
    /// one stored. On failure the entries stay queued for the next try.
    public func flush() async throws {
        let batch = pending.withLock { queued in
            defer { queued = [] }
            return queued
        }
        guard !batch.isEmpty else { return }
        do {
            try storage?()
            if engine == .sqlite {
                // The trail's own file: WAL without an fsync per batch (a power cut can lose the
                // last batches, as a crash loses what waits in memory), so it does not compete
                // with the commands' durable writes for the disk and the database threads.
                try await database().raw("PRAGMA synchronous = NORMAL").run()
            }
            try await DatabaseEngine.of(engine).writeTransaction(on: fluent()) { transaction in
                try await self.append(batch, on: try transaction.sql)
            }
        } catch {
            pending.withLock { $0.insert(contentsOf: batch, at: 0) }
            throw error
        }
    }

    private func append(_ batch: [Pending], on db: any SQLDatabase) async throws {
        if engine == .postgresql {
            // Replicas of a service share the chain: one writer at a time extends it.
            try await db.raw("SELECT pg_advisory_xact_lock(7412001)").run()
        }
        let last = try await db.select().columns("seq", "hash", "key_id").from(Self.table)
            .orderBy("seq", .descending).limit(1).first()
        var seq: Int
        var previous: String
        // The keyed chain starts (a sealed mark) on an empty trail or after entries written before
        // the key: an unkeyed oldest entry is then believed only if a start follows it.
        var starts = false
        if let last {
            seq = try last.decode(column: "seq", as: Int.self)
            previous = try last.decode(column: "hash", as: String.self)
            starts = try last.decode(column: "key_id", as: String?.self) == nil
        } else {
            switch try await Self.latestSweep(db, service: service, keys: keys) {
            case .genuine(let sweep):
                // Retention removed every entry: the chain goes on from the last one it removed.
                (seq, previous) = (sweep.throughSeq, sweep.throughHash)
            case .none:
                (seq, previous, starts) = (0, Self.genesis, true)
            case .forged:
                // A sweep not sealed by the keys given (a rotated key not in HOSPITAL_AUDIT_OLD_KEYS,
                // or a forgery): starting the chain again would write entries it says were removed.
                logger.critical(
                    "the audit trail's last retention sweep is not sealed by the audit keys given: entries are not written (give the retired key in HOSPITAL_AUDIT_OLD_KEYS, or see `hospital audit verify`)"
                )
                throw AuditKeyError("a retention sweep not sealed by the audit keys given")
            }
        }
        let key = keys.current
        var rows: [[any SQLExpression]] = []
        for pending in batch {
            var entry = Self.subjects(of: pending)
            seq += 1
            entry.seq = seq
            entry.hash = AuditEntry.seal(previous: previous, entry, key: key, start: starts)
            previous = entry.hash
            rows.append([
                SQLBind(entry.seq), SQLBind(entry.at.timeIntervalSince1970), SQLBind(entry.user),
                SQLBind(entry.role), SQLBind(entry.action),
                SQLBind(entry.receptionIds.map(\.uuidString).joined(separator: ",")), SQLBind(entry.patientId),
                SQLBind(entry.outcome), SQLBind(entry.client), SQLBind(entry.hash), SQLBind(key.id),
                SQLBind(starts ? 1 : 0),
            ])
            starts = false
        }
        for chunk in stride(from: 0, to: rows.count, by: 200) {
            let insert = db.insert(into: Self.table).columns(Self.columns)
            for row in rows[chunk..<min(chunk + 200, rows.count)] { _ = insert.values(row) }
            try await insert.run()
        }
    }

    /// Writes every `interval` until canceled; publishes a checkpoint when the head moved, every
    /// `checkpointInterval`; sweeps entries past retention hourly. `finish` writes what is left.
    public func run(interval: Duration = .milliseconds(200)) async {
        var lastSweep = ContinuousClock.now
        var lastCheckpoint = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            // What is left is `finish`'s, once the requests have ended.
            if Task.isCancelled { return }
            do {
                try await flush()
            } catch {
                logger.error(
                    "the audit trail could not be written; retrying", metadata: ["error": "\(loggable(error))"])
            }
            if ContinuousClock.now - lastCheckpoint >= checkpointInterval {
                lastCheckpoint = .now
                await publishCheckpoint()
            }
            if let retention, ContinuousClock.now - lastSweep > .seconds(3600) {
                lastSweep = .now
                do {
                    try await sweep(before: Date().addingTimeInterval(-Double(retention.components.seconds)))
                } catch {
                    logger.error("audit retention failed", metadata: ["error": "\(loggable(error))"])
                }
            }
        }
    }

    /// At a stop, after `run` and the requests have ended: writes the last entries (three tries)
    /// and a checkpoint of them. Throws when entries could not be written: a stop that loses
    /// audited reads says so, and fails.
    public func finish() async throws {
        for attempt in 1...3 {
            do {
                try await flush()
                break
            } catch {
                let left = pending.withLock { $0.count }
                logger.log(
                    level: attempt == 3 ? .critical : .error,
                    attempt == 3
                        ? "the audit trail could not be written at shutdown: entries lost"
                        : "the audit trail could not be written at shutdown; retrying",
                    metadata: ["entries": "\(left)", "error": "\(loggable(error))"])
                if attempt == 3 { throw error }
            }
        }
        await publishCheckpoint()
    }

    /// Publishes a sealed checkpoint of the head (on the event log, and in the logs), if it moved
    /// since the last one this process published. A failure is logged; the next one catches up.
    public func publishCheckpoint(now: Date = Date()) async {
        do {
            // Only of a trail that is there, and kept: a checkpoint of entries a crash could still
            // take would later read as tampering.
            try storage?()
            if engine == .sqlite {
                _ = try await database().raw("PRAGMA wal_checkpoint(FULL)").all()
            }
            guard
                let last = try await database().select().columns("seq", "hash").from(Self.table)
                    .orderBy("seq", .descending).limit(1).first()
            else { return }
            let seq = try last.decode(column: "seq", as: Int.self)
            let head = try last.decode(column: "hash", as: String.self)
            if let published = published.withLock({ $0 }), published.seq == seq, published.head == head { return }
            let checkpoint = AuditCheckpoint(service: service, seq: seq, head: head, at: now, key: keys.current)
            let json = try JSONEncoder().encode(checkpoint)
            logger.info("audit checkpoint", metadata: ["audit_checkpoint": .string(String(decoding: json, as: UTF8.self))])
            if let publisher {
                try await publisher.publish([OutgoingMessage(topic: Self.checkpointTopic, key: service, value: json)])
            }
            published.withLock { $0 = (seq, head) }
        } catch {
            logger.warning(
                "an audit checkpoint could not be published; the next one will", metadata: ["error": "\(loggable(error))"])
        }
    }

    /// Removes the entries written before `cutoff` (retention), through a sealed sweep that says
    /// how far and what the last removed entry was sealed as: the trail then begins after it, and
    /// the database's delete guard lets only those go.
    public func sweep(before cutoff: Date, now: Date = Date()) async throws {
        let key = keys.current
        try await DatabaseEngine.of(engine).writeTransaction(on: fluent()) { transaction in
            let db = try transaction.sql
            if self.engine == .postgresql { try await db.raw("SELECT pg_advisory_xact_lock(7412001)").run() }
            guard
                let last = try await db.select().columns("seq", "hash").from(Self.table)
                    .where("at", .lessThan, cutoff.timeIntervalSince1970).orderBy("seq", .descending).limit(1).first()
            else { return }
            let through = try last.decode(column: "seq", as: Int.self)
            let hash = try last.decode(column: "hash", as: String.self)
            let at = now.timeIntervalSince1970
            let mac = key.mac(
                AuditSweep.sealedText(service: self.service, throughSeq: through, throughHash: hash, at: at, keyId: key.id))
            try await db.insert(into: AuditSweep.table)
                .columns("through_seq", "through_hash", "at", "key_id", "mac")
                .values(SQLBind(through), SQLBind(hash), SQLBind(at), SQLBind(key.id), SQLBind(mac)).run()
            try await db.delete(from: Self.table).where("seq", .lessThanOrEqual, through).run()
        }
    }

    /// Entries matching the filters, oldest first.
    public func entries(
        receptionId: UUID? = nil, patientId: String? = nil, user: String? = nil, from: Date? = nil, to: Date? = nil,
        limit: Int = 1000
    ) async throws -> [AuditEntry] {
        let query = try database().select().columns("*").from(Self.table)
        if let receptionId { query.where("reception_ids", .like, "%\(receptionId.uuidString)%") }
        if let patientId {
            // An entry names one chart number, or several (a search) separated by commas.
            query.where { group in
                group.where("patient_id", .equal, patientId)
                    .orWhere("patient_id", .like, "\(patientId),%")
                    .orWhere("patient_id", .like, "%,\(patientId)")
                    .orWhere("patient_id", .like, "%,\(patientId),%")
            }
        }
        if let user { query.where("user_name", .equal, user) }
        if let from { query.where("at", .greaterThanOrEqual, from.timeIntervalSince1970) }
        if let to { query.where("at", .lessThan, to.timeIntervalSince1970) }
        return try await query.orderBy("seq").limit(limit).all().map { try Self.entry($0, service: service) }
    }

    static func entry(_ row: any SQLRow, service: String) throws -> AuditEntry {
        let ids = try row.decode(column: "reception_ids", as: String.self)
        return AuditEntry(
            seq: try row.decode(column: "seq", as: Int.self),
            at: Date(timeIntervalSince1970: try row.decode(column: "at", as: Double.self)),
            user: try row.decode(column: "user_name", as: String.self),
            role: try row.decode(column: "role", as: String.self),
            action: try row.decode(column: "action", as: String.self),
            receptionIds: ids.split(separator: ",").compactMap { UUID(uuidString: String($0)) },
            patientId: try row.decode(column: "patient_id", as: String?.self),
            outcome: try row.decode(column: "outcome", as: Int.self),
            client: try row.decode(column: "client", as: String.self), service: service,
            hash: try row.decode(column: "hash", as: String.self))
    }

    /// The audit table and its indexes, in the audit database.
    public struct Migration: AsyncMigration {
        public var name: String { "A001_AuditLog" }
        let engine: DatabaseEngine.Kind
        public init(engine: DatabaseEngine.Kind) { self.engine = engine }

        public func prepare(on database: any Database) async throws {
            let sql = try database.sql
            try await sql.create(table: AuditTrail.table).ifNotExists()
                .column("seq", type: .bigint, .primaryKey(autoIncrement: false))
                .column("at", type: .custom(SQLRaw("DOUBLE PRECISION")), .notNull)
                .column("user_name", type: .text, .notNull)
                .column("role", type: .text, .notNull)
                .column("action", type: .text, .notNull)
                .column("reception_ids", type: .text, .notNull)
                .column("patient_id", type: .text)
                .column("outcome", type: .int, .notNull)
                .column("client", type: .text, .notNull)
                .column("hash", type: .text, .notNull)
                .run()
            try await sql.create(index: "audit_log_user").on(AuditTrail.table).column("user_name").column("seq").run()
            try await sql.create(index: "audit_log_at").on(AuditTrail.table).column("at").run()
            try await sql.create(index: "audit_log_patient").on(AuditTrail.table).column("patient_id").run()
            // Append-only where the database can say so: rows may be added, never changed.
            switch engine {
            case .sqlite:
                try await sql.raw(
                    """
                    CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
                    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
                    """
                ).run()
            case .postgresql:
                try await sql.raw(
                    """
                    CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
                    BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$ LANGUAGE plpgsql
                    """
                ).run()
                try await sql.raw(
                    """
                    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
                    """
                ).run()
            }
        }

        public func revert(on database: any Database) async throws {
            try await database.sql.drop(table: AuditTrail.table).ifExists().run()
        }
    }
}

extension AuditTrail {
    /// The trail's migrations, in order (a backup's check knows the same list).
    public static func migrations(engine: DatabaseEngine.Kind) -> [any FluentKit.Migration] {
        [Migration(engine: engine), KeyedMigration(engine: engine)]
    }

    /// Seals (HMAC under the audit key: `key_id` names it), sealed retention sweeps, and a delete
    /// guard: rows go only through a sweep, never by a DELETE of someone else's choosing.
    public struct KeyedMigration: AsyncMigration {
        public var name: String { "A002_AuditKeyed" }
        let engine: DatabaseEngine.Kind
        public init(engine: DatabaseEngine.Kind) { self.engine = engine }

        public func prepare(on database: any Database) async throws {
            let sql = try database.sql
            try await sql.alter(table: AuditTrail.table).column("key_id", type: .text).run()
            try await sql.alter(table: AuditTrail.table).column("chain_start", type: .int).run()
            try await sql.create(table: AuditSweep.table).ifNotExists()
                .column("through_seq", type: .bigint, .primaryKey(autoIncrement: false))
                .column("through_hash", type: .text, .notNull)
                .column("at", type: .custom(SQLRaw("DOUBLE PRECISION")), .notNull)
                .column("key_id", type: .text, .notNull)
                .column("mac", type: .text, .notNull)
                .run()
            let refused = "the audit trail is append-only: entries go only through a retention sweep"
            switch engine {
            case .sqlite:
                try await sql.raw(
                    """
                    CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
                    WHEN OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_sweeps)
                    BEGIN SELECT RAISE(ABORT, '\(unsafeRaw: refused)'); END
                    """
                ).run()
                for (trigger, event) in [("audit_sweeps_no_update", "UPDATE"), ("audit_sweeps_no_delete", "DELETE")] {
                    try await sql.raw(
                        """
                        CREATE TRIGGER IF NOT EXISTS \(unsafeRaw: trigger) BEFORE \(unsafeRaw: event) ON audit_sweeps
                        BEGIN SELECT RAISE(ABORT, 'the audit sweeps are append-only'); END
                        """
                    ).run()
                }
            case .postgresql:
                try await sql.raw(
                    """
                    CREATE OR REPLACE FUNCTION audit_log_delete_guard() RETURNS trigger AS $$
                    BEGIN
                        IF OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_sweeps) THEN
                            RAISE EXCEPTION '\(unsafeRaw: refused)';
                        END IF;
                        RETURN OLD;
                    END $$ LANGUAGE plpgsql
                    """
                ).run()
                try await sql.raw(
                    """
                    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
                    FOR EACH ROW EXECUTE FUNCTION audit_log_delete_guard()
                    """
                ).run()
                // TRUNCATE fires no row trigger: refused outright, on both tables.
                try await sql.raw(
                    """
                    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
                    """
                ).run()
                for (trigger, event) in [
                    ("audit_sweeps_no_update", "UPDATE OR DELETE"), ("audit_sweeps_no_truncate", "TRUNCATE"),
                ] {
                    try await sql.raw(
                        """
                        CREATE TRIGGER \(unsafeRaw: trigger) BEFORE \(unsafeRaw: event) ON audit_sweeps
                        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
                        """
                    ).run()
                }
            }
        }

        public func revert(on database: any Database) async throws {
            try await database.sql.drop(table: AuditSweep.table).ifExists().run()
        }
    }
}
