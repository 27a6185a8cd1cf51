import Foundation
import NIOPosix
import SQLKit
import Synchronization
import Vapor

/// A local account (the embedded default; off when an external identity provider signs people in).
public struct Account: Sendable, Equatable {
    public var username: String
    public var role: Role
    public var disabled: Bool
    public var lockedUntil: Date?
    public var createdAt: Date
    /// When the password was last set (a sign-in checked against an older one is void).
    public var passwordChangedAt: Date?
}

/// What a sign-in with a name and password came to.
public enum SignInOutcome: Sendable, Equatable {
    case signedIn(Account)
    /// Unknown name, wrong password or disabled account: the client is told nothing more.
    case refused
    /// Too many failures in a row: refused until `until`, even with the right password.
    case locked(until: Date)
}

public struct AccountError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Local accounts in a table of their own: bcrypt-hashed passwords (cost 12 by default), a
/// minimum length, and a lock after repeated failures.
public struct AccountStore: Sendable {
    public struct Settings: Sendable {
        public var minimumPasswordLength = 12
        public var bcryptCost = 12
        /// Failures in a row that lock an account, and for how long.
        public var maxFailures = 5
        public var lockDuration: TimeInterval = 15 * 60

        public init() {}
    }

    public static let table = "accounts"
    /// Failed sign-ins by name and client address, and the locks they led to.
    static let failures = "sign_in_failures"
    let database: any SQLDatabase
    let settings: Settings

    public init(database: any SQLDatabase, settings: Settings = .init()) {
        self.database = database
        self.settings = settings
    }

    /// Creates the table if it is missing.
    public func prepare() async throws {
        try await database.create(table: Self.table).ifNotExists()
            .column("username", type: .text, .primaryKey(autoIncrement: false))
            .column("role", type: .text, .notNull)
            .column("password_hash", type: .text, .notNull)
            .column("disabled", type: .int, .notNull)
            .column("failed_attempts", type: .int, .notNull)
            .column("locked_until", type: .custom(SQLRaw("DOUBLE PRECISION")))
            .column("created_at", type: .custom(SQLRaw("DOUBLE PRECISION")), .notNull)
            .column("password_changed_at", type: .custom(SQLRaw("DOUBLE PRECISION")), .notNull)
            .run()
        try await database.create(table: Self.failures).ifNotExists()
            .column("username", type: .text, .notNull)
            .column("client", type: .text, .notNull)
            .column("failures", type: .int, .notNull)
            .column("locked_until", type: .custom(SQLRaw("DOUBLE PRECISION")))
            .column("last_at", type: .custom(SQLRaw("DOUBLE PRECISION")), .notNull)
            .primaryKey("username", "client")
            .run()
    }

    /// A user name: 1 to 64 lower-case letters, digits, '.', '_' or '-'.
    public static func validUsername(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0)
            }
    }

    public func add(username: String, role: Role, password: String, now: Date = Date()) async throws {
        guard Self.validUsername(username) else {
            throw AccountError("A user name is 1 to 64 lower-case letters, digits, '.', '_' or '-'.")
        }
        let hash = try await hashed(password)
        let existing = try await database.select().column("username").from(Self.table)
            .where("username", .equal, username).first()
        guard existing == nil else { throw AccountError("The user \(username) exists already.") }
        try await database.insert(into: Self.table)
            .columns(
                "username", "role", "password_hash", "disabled", "failed_attempts", "created_at",
                "password_changed_at"
            )
            .values(
                SQLBind(username), SQLBind(role.rawValue), SQLBind(hash), SQLBind(0), SQLBind(0),
                SQLBind(now.timeIntervalSince1970), SQLBind(now.timeIntervalSince1970)
            )
            .run()
    }

    public func list(now: Date = Date()) async throws -> [Account] {
        var accounts = try await database.select()
            .columns("username", "role", "disabled", "locked_until", "created_at", "password_changed_at")
            .from(Self.table).orderBy("username").all().map(account)
        for index in accounts.indices {
            accounts[index].lockedUntil = try await lockedUntil(accounts[index].username, now: now)
        }
        return accounts
    }

    public func disable(_ username: String) async throws {
        try await requireExists(username)
        try await database.update(Self.table).set("disabled", to: SQLBind(1)).where("username", .equal, username)
            .run()
    }

    /// Sets a new password; also unlocks the account.
    public func setPassword(_ username: String, _ password: String, now: Date = Date()) async throws {
        try await requireExists(username)
        let hash = try await hashed(password)
        try await database.update(Self.table)
            .set("password_hash", to: SQLBind(hash)).set("failed_attempts", to: SQLBind(0))
            .set("locked_until", to: SQLLiteral.null).set("password_changed_at", to: SQLBind(now.timeIntervalSince1970))
            .where("username", .equal, username).run()
        try await database.delete(from: Self.failures).where("username", .equal, username).run()
    }

    /// Checks a name and password from `client` (the caller's address).
    ///
    /// Every refusal costs the same: one bcrypt check at the configured cost (against the
    /// account's hash, or a decoy's for an unknown name), one read and one write, whether the
    /// name is unknown, the password wrong, the account disabled or locked. Failures are counted
    /// per name *and* client address, for unknown names as for known ones: `maxFailures` in a row
    /// from one address lock that address out of that name for `lockDuration`, while the account
    /// still signs in from anywhere else, so a stranger cannot lock staff out of their own
    /// account, and whether a name exists shows neither in the time nor in a lock (ASVS 5.0
    /// V6.1.1, V6.3.1; the gateway also limits sign-in attempts per address).
    public func signIn(username: String, password: String, client: String = "local", now: Date = Date())
        async throws -> SignInOutcome
    {
        let row = try await database.select()
            .columns("username", "role", "password_hash", "disabled", "locked_until", "created_at", "password_changed_at")
            .from(Self.table).where("username", .equal, username).first()
        let account = row.flatMap { try? self.account($0) }
        let hash = try row?.decode(column: "password_hash", as: String.self)
        // The attempt is counted before the password is checked, in one statement: guesses sent
        // at once each see their own number, and none can write back a count (or lift a lock)
        // another has moved on from.
        let attempt = try await database.raw(
            """
            INSERT INTO \(ident: Self.failures) (username, client, failures, locked_until, last_at)
            VALUES (\(bind: username), \(bind: client), 1, NULL, \(bind: now.timeIntervalSince1970))
            ON CONFLICT (username, client) DO UPDATE SET
                failures = CASE WHEN \(ident: Self.failures).locked_until > \(bind: now.timeIntervalSince1970)
                    THEN \(ident: Self.failures).failures ELSE \(ident: Self.failures).failures + 1 END,
                last_at = excluded.last_at
            RETURNING failures, locked_until
            """
        ).first()
        let failures = try attempt?.decode(column: "failures", as: Int.self) ?? 1
        let lockedUntil = try attempt?.decode(column: "locked_until", as: Double?.self).map(
            Date.init(timeIntervalSince1970:))
        let against: String
        if let hash { against = hash } else { against = try await decoyHash() }
        let matches = try await verify(password, against)
        // Attempts nobody made for a day are forgotten (on every path: each costs the same).
        try await database.delete(from: Self.failures).where("last_at", .lessThan, now.timeIntervalSince1970 - 86_400)
            .run()
        if let lockedUntil, lockedUntil > now { return .locked(until: lockedUntil) }
        guard matches, let account, !account.disabled else {
            guard failures >= settings.maxFailures else { return .refused }
            let until = now.addingTimeInterval(settings.lockDuration)
            try await database.raw(
                """
                UPDATE \(ident: Self.failures) SET failures = 0, locked_until = \(bind: until.timeIntervalSince1970)
                WHERE username = \(bind: username) AND client = \(bind: client)
                AND (locked_until IS NULL OR locked_until <= \(bind: now.timeIntervalSince1970))
                """
            ).run()
            return .locked(until: until)
        }
        try await database.delete(from: Self.failures).where("username", .equal, username)
            .where("client", .equal, client).run()
        if let hash, Self.cost(of: hash) != settings.bcryptCost {
            // Hashed at another cost (the setting changed since): hashed again at this one, so
            // every account costs what an unknown name does.
            let cost = settings.bcryptCost
            let rehashed = try await NIOThreadPool.singleton.runIfActive { try Bcrypt.hash(password, cost: cost) }
            try await database.update(Self.table).set("password_hash", to: SQLBind(rehashed))
                .where("username", .equal, username).where("password_hash", .equal, hash).run()
        }
        return .signedIn(account)
    }

    /// The cost a bcrypt hash was made with (`$2b$12$…` → 12).
    static func cost(of hash: String) -> Int? {
        let parts = hash.split(separator: "$")
        return parts.count >= 2 ? Int(parts[1]) : nil
    }

    /// The account as it is now, for a sign-in to check it did not change while it was checked.
    public func current(_ username: String) async throws -> Account? {
        try await database.select()
            .columns("username", "role", "disabled", "locked_until", "created_at", "password_changed_at")
            .from(Self.table).where("username", .equal, username).first().map(account)
    }

    /// When an account is locked out from any address (for `hospital users list`).
    private func lockedUntil(_ username: String, now: Date) async throws -> Date? {
        let row = try await database.select().column(SQLFunction("MAX", args: SQLColumn("locked_until")), as: "until")
            .from(Self.failures).where("username", .equal, username)
            .where("locked_until", .greaterThan, now.timeIntervalSince1970).first()
        return try row?.decode(column: "until", as: Double?.self).map(Date.init(timeIntervalSince1970:))
    }

    // MARK: -

    /// What an unknown name is checked against: a bcrypt hash string at the configured cost
    /// that no password matches. Checking a password against it costs what checking against a
    /// real hash of that cost does (the work is the password's, with this salt and cost), and
    /// nothing is computed to make it: not at start, not at the first unknown name.
    private func decoyHash() async throws -> String {
        String(format: "$2b$%02d$", settings.bcryptCost) + "Gq7vR2mK9xTbL4sW8eNcYu" + "Dh3Fj6Pz1Ak5Mn8Qr2St4Vw7Xy9Bc0E"
    }

    private func requireExists(_ username: String) async throws {
        let existing = try await database.select().column("username").from(Self.table)
            .where("username", .equal, username).first()
        guard existing != nil else { throw AccountError("There is no user \(username).") }
    }

    private func hashed(_ password: String) async throws -> String {
        guard password.count >= settings.minimumPasswordLength else {
            throw AccountError("A password has at least \(settings.minimumPasswordLength) characters.")
        }
        guard password.utf8.count <= 72 else {
            // bcrypt reads at most 72 bytes: a longer password would be checked only in part.
            throw AccountError("A password has at most 72 bytes.")
        }
        let cost = settings.bcryptCost
        return try await NIOThreadPool.singleton.runIfActive { try Bcrypt.hash(password, cost: cost) }
    }

    private func verify(_ password: String, _ hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { (try? Bcrypt.verify(password, created: hash)) ?? false }
    }

    private func account(_ row: any SQLRow) throws -> Account {
        guard let role = Role(rawValue: try row.decode(column: "role", as: String.self)) else {
            throw AccountError("unknown role")
        }
        return Account(
            username: try row.decode(column: "username", as: String.self), role: role,
            disabled: try row.decode(column: "disabled", as: Int.self) != 0,
            lockedUntil: try row.decode(column: "locked_until", as: Double?.self).map(
                Date.init(timeIntervalSince1970:)),
            createdAt: Date(timeIntervalSince1970: try row.decode(column: "created_at", as: Double.self)),
            passwordChangedAt: (try? row.decode(column: "password_changed_at", as: Double?.self))?.map(
                Date.init(timeIntervalSince1970:)))
    }
}
