import Foundation
import Logging

/// Checking a name and password and issuing a token: for `POST /auth/token` and the screens'
/// sign-in alike.
public struct SignIn: Sendable {
    public let issuer: TokenIssuer
    /// The local accounts; nil when an external provider signs users in (local sign-in is off).
    public let accounts: AccountStore?
    /// Every sign-in starts a session: what a sign-out, an administrator or a disabled account ends.
    public let sessions: SessionStore
    /// The departments tokens name (none without).
    public let departments: Departments?

    public init(issuer: TokenIssuer, accounts: AccountStore?, sessions: SessionStore, departments: Departments? = nil) {
        self.issuer = issuer
        self.accounts = accounts
        self.sessions = sessions
        self.departments = departments
    }

    /// The account, if the credentials are right; every failure and every lock is logged (the
    /// name, never the password). Unknown name, wrong password, disabled or locked account all
    /// come back as nil, so a caller tells an attacker nothing.
    public func check(username: String, password: String, client: String, logger: Logger) async throws -> Account? {
        guard !username.isEmpty, username.utf8.count <= 64, !password.isEmpty, password.utf8.count <= 1024 else {
            return nil
        }
        guard let accounts else {
            logger.notice("sign-in with a password refused: local accounts are off (an OpenID provider signs users in)")
            return nil
        }
        switch try await accounts.signIn(username: username, password: password, client: client) {
        case .signedIn(let account):
            logger.info("signed in", metadata: ["user": "\(account.username)", "role": "\(account.role.rawValue)"])
            return account
        case .refused:
            let name = AccountStore.validUsername(username) ? username : "(not a user name)"
            logger.notice("sign-in refused", metadata: ["user": "\(name)"])
            return nil
        case .locked(let until):
            let name = AccountStore.validUsername(username) ? username : "(not a user name)"
            logger.warning(
                "sign-in refused: locked out from this address after repeated failures",
                metadata: ["user": "\(name)", "client": "\(client)", "until": "\(until)"])
            return nil
        }
    }

    /// Starts a session for `account`, just checked by `check`; nil if the account was disabled,
    /// given another role or a new password while it was checked (the bcrypt check takes a
    /// quarter of a second: `hospital users disable` or `set-password` may have ended every
    /// session in between, before this one existed).
    public func startSession(for account: Account, kind: String, client: String) async throws
        -> (secret: String, session: Session)?
    {
        let started = try await sessions.start(username: account.username, role: account.role, kind: kind, client: client)
        if let accounts {
            let now = try await accounts.current(account.username)
            guard let now, !now.disabled, now.role == account.role, now.passwordChangedAt == account.passwordChangedAt
            else {
                try await sessions.end(id: started.session.id, reason: "account changed during sign-in")
                return nil
            }
        }
        return started
    }

    /// A token of `session`: its user, role and departments, its id as `sid` (so ending the
    /// session voids it), never valid past the session's end of life.
    public func token(for session: Session, now: Date = Date()) async throws -> String {
        let left = sessions.endOfLife(session).timeIntervalSince(now)
        return try await issuer.issue(
            username: session.username, role: session.role,
            departments: try await departments?.of(session.username) ?? [], sessionId: session.id,
            lifetime: max(1, left), now: now)
    }

    public var tokenLifetime: TimeInterval { issuer.lifetime }
}
