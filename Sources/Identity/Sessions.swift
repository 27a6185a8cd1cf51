import Crypto
import Foundation
import SQLKit
import Synchronization

/// One signed-in session: a browser's (the cookie holds its secret) or an API client's (each
/// `POST /auth/token` starts one; its tokens name it in `sid`).
public struct Session: Sendable, Equatable, Codable {
    /// The public id: the first 32 hex digits of the SHA-256 of the secret. Tokens carry it as
    /// `sid`; the database keeps only it, so whoever reads the table cannot take over a session.
    public var id: String
    public var username: String
    public var role: Role
    /// `screen` (local password), `provider` (the OpenID provider signed them in), `api`.
    public var kind: String
    public var client: String
    public var createdAt: Date
    public var lastSeenAt: Date
    public var endedAt: Date?
    public var endReason: String?
}

/// How long a session lasts: idle (no request) and in all.
public struct SessionSettings: Sendable {
    /// HOSPITAL_SESSION_IDLE_MINUTES (15): a screen left alone this long signs out.
    public var idle: TimeInterval = 15 * 60
    /// HOSPITAL_SESSION_HOURS (12): a session ends this long after sign-in, however busy (a shift).
    public var absolute: TimeInterval = 12 * 3600
    /// HOSPITAL_DEVICE_DAYS (365): how long a display device an administrator issued lasts
    /// (never idle: a waiting-room TV is left alone all day).
    public var device: TimeInterval = 365 * 86_400

    public init() {}
}

/// Sessions in the gateway's database (shared by its replicas): started at sign-in, ended by
/// sign-out, by an administrator, or for every session of an account when it is disabled or its
/// password changes. Ended sessions (and those accounts) are what `Revocations` publishes.
public struct SessionStore: Sendable {
    public static let table = "sessions"
    static let userRevocations = "user_revocations"
    let database: any SQLDatabase
    public let settings: SessionSettings
    /// Whether local accounts sign people in (then a `screen` session needs its account enabled
    /// and in the same role).
    let localAccounts: Bool

    public init(database: any SQLDatabase, settings: SessionSettings = .init(), localAccounts: Bool) {
        self.database = database
        self.settings = settings
        self.localAccounts = localAccounts
    }

    public func prepare() async throws {
        let real = SQLDataType.custom(SQLRaw("DOUBLE PRECISION"))
        try await database.create(table: Self.table).ifNotExists()
            .column("id", type: .text, .primaryKey(autoIncrement: false))
            .column("username", type: .text, .notNull)
            .column("role", type: .text, .notNull)
            .column("kind", type: .text, .notNull)
            .column("client", type: .text, .notNull)
            .column("created_at", type: real, .notNull)
            .column("last_seen_at", type: real, .notNull)
            .column("ended_at", type: real)
            .column("end_reason", type: .text)
            .run()
        try await database.raw("CREATE INDEX IF NOT EXISTS sessions_username ON sessions (username)").run()
        try await database.raw("CREATE INDEX IF NOT EXISTS sessions_ended ON sessions (ended_at)").run()
        // Every token of an account issued before `at` is void (disabled, new password).
        try await database.create(table: Self.userRevocations).ifNotExists()
            .column("username", type: .text, .primaryKey(autoIncrement: false))
            .column("at", type: real, .notNull)
            .run()
    }

    /// The public id of a session secret.
    public static func publicId(of secret: String) -> String { String(sha256Hex(secret).prefix(32)) }

    /// A display device's session (`kind`): issued by an administrator for a waiting-room
    /// display, in the display role, without an account; not ended by idleness.
    public static let deviceKind = "device"

    /// When `session` ends of itself.
    public func endOfLife(_ session: Session) -> Date {
        session.createdAt.addingTimeInterval(session.kind == Self.deviceKind ? settings.device : settings.absolute)
    }

    /// Starts a session; returns its secret (for the cookie) and the session.
    public func start(username: String, role: Role, kind: String, client: String, now: Date = Date()) async throws
        -> (secret: String, session: Session)
    {
        let secret = Base64URL.random(bytes: 32)
        let session = Session(
            id: Self.publicId(of: secret), username: username, role: role, kind: kind,
            client: String(client.prefix(64)), createdAt: now, lastSeenAt: now, endedAt: nil, endReason: nil)
        try await database.insert(into: Self.table)
            .columns("id", "username", "role", "kind", "client", "created_at", "last_seen_at")
            .values(
                SQLBind(session.id), SQLBind(username), SQLBind(role.rawValue), SQLBind(kind), SQLBind(session.client),
                SQLBind(now.timeIntervalSince1970), SQLBind(now.timeIntervalSince1970)
            ).run()
        return (secret, session)
    }

    /// The live session of `secret`: not ended, not idle past `idle`, not older than
    /// `absolute`, and (with local accounts) its account still enabled in the same role. A
    /// session found too old or idle is ended here. Notes the request (at most every 30 s).
    public func find(secret: String, now: Date = Date()) async throws -> Session? {
        guard (16...128).contains(secret.utf8.count) else { return nil }
        let id = Self.publicId(of: secret)
        guard let session = try await session(id: id) else { return nil }
        if session.endedAt != nil { return nil }
        let device = session.kind == Self.deviceKind
        if !device, now.timeIntervalSince(session.lastSeenAt) > settings.idle {
            try await end(id: id, reason: "idle", now: now)
            return nil
        }
        if now >= endOfLife(session) {
            try await end(id: id, reason: "expired", now: now)
            return nil
        }
        if localAccounts, session.kind != "provider", !device {
            let account = try await database.select().columns("role", "disabled").from(AccountStore.table)
                .where("username", .equal, session.username).first()
            guard let account, try account.decode(column: "disabled", as: Int.self) == 0,
                try account.decode(column: "role", as: String.self) == session.role.rawValue
            else {
                try await end(id: id, reason: "account changed", now: now)
                return nil
            }
        }
        if now.timeIntervalSince(session.lastSeenAt) > 30 {
            try await database.update(Self.table).set("last_seen_at", to: SQLBind(now.timeIntervalSince1970))
                .where("id", .equal, id).run()
        }
        return session
    }

    public func session(id: String) async throws -> Session? {
        try await database.select().columns("*").from(Self.table).where("id", .equal, id).first().map(Self.session)
    }

    /// Ends one session (sign-out, or an administrator); false if there was no live one.
    @discardableResult
    public func end(id: String, reason: String, now: Date = Date()) async throws -> Bool {
        let ended = try await database.update(Self.table)
            .set("ended_at", to: SQLBind(now.timeIntervalSince1970)).set("end_reason", to: SQLBind(reason))
            .where("id", .equal, id).where("ended_at", .is, SQLLiteral.null)
            .returning("id").all()
        return !ended.isEmpty
    }

    /// Ends every session of `username`, and voids every token of it issued until now (those
    /// without a session too). Returns how many sessions were live.
    @discardableResult
    public func endAll(username: String, reason: String, now: Date = Date()) async throws -> Int {
        let ended = try await database.update(Self.table)
            .set("ended_at", to: SQLBind(now.timeIntervalSince1970)).set("end_reason", to: SQLBind(reason))
            .where("username", .equal, username).where("ended_at", .is, SQLLiteral.null)
            .returning("id").all()
        try await database.insert(into: Self.userRevocations).columns("username", "at")
            .values(SQLBind(username), SQLBind(now.timeIntervalSince1970))
            .onConflict(with: ["username"]) { $0.set(excludedValueOf: "at") }
            .run()
        return ended.count
    }

    /// The display devices issued, live or ended within a day, newest first.
    public func devices(now: Date = Date()) async throws -> [Session] {
        try await database.select().columns("*").from(Self.table).where("kind", .equal, Self.deviceKind)
            .where("created_at", .greaterThan, now.timeIntervalSince1970 - settings.device)
            .orderBy("created_at", .descending).limit(1000).all().map(Self.session)
    }

    /// The live sessions (of `username`, or everyone's), newest first; display devices apart.
    public func list(username: String? = nil, now: Date = Date()) async throws -> [Session] {
        let query = database.select().columns("*").from(Self.table).where("ended_at", .is, SQLLiteral.null)
            .where("kind", .notEqual, Self.deviceKind)
            .where("created_at", .greaterThan, now.timeIntervalSince1970 - settings.absolute)
            .where("last_seen_at", .greaterThan, now.timeIntervalSince1970 - settings.idle)
        if let username { query.where("username", .equal, username) }
        return try await query.orderBy("created_at", .descending).limit(1000).all().map(Self.session)
    }

    /// What was revoked since `since`: ended sessions, and accounts whose earlier tokens are void.
    public func revoked(since: Date) async throws -> Revocations.Snapshot {
        let sessions = try await database.select().column("id").from(Self.table)
            .where("ended_at", .greaterThan, since.timeIntervalSince1970).all()
            .map { try $0.decode(column: "id", as: String.self) }
        let users = try await database.select().columns("username", "at").from(Self.userRevocations)
            .where("at", .greaterThan, since.timeIntervalSince1970).all()
            .map {
                Revocations.UserRevocation(
                    user: Revocations.userKey(try $0.decode(column: "username", as: String.self)),
                    notBefore: try $0.decode(column: "at", as: Double.self))
            }
        return Revocations.Snapshot(sessions: sessions, users: users)
    }

    /// Forgets sessions that ended (or lapsed) more than a day ago.
    public func sweep(now: Date = Date()) async throws {
        let cutoff = now.timeIntervalSince1970 - 86_400
        try await database.delete(from: Self.table).where("ended_at", .lessThan, cutoff).run()
        try await database.delete(from: Self.table).where("last_seen_at", .lessThan, cutoff - settings.absolute)
            .where("kind", .notEqual, Self.deviceKind).run()
        try await database.delete(from: Self.table).where("kind", .equal, Self.deviceKind)
            .where("created_at", .lessThan, cutoff - settings.device).run()
        try await database.delete(from: Self.userRevocations).where("at", .lessThan, cutoff).run()
    }

    static func session(_ row: any SQLRow) throws -> Session {
        Session(
            id: try row.decode(column: "id", as: String.self),
            username: try row.decode(column: "username", as: String.self),
            role: Role(rawValue: try row.decode(column: "role", as: String.self)) ?? .desk,
            kind: try row.decode(column: "kind", as: String.self),
            client: try row.decode(column: "client", as: String.self),
            createdAt: Date(timeIntervalSince1970: try row.decode(column: "created_at", as: Double.self)),
            lastSeenAt: Date(timeIntervalSince1970: try row.decode(column: "last_seen_at", as: Double.self)),
            endedAt: try row.decode(column: "ended_at", as: Double?.self).map(Date.init(timeIntervalSince1970:)),
            endReason: try row.decode(column: "end_reason", as: String?.self))
    }
}

/// What every process refuses although the token's signature is good: tokens of ended sessions,
/// and tokens of an account issued before it was disabled or its password changed. Kept in
/// memory (a set lookup per request) and replaced every second or two from the gateway's session
/// table (in its process) or from the gateway's `GET /auth/revocations` (elsewhere). Entries
/// older than the longest token lifetime are dropped: their tokens have expired anyway.
public final class Revocations: Sendable {
    public struct UserRevocation: Codable, Sendable, Equatable {
        /// The SHA-256 of the user name (hex): the published list names nobody.
        public var user: String
        /// Seconds since 1970: tokens issued before are void.
        public var notBefore: Double

        public init(user: String, notBefore: Double) {
            self.user = user
            self.notBefore = notBefore
        }
    }

    public struct Snapshot: Codable, Sendable, Equatable {
        public var sessions: [String]
        public var users: [UserRevocation]

        public init(sessions: [String], users: [UserRevocation]) {
            self.sessions = sessions
            self.users = users
        }
    }

    private struct State {
        var sessions: Set<String> = []
        var users: [String: Double] = [:]
        var snapshot = Snapshot(sessions: [], users: [])
        var loaded = false
    }

    private let state = Mutex(State())

    public init() {}

    public static func userKey(_ username: String) -> String {
        sha256Hex(username)
    }

    /// Replaces what is known with `snapshot` (the newest list is the whole list).
    public func replace(with snapshot: Snapshot) {
        var users: [String: Double] = [:]
        for user in snapshot.users { users[user.user] = max(users[user.user] ?? 0, user.notBefore) }
        state.withLock { $0 = State(sessions: Set(snapshot.sessions), users: users, snapshot: snapshot, loaded: true) }
    }

    public var snapshot: Snapshot { state.withLock { $0.snapshot } }

    /// Whether a list was ever read (until then this process knows of no revocation at all).
    public var isLoaded: Bool { state.withLock { $0.loaded } }

    /// Whether a token of `principal` is void.
    public func isRevoked(_ principal: Principal) -> Bool {
        let revokedSession = state.withLock { state in
            principal.sessionId.map { state.sessions.contains($0) } ?? false
        }
        if revokedSession { return true }
        guard state.withLock({ !$0.users.isEmpty }) else { return false }
        // The user's key is hashed outside the lock.
        let key = Self.userKey(principal.username)
        guard let notBefore = state.withLock({ $0.users[key] }) else { return false }
        // `iat` carries fractions of a second (JWTKit writes seconds since 1970 as a number).
        return (principal.issuedAt?.timeIntervalSince1970 ?? 0) < notBefore
    }
}

/// CSRF tokens the browser cannot choose: a random nonce and an HMAC of it and of the session it
/// belongs to (the session's public id; nothing before sign-in), under a key derived from the
/// token signing key (so every gateway replica checks what another issued). A pair injected
/// into a victim's browser (a cookie set from a sibling host) is another session's, or none.
public struct CSRFTokens: Sendable {
    private let key: SymmetricKey

    public init(signingKey: SigningKey) {
        key = SymmetricKey(
            data: SHA256.hash(data: Data(("hospital csrf\n" + signingKey.privateKey.pemRepresentation).utf8)))
    }

    /// A new token for `binding` (a session's public id, or "" before sign-in).
    public func token(binding: String) -> String {
        let nonce = Base64URL.random(bytes: 16)
        return nonce + "." + mac(nonce, binding)
    }

    /// Whether this system issued `token` for `binding`.
    public func isValid(_ token: String, binding: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].utf8.count == 22, parts[1].utf8.count == 22 else { return false }
        let expected = Array(mac(String(parts[0]), binding).utf8)
        let sent = Array(parts[1].utf8)
        return zip(expected, sent).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0 && expected.count == sent.count
    }

    private func mac(_ nonce: String, _ binding: String) -> String {
        Base64URL.encode(Data(HMAC<SHA256>.authenticationCode(for: Data((nonce + "|" + binding).utf8), using: key).prefix(16)))
    }
}

private let hexDigits = Array("0123456789abcdef".utf8)

/// The SHA-256 of `text`'s UTF-8, in lower-case hex.
func sha256Hex(_ text: String) -> String {
    // Written digit by digit: String(format:) per byte cost tens of microseconds a call, and
    // the revocation check runs this on every request.
    let digest = SHA256.hash(data: Data(text.utf8))
    return String(unsafeUninitializedCapacity: 64) { buffer in
        var index = 0
        for byte in digest {
            buffer[index] = hexDigits[Int(byte >> 4)]
            buffer[index + 1] = hexDigits[Int(byte & 0x0F)]
            index += 2
        }
        return index
    }
}
