import AsyncHTTPClient
import FluentKit
import FluentPostgresDriver
import Foundation
import Identity
import JWTKit
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import ServiceKit

/// What a process needs to check callers and, where the gateway runs, to sign them in.
final class Authentication: Sendable {
    /// The token issuer, where the gateway runs (it owns the accounts and the signing key).
    let issuer: TokenIssuer?
    let accounts: AccountStore?
    let verifier: TokenVerifier
    /// Signing in on the screens through an external OpenID provider (then no local accounts).
    let providerSignIn: ProviderSignIn?
    private let accountsConnection: SQLiteConnection?

    private init(
        issuer: TokenIssuer?, accounts: AccountStore?, verifier: TokenVerifier, providerSignIn: ProviderSignIn? = nil,
        accountsConnection: SQLiteConnection?
    ) {
        self.issuer = issuer
        self.accounts = accounts
        self.verifier = verifier
        self.providerSignIn = providerSignIn
        self.accountsConnection = accountsConnection
    }

    /// With the gateway in this process: its signing key and accounts, and a verifier of its own
    /// keys. Without: a verifier that reads the gateway's key set over HTTP (HOSPITAL_AUTH_JWKS_URL).
    static func make(
        runsGateway: Bool, configuration: HospitalConfiguration, logger: Logger
    ) async throws -> Authentication {
        let auth = configuration.auth
        let settings = TokenVerifier.Settings(issuer: auth.issuer, audience: auth.audience)
        // With an external provider: its tokens are trusted besides this system's own (which the
        // gateway still signs for the screens' sessions, after the provider signed the user in).
        var external: TokenVerifier.External?
        var providerSignIn: ProviderSignIn?
        if let oidc = auth.oidc {
            let provider = OpenIDProvider(issuer: oidc.issuer)
            external = .provider(
                provider,
                settings: .init(
                    issuer: provider.issuer, audience: oidc.audience, roleClaim: oidc.rolesClaim,
                    usernameClaim: oidc.usernameClaim),
                askUserinfo: oidc.opaqueTokens == .userinfo)
            providerSignIn = ProviderSignIn(
                provider: provider, clientID: oidc.clientID, clientSecret: oidc.clientSecret,
                redirectURL: oidc.redirectURL, roleClaim: oidc.rolesClaim, usernameClaim: oidc.usernameClaim)
        }
        // Without the gateway here: the signing key, when this process has it (a secret, or the
        // data directory it shares with the gateway), verifies locally; else the gateway's JWKS.
        let localKey: SigningKey? =
            auth.signingKeyPEM != nil || FileManager.default.fileExists(atPath: signingKeyFile(configuration).path)
            ? try signingKey(configuration) : nil
        if !runsGateway, let localKey {
            let verifier = TokenVerifier(settings: settings, external: external) { localKey.jwks }
            return Authentication(issuer: nil, accounts: nil, verifier: verifier, accountsConnection: nil)
        }
        guard runsGateway else {
            let url =
                auth.jwksURL
                ?? configuration.upstream(of: .gateway).appendingPathComponent(".well-known/jwks.json")
            let verifier = TokenVerifier(settings: settings, external: external) {
                try await fetchKeySet(from: url, logger: logger)
            }
            return Authentication(issuer: nil, accounts: nil, verifier: verifier, accountsConnection: nil)
        }
        let key = try signingKey(configuration)
        let issuer = await TokenIssuer(
            key: key, issuer: auth.issuer, audience: auth.audience, lifetime: auth.tokenLifetime)
        let verifier = TokenVerifier(settings: settings, external: external) { key.jwks }
        if let providerSignIn {
            logger.info(
                "signing in through the identity provider; local accounts are off",
                metadata: ["issuer": "\(providerSignIn.provider.issuer)"])
            return Authentication(
                issuer: issuer, accounts: nil, verifier: verifier, providerSignIn: providerSignIn,
                accountsConnection: nil)
        }
        let (store, connection) = try await openAccounts(configuration, logger: logger)
        if (try? await store.list().isEmpty) == true {
            logger.notice(
                "no accounts yet: nobody can sign in. Add one: hospital users add NAME --role desk|doctor|examiner|admin --data-dir \(configuration.dataDirectory.path)"
            )
        }
        return Authentication(issuer: issuer, accounts: store, verifier: verifier, accountsConnection: connection)
    }

    func close() async {
        try? await accountsConnection?.close().get()
    }

    /// The accounts of the data directory (`accounts.sqlite`, mode 0600), for `serve` and for
    /// `hospital users`.
    static func openAccounts(
        _ configuration: HospitalConfiguration, logger: Logger
    ) async throws -> (AccountStore, SQLiteConnection) {
        try DataDirectory.prepare(configuration.dataDirectory)
        let file = configuration.dataDirectory.appendingPathComponent("accounts.sqlite")
        try DataDirectory.createPrivateFile(file)
        let source = SQLiteConnectionSource(
            configuration: .init(storage: .file(path: file.path), enableForeignKeys: true), threadPool: .singleton)
        let connection = try await source.makeConnection(
            logger: logger, on: MultiThreadedEventLoopGroup.singleton.any()
        ).get()
        var settings = AccountStore.Settings()
        settings.bcryptCost = configuration.auth.bcryptCost
        let store = AccountStore(database: connection.sql(), settings: settings)
        do {
            _ = try await connection.sql().raw("PRAGMA journal_mode = WAL").all()
            try await store.prepare()
        } catch {
            try? await connection.close().get()
            throw error
        }
        return (store, connection)
    }

    private static func signingKey(_ configuration: HospitalConfiguration) throws -> SigningKey {
        if let pem = configuration.auth.signingKeyPEM { return try SigningKey(pem: pem) }
        try DataDirectory.prepare(configuration.dataDirectory)
        return try SigningKey.loadOrCreate(at: signingKeyFile(configuration))
    }

    private static func signingKeyFile(_ configuration: HospitalConfiguration) -> URL {
        configuration.auth.signingKeyFile ?? configuration.dataDirectory.appendingPathComponent("signing-key.pem")
    }

    private static func fetchKeySet(from url: URL, logger: Logger) async throws -> JWKS {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .GET
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        guard response.status == .ok else {
            logger.warning("the key set could not be read", metadata: ["status": "\(response.status.code)"])
            throw ConfigurationError("the key set at \(url) answered \(response.status.code)")
        }
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONDecoder().decode(JWKS.self, from: Data(buffer: body))
    }
}

/// The data directory holds patient data and the signing key: only its owner may enter it.
enum DataDirectory {
    static func prepare(_ directory: URL) throws {
        let manager = FileManager.default
        if !manager.fileExists(atPath: directory.path) {
            try manager.createDirectory(
                at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    /// The text of the secret in `file`, which is created (mode 0600, never overwritten) with
    /// `make()` if there is none.
    static func secret(_ file: URL, make: () -> String) throws -> String {
        try prepare(file.deletingLastPathComponent())
        if let text = try? String(contentsOf: file, encoding: .utf8) { return text }
        let fd = open(file.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if fd >= 0 {
            // (Another process that created it first wins: its key is read below.)
            let data = Data(make().utf8)
            let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd) == 0
            close(fd)
            guard written == data.count, synced else { throw ConfigurationError("cannot write \(file.path)") }
        }
        return try String(contentsOf: file, encoding: .utf8)
    }

    /// Creates `file` empty with mode 0600 if it does not exist.
    static func createPrivateFile(_ file: URL) throws {
        let fd = open(file.path, O_WRONLY | O_CREAT, 0o600)
        guard fd >= 0 else { throw ConfigurationError("cannot create \(file.path)") }
        close(fd)
    }
}

extension HospitalSystem {
    /// The local accounts of the data directory, for `hospital users` (safe while the system runs).
    public static func withAccounts<T: Sendable>(
        configuration: HospitalConfiguration, logger: Logger, _ body: (AccountStore) async throws -> T
    ) async throws -> T {
        let (store, connection) = try await Authentication.openAccounts(configuration, logger: logger)
        do {
            let result = try await body(store)
            try? await connection.close().get()
            return result
        } catch {
            try? await connection.close().get()
            throw error
        }
    }
}

/// The keys that protect resident registration numbers (see `AuthConfiguration.piiKey`).
enum PIIKeys {
    static func protector(_ configuration: HospitalConfiguration) throws -> PIIProtector {
        let auth = configuration.auth
        func key(_ base64: String, _ name: String) throws -> PIIProtector.Key {
            guard let data = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw ConfigurationError("\(name): not base64")
            }
            return try PIIProtector.Key(data)
        }
        let current: PIIProtector.Key
        if let raw = auth.piiKey {
            current = try key(raw, "HOSPITAL_PII_KEY")
        } else {
            let file = configuration.dataDirectory.appendingPathComponent("pii-key")
            current = try key(
                try DataDirectory.secret(file) { PIIProtector.Key.random().base64EncodedString() }, file.path)
        }
        return PIIProtector(
            current: current, previous: try auth.piiOldKeys.map { try key($0, "HOSPITAL_PII_OLD_KEYS") },
            indexSecret: try auth.piiIndexKey.map { try key($0, "HOSPITAL_PII_INDEX_KEY") })
    }
}

/// The keys that seal the audit trail (see `AuthConfiguration.auditKey`).
enum AuditKeyring {
    static func keys(_ configuration: HospitalConfiguration, create: Bool = true) throws -> AuditKeys {
        let auth = configuration.auth
        let current: AuditKey
        if let raw = auth.auditKey {
            current = try AuditKey(base64: raw, name: "HOSPITAL_AUDIT_KEY")
        } else {
            let file = configuration.dataDirectory.appendingPathComponent("audit-key")
            guard create || FileManager.default.fileExists(atPath: file.path) else {
                throw ConfigurationError(
                    "no audit key: HOSPITAL_AUDIT_KEY is not set and there is no \(file.path) (give the data directory the services run with)")
            }
            current = try AuditKey(
                base64: try DataDirectory.secret(file) { AuditKey.random().base64EncodedString() }, name: file.path)
        }
        return AuditKeys(
            current: current,
            previous: try auth.auditOldKeys.map { try AuditKey(base64: $0, name: "HOSPITAL_AUDIT_OLD_KEYS") })
    }
}
