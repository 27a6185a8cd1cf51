import Crypto
import Foundation
import Messaging
import SQLKit

/// The key that seals the audit chain: every entry's link is an HMAC-SHA256 under it, and so is
/// every checkpoint and retention sweep. It is kept out of the database (a secret, or a file of
/// mode 0600 in the data directory), so whoever can rewrite the database alone cannot re-seal
/// what they changed.
public struct AuditKey: Sendable {
    /// The first 16 hex digits of the key's SHA-256: which key sealed an entry, never the key.
    public let id: String
    private let key: SymmetricKey

    public init(_ data: Data) throws {
        guard data.count == 32 else { throw AuditKeyError("an audit key is 32 bytes (base64 of 32 random bytes)") }
        key = SymmetricKey(data: data)
        id = String(SHA256.hash(data: data).hex.prefix(16))
    }

    /// Reads a key written as base64.
    public init(base64 text: String, name: String) throws {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw AuditKeyError("\(name): not base64")
        }
        do { try self.init(data) } catch let error as AuditKeyError { throw AuditKeyError("\(name): \(error)") }
    }

    public static func random() -> Data {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
    }

    func mac(_ text: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)).hex
    }

    func verifies(_ mac: String, of text: String) -> Bool {
        guard let code = Data(hex: mac) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: Data(text.utf8), using: key)
    }
}

public struct AuditKeyError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The key that seals new entries, and the earlier ones a rotation retired (still needed to
/// check what they sealed).
public struct AuditKeys: Sendable {
    public let current: AuditKey
    public let previous: [AuditKey]

    public init(current: AuditKey, previous: [AuditKey] = []) {
        self.current = current
        self.previous = previous
    }

    public func key(id: String) -> AuditKey? {
        id == current.id ? current : previous.first { $0.id == id }
    }
}

/// A sealed statement of the chain's head (how many entries, and the last one's seal), published
/// on the event log and in the logs, where the owner of the audit database cannot take it back.
/// A later trail with fewer entries, or another entry at that place, was truncated or rewritten.
public struct AuditCheckpoint: Codable, Sendable, Equatable {
    public var service: String
    public var seq: Int
    public var head: String
    /// Seconds since 1970.
    public var at: Double
    public var keyId: String
    public var mac: String

    var sealedText: String {
        ["checkpoint", service, String(seq), head, String(format: "%.6f", at), keyId].joined(separator: "\u{1F}")
    }

    init(service: String, seq: Int, head: String, at: Date, key: AuditKey) {
        self.service = service
        self.seq = seq
        self.head = head
        self.at = at.timeIntervalSince1970
        self.keyId = key.id
        self.mac = ""
        mac = key.mac(sealedText)
    }

    /// Whether one of `keys` sealed it as it is.
    public func isGenuine(_ keys: AuditKeys) -> Bool {
        keys.key(id: keyId)?.verifies(mac, of: sealedText) ?? false
    }

    public var date: Date { Date(timeIntervalSince1970: at) }
}

extension AuditEntry {
    /// The seal of this entry under `key`, chained to the one before: it covers the service, the
    /// number, every field and the key's id, so a change, a renumbering or a move to another
    /// service's trail breaks it.
    static func seal(previous: String, _ e: AuditEntry, key: AuditKey, start: Bool) -> String {
        key.mac(sealedText(previous: previous, e, keyId: key.id, start: start))
    }

    /// `start`: the entry begins the keyed chain (on an empty trail, or after unkeyed entries).
    static func sealedText(previous: String, _ e: AuditEntry, keyId: String, start: Bool) -> String {
        let fields = [
            start ? "start" : "entry", e.service, keyId, String(e.seq), String(format: "%.6f", e.at.timeIntervalSince1970), e.user,
            e.role, e.action, e.receptionIds.map(\.uuidString).joined(separator: ","), e.patientId ?? "",
            String(e.outcome), e.client,
        ]
        return previous + "\n" + fields.joined(separator: "\u{1F}")
    }
}

/// A retention sweep: entries up to `throughSeq` were removed on purpose, the last of them sealed
/// as `throughHash`. The oldest entry left chains from it; without a genuine sweep, a trail that
/// does not begin at entry 1 lost its beginning.
struct AuditSweep: Sendable {
    static let table = "audit_sweeps"
    var throughSeq: Int
    var throughHash: String
    var at: Double
    var keyId: String
    var mac: String

    static func sealedText(service: String, throughSeq: Int, throughHash: String, at: Double, keyId: String)
        -> String
    {
        ["sweep", service, String(throughSeq), throughHash, String(format: "%.6f", at), keyId].joined(
            separator: "\u{1F}")
    }

    func isGenuine(service: String, keys: AuditKeys) -> Bool {
        keys.key(id: keyId)?.verifies(
            mac,
            of: Self.sealedText(
                service: service, throughSeq: throughSeq, throughHash: throughHash, at: at, keyId: keyId)) ?? false
    }
}

/// What `hospital audit verify` found in one service's trail.
public struct AuditVerification: Sendable, Equatable {
    /// Entries whose seal and link checked out, before the first that did not.
    public var checked: Int
    /// The first entry (by number) that was changed, removed or does not belong; nil if none.
    public var broken: Int?
    /// Why, in a sentence.
    public var reason: String?
    /// Entries from before the chain was keyed (plain SHA-256: evidence against accidents only).
    public var legacy: Int
    /// The newest genuine checkpoint the trail was held against, if any was found.
    public var checkpoint: AuditCheckpoint?
    /// Checkpoints that were not genuine (forged, or sealed by a key not given).
    public var forgedCheckpoints: Int
}

extension AuditTrail {
    /// Checks the trail against its seals, its sweeps and the checkpoints published of it.
    ///
    /// - the oldest entry is entry 1, or follows a genuine retention sweep and chains from it;
    /// - every entry's number follows the one before, and its seal (under the key it names)
    ///   covers it and the one before; unkeyed entries are accepted only before the first keyed
    ///   one (a trail written before the key existed);
    /// - for every genuine checkpoint, the trail still has that many entries and the entry at
    ///   that place has the seal the checkpoint saw (a truncation, or a rewrite even by someone
    ///   holding the key, after the checkpoint was published).
    public static func verify(
        _ db: any SQLDatabase, service: String, keys: AuditKeys, checkpoints: [AuditCheckpoint], now: Date = Date()
    ) async throws -> AuditVerification {
        var result = AuditVerification(
            checked: 0, broken: nil, reason: nil, legacy: 0, checkpoint: nil, forgedCheckpoints: 0)
        let genuine = checkpoints.filter { $0.service == service && $0.isGenuine(keys) }
        result.forgedCheckpoints = checkpoints.filter { $0.service == service }.count - genuine.count
        let wanted = Dictionary(grouping: genuine, by: \.seq)

        func broken(_ seq: Int, _ reason: String) -> AuditVerification {
            var broken = result
            broken.broken = seq
            broken.reason = reason
            return broken
        }

        let sweep = try await latestSweep(db, service: service, keys: keys)
        if case .forged = sweep {
            return broken(1, "a retention sweep was not sealed by the audit key")
        }
        // A sweep removes only what retention allows: entries at least `minimumRetention` old. One
        // that removed entries a checkpoint saw less than that before it (or one dated ahead of
        // now) was made by someone holding the key, not by retention.
        for sweep in try await sweeps(db) {
            if sweep.at > now.timeIntervalSince1970 + 300 {
                return broken(sweep.throughSeq, "a retention sweep is dated in the future")
            }
            // The newest entry a checkpoint saw among those removed, when it was first seen (a
            // process that restarts publishes the same head again later): within seconds of its
            // writing, or at least before the service's next start. 30 days spare a long outage.
            let days = Double(minimumRetention.components.seconds) / 86_400
            let covered = genuine.filter { $0.seq <= sweep.throughSeq }
            if let newest = covered.map(\.seq).max(),
                let seen = covered.filter({ $0.seq == newest }).map(\.at).min(),
                sweep.at - seen < (days - 30) * 86_400
            {
                return broken(
                    newest,
                    "a retention sweep removed entries a checkpoint saw \(Int((sweep.at - seen) / 86_400)) days before it; retention keeps them \(Int(days)) days at least"
                )
            }
        }
        var previous: String?
        var after = 0
        var keyedSeen = false
        var previousUnkeyed = false
        var afterSweep = false
        var unkeyedAfterKeyed: [Int] = []
        if case .genuine(let sweep) = sweep {
            previous = sweep.throughHash
            after = sweep.throughSeq
            // Sweeps are this version's: whatever follows one unkeyed was re-hashed, unless a
            // checkpoint vouches for it (a replica of the previous version, mid-upgrade).
            keyedSeen = true
            afterSweep = true
        }
        var sealsAt: [Int: String] = [:]
        while true {
            let rows = try await db.select().columns("*").from(table).where("seq", .greaterThan, after)
                .orderBy("seq").limit(5000).all()
            if rows.isEmpty { break }
            for row in rows {
                let entry = try entry(row, service: service)
                let keyId = try row.decode(column: "key_id", as: String?.self)
                // (The previous version's retention deleted old entries without a sweep: an
                // unkeyed oldest entry still anchors the chain, as it did then.)
                let legacyAnchor = after == 0 && previous == nil && keyId == nil
                guard entry.seq == after + 1 || legacyAnchor else {
                    return broken(
                        after + 1,
                        after == 0 && previous == nil
                            ? "the trail begins at entry \(entry.seq): entries before it were removed without a retention sweep"
                            : "entries \(after + 1)…\(entry.seq - 1) are missing")
                }
                if let keyId {
                    guard let key = keys.key(id: keyId) else {
                        return broken(entry.seq, "sealed by a key that was not given (\(keyId))")
                    }
                    let start = try row.decode(column: "chain_start", as: Int?.self) == 1
                    guard
                        key.verifies(
                            entry.hash,
                            of: AuditEntry.sealedText(previous: previous ?? genesis, entry, keyId: keyId, start: start))
                    else { return broken(entry.seq, "its seal does not match its content or the entry before it") }
                    // The first keyed entry after nothing or after unkeyed ones was sealed as the
                    // chain's start (after a sweep it may or may not be: the sweep's seal decides).
                    if !afterSweep {
                        let mustStart = previous == nil || previousUnkeyed
                        if mustStart != start {
                            return broken(
                                entry.seq,
                                mustStart
                                    ? "the entries before it were removed or unkeyed: the keyed chain's start is gone"
                                    : "sealed as the chain's start in the middle of it")
                        }
                    }
                    keyedSeen = true
                    previousUnkeyed = false
                } else {
                    // Before the key, or from a replica of the previous version during a rolling
                    // upgrade: a plain SHA-256 chain (whose oldest kept entry anchors itself).
                    if previous != nil || entry.seq == 1,
                        AuditEntry.hash(previous: previous ?? genesis, entry) != entry.hash
                    {
                        return broken(entry.seq, "its hash does not match its content or the entry before it")
                    }
                    // Anyone can compute that: after keyed entries, only a checkpoint vouches for it.
                    if keyedSeen { unkeyedAfterKeyed.append(entry.seq) }
                    result.legacy += 1
                    previousUnkeyed = true
                }
                afterSweep = false
                if wanted[entry.seq] != nil { sealsAt[entry.seq] = entry.hash }
                previous = entry.hash
                after = entry.seq
                result.checked += 1
            }
        }
        // The checkpoints: newest first, so the report names the latest truncation or rewrite.
        // (One that saw only entries retention has since swept has nothing left to hold.)
        result.checkpoint = nil
        for checkpoint in genuine.sorted(by: { ($0.seq, $0.at) > ($1.seq, $1.at) }) {
            if case .genuine(let sweep) = sweep, checkpoint.seq <= sweep.throughSeq { continue }
            if result.checkpoint == nil { result.checkpoint = checkpoint }
            if checkpoint.seq > after {
                return broken(
                    after + 1,
                    "the checkpoint of \(iso(checkpoint.date)) saw \(checkpoint.seq) entries; the trail ends at \(after): entries were removed from its end"
                )
            }
            if sealsAt[checkpoint.seq] != checkpoint.head {
                return broken(
                    checkpoint.seq,
                    "entry \(checkpoint.seq) is not the one the checkpoint of \(iso(checkpoint.date)) saw: the trail was rewritten"
                )
            }
        }
        // An unkeyed entry after keyed ones is genuine only if a checkpoint (sealed by the key,
        // published by this version) saw it: else it was re-hashed by someone without the key.
        if let first = unkeyedAfterKeyed.first(where: { $0 > (result.checkpoint?.seq ?? 0) }) {
            return broken(first, "an unkeyed entry after keyed ones that no checkpoint vouches for (re-hashed without the key)")
        }
        return result
    }

    enum SweepState {
        case none
        case genuine(AuditSweep)
        case forged
    }

    /// The newest sweep, if any; forged if it (or an older one) was not sealed by the audit key.
    static func latestSweep(_ db: any SQLDatabase, service: String, keys: AuditKeys) async throws -> SweepState {
        var latest: AuditSweep?
        for sweep in try await sweeps(db) {
            guard sweep.isGenuine(service: service, keys: keys) else { return .forged }
            latest = sweep
        }
        return latest.map(SweepState.genuine) ?? SweepState.none
    }

    /// Every sweep, oldest first.
    static func sweeps(_ db: any SQLDatabase) async throws -> [AuditSweep] {
        try await db.select().columns("*").from(AuditSweep.table).orderBy("through_seq").all().map { row in
            AuditSweep(
                throughSeq: try row.decode(column: "through_seq", as: Int.self),
                throughHash: try row.decode(column: "through_hash", as: String.self),
                at: try row.decode(column: "at", as: Double.self),
                keyId: try row.decode(column: "key_id", as: String.self),
                mac: try row.decode(column: "mac", as: String.self))
        }
    }

    private static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// The checkpoints published on `history`'s audit topic (what retention kept of it).
    public static func checkpoints(from messages: [IncomingMessage]) -> [AuditCheckpoint] {
        messages.compactMap { try? JSONDecoder().decode(AuditCheckpoint.self, from: $0.value) }
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hexadecimal.
    var hex: String {
        let digits = Array("0123456789abcdef".unicodeScalars)
        var text = String.UnicodeScalarView()
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(text)
    }
}

extension Data {
    init?(hex: String) {
        let bytes = Array(hex.utf8)
        guard bytes.count % 2 == 0 else { return nil }
        var data = Data(capacity: bytes.count / 2)
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            default: nil
            }
        }
        var index = 0
        while index < bytes.count {
            guard let high = value(bytes[index]), let low = value(bytes[index + 1]) else { return nil }
            data.append(high << 4 | low)
            index += 2
        }
        self = data
    }
}
