import Crypto
import Foundation
import JWTKit
import Synchronization

/// Who made a request, from a verified token. Never from a header a client could set.
public struct Principal: Sendable, Equatable {
    /// The user's name (`sub`).
    public var username: String
    public var role: Role
    public var expiresAt: Date
    /// The session the token was issued for (`sid`), if any.
    public var sessionId: String?
    /// When it was issued (`iat`), if it says.
    public var issuedAt: Date?
    /// The departments (진료과) the user works in (`departments`): whose patients' contact
    /// details a doctor may read without stating a reason.
    public var departments: [String]

    public init(
        username: String, role: Role, expiresAt: Date, sessionId: String? = nil, issuedAt: Date? = nil,
        departments: [String] = []
    ) {
        self.username = username
        self.role = role
        self.expiresAt = expiresAt
        self.sessionId = sessionId
        self.issuedAt = issuedAt
        self.departments = departments
    }
}

/// Why a token was refused. Every case answers 401; the case is for the log, not the client.
public enum TokenRejection: Error, Equatable, Sendable {
    case malformed
    case algorithmNotAllowed(String)
    case unknownKey
    case badSignature
    case expired
    case notYetValid
    case wrongIssuer
    case wrongAudience
    case noRole
    /// The user's name (the claim the settings name, or `sub`) is missing or not a plain name.
    case badSubject
    /// An ID token that does not answer this sign-in's `nonce` (a replayed token).
    case wrongNonce
    /// An opaque token the identity provider did not accept, or could not be asked about.
    case refusedByProvider
    /// Its session was ended, or its account disabled or given a new password, since it was issued.
    case revoked
    /// Valid for longer than this system ever issues tokens for.
    case lifetimeTooLong
}

/// The claims of an access token. `role` is this system's own claim; an external provider's
/// roles are read from the claim the settings name.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var iss: IssuerClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iat: IssuedAtClaim?
    var jti: IDClaim?
    var role: String?
    var sid: String?
    var departments: [String]?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// The key this system signs its tokens with: ES256 (P-256), kept as PEM in a file of mode 0600
/// (created on first start) or given as a secret.
public struct SigningKey: Sendable {
    public let privateKey: ES256PrivateKey
    /// The RFC 7638 thumbprint of the public key: the `kid` of every token it signs.
    public let kid: String

    public init(pem: String) throws {
        try self.init(ES256PrivateKey(pem: pem))
    }

    init(_ key: ES256PrivateKey) throws {
        privateKey = key
        guard let (x, y) = key.publicKey.parameters else { throw TokenRejection.malformed }
        let canonical = #"{"crv":"P-256","kty":"EC","x":"\#(x)","y":"\#(y)"}"#
        kid = Base64URL.encode(Data(SHA256.hash(data: Data(canonical.utf8))))
    }

    /// Reads the key at `file`, creating it (mode 0600, never overwriting) if there is none.
    public static func loadOrCreate(at file: URL) throws -> SigningKey {
        if let pem = try? String(contentsOf: file, encoding: .utf8) { return try SigningKey(pem: pem) }
        let key = ES256PrivateKey()
        let data = Data(key.pemRepresentation.utf8)
        let fd = open(file.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if fd < 0 {
            // Another process created it first: use theirs.
            if errno == EEXIST { return try SigningKey(pem: String(contentsOf: file, encoding: .utf8)) }
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: file.path])
        }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(fd) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file.path])
        }
        return try SigningKey(key)
    }

    /// The public half, as a JSON Web Key Set.
    public var jwks: JWKS {
        let (x, y) = privateKey.publicKey.parameters!
        return JWKS(keys: [
            .ecdsa(.es256, identifier: JWKIdentifier(string: kid), x: x, y: y, curve: .p256)
        ])
    }
}

/// Issues this system's access tokens.
public struct TokenIssuer: Sendable {
    public let key: SigningKey
    public let issuer: String
    public let audience: String
    public let lifetime: TimeInterval
    private let keys: JWTKeyCollection

    public init(key: SigningKey, issuer: String, audience: String, lifetime: TimeInterval) async {
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        keys = JWTKeyCollection()
        await keys.add(ecdsa: key.privateKey, kid: JWKIdentifier(string: key.kid))
    }

    /// A signed token for `username` in `role` (working in `departments`), valid from `now` for
    /// `lifetime` (or less), for the session `sessionId`.
    public func issue(
        username: String, role: Role, departments: [String] = [], sessionId: String? = nil,
        lifetime: TimeInterval? = nil, now: Date = Date()
    ) async throws -> String {
        let claims = AccessClaims(
            sub: .init(value: username), iss: .init(value: issuer), aud: .init(value: [audience]),
            exp: .init(value: now.addingTimeInterval(min(lifetime ?? self.lifetime, self.lifetime))),
            nbf: .init(value: now.addingTimeInterval(-1)), iat: .init(value: now),
            jti: .init(value: UUID().uuidString), role: role.rawValue, sid: sessionId,
            departments: departments.isEmpty ? nil : departments)
        return LowS.normalized(try await keys.sign(claims, kid: JWKIdentifier(string: key.kid)))
    }
}

/// Verifies access tokens against the issuer's public keys: this system's own (in process, or
/// fetched from the gateway's JWKS), or an external OpenID provider's. A token whose key is not
/// known makes it fetch the key set again (at most every `refreshInterval`), so a provider's key
/// rotation needs no restart.
public actor TokenVerifier {
    public struct Settings: Sendable {
        public var issuer: String
        public var audience: String
        /// Where the role is: `["role"]` for this system's tokens, `["realm_access", "roles"]`
        /// for Keycloak's. A list of roles gives the first one this system knows.
        public var roleClaim: [String]
        /// Where the user's name is (`["preferred_username"]` for most providers); `sub` when
        /// nil or absent.
        public var usernameClaim: [String]?
        /// Where the user's departments are (a string or a list); none when absent.
        public var departmentsClaim: [String]
        /// How much clock difference to forgive on `exp` and `nbf`.
        public var leeway: TimeInterval
        public var refreshInterval: Duration
        /// The longest a token may still be valid for when it is checked (12 hours, the longest
        /// HOSPITAL_TOKEN_MINUTES allows): a token valid for decades was not issued by a sane issuer.
        public var maxLifetime: TimeInterval
        /// Whether `aud` may list other audiences besides this one (an external provider's access
        /// tokens often do); this system's own tokens name exactly one.
        public var audienceMayBeShared: Bool
        /// Whether an ES256 signature must be in its low-S form: this system issues only that; an
        /// external provider may not normalize (Java's ECDSA does not).
        public var requireLowS: Bool

        public init(
            issuer: String, audience: String, roleClaim: [String] = ["role"], usernameClaim: [String]? = nil,
            departmentsClaim: [String] = ["departments"], leeway: TimeInterval = 30, refreshInterval: Duration = .seconds(30), maxLifetime: TimeInterval = 12 * 3600,
            audienceMayBeShared: Bool = false, requireLowS: Bool = true
        ) {
            self.issuer = issuer
            self.audience = audience
            self.roleClaim = roleClaim
            self.usernameClaim = usernameClaim
            self.departmentsClaim = departmentsClaim
            self.leeway = leeway
            self.refreshInterval = refreshInterval
            self.maxLifetime = maxLifetime
            self.audienceMayBeShared = audienceMayBeShared
            self.requireLowS = requireLowS
        }
    }

    /// A second issuer this process trusts besides its own: an external OpenID provider. Its
    /// signed tokens are checked by `verifier` (the provider's keys, issuer and the API's
    /// audience); an opaque token (not a JWT) only by `opaque`, when the settings allow asking
    /// the provider about it.
    public struct External: Sendable {
        public let verifier: TokenVerifier
        public let opaque: (@Sendable (String) async throws(TokenRejection) -> Principal)?

        public init(
            verifier: TokenVerifier, opaque: (@Sendable (String) async throws(TokenRejection) -> Principal)? = nil
        ) {
            self.verifier = verifier
            self.opaque = opaque
        }
    }

    /// Only asymmetric algorithms: a shared secret would let every service mint tokens.
    public static let allowedAlgorithms: Set<String> = ["ES256", "RS256"]

    public let settings: Settings
    public let external: External?
    /// Tokens refused although their signature is good (ended sessions, disabled accounts).
    public let revocations: Revocations?
    private let fetchKeys: @Sendable () async throws -> JWKS
    private var keys = JWTKeyCollection()
    private var knownKids: Set<String> = []
    private var lastFetch: ContinuousClock.Instant?
    private var refreshing: Task<Void, Never>?
    /// Tokens already verified, by their exact text.
    private let verified = Mutex<[String: Principal]>([:])

    /// For a process that serves nothing (migrations, a rebuild): knows no key, accepts no token.
    public static let refusingEveryone = TokenVerifier(settings: .init(issuer: "", audience: "")) {
        JWKS(keys: [])
    }

    /// `fetchKeys` reads the issuer's key set (in process, or over HTTP).
    public init(
        settings: Settings, external: External? = nil, revocations: Revocations? = nil,
        fetchKeys: @escaping @Sendable () async throws -> JWKS
    ) {
        self.settings = settings
        self.external = external
        self.revocations = revocations
        self.fetchKeys = fetchKeys
    }

    /// The principal of a token already verified, not expired and not revoked; nil if it must
    /// be verified (where a revoked one is refused).
    nonisolated public func known(_ token: String, now: Date = Date()) -> Principal? {
        guard let known = verified.withLock({ $0[token] }), known.expiresAt.addingTimeInterval(settings.leeway) > now,
            revocations?.isRevoked(known) != true
        else { return nil }
        return known
    }

    nonisolated public func verify(_ token: String, now: Date = Date()) async throws(TokenRejection) -> Principal {
        // A client sends the same token with every request for its lifetime: a token verified
        // once is known by its exact text (any changed byte is another text) until it expires.
        // Looked up without entering the actor: no hop off the caller's thread per request.
        if let known = known(token, now: now) { return known }
        // Not known, or known but expired: the full check (which refuses an expired token).
        let principal = try await verifyAnew(token, now: now)
        // Whether its session or account was ended is asked on every request (a set lookup).
        if revocations?.isRevoked(principal) == true { throw .revoked }
        verified.withLock { cache in
            if cache.count >= 10_000 { cache.removeAll(keepingCapacity: true) }
            cache[token] = principal
        }
        return principal
    }

    /// An OpenID Connect ID token from a sign-in at the provider: signed by its keys, for this
    /// client (the settings' audience), and answering the sign-in's `nonce`. Never cached.
    public func verifyIDToken(_ token: String, nonce: String, now: Date = Date()) async throws(TokenRejection)
        -> Principal
    {
        let (principal, payload) = try await check(token, now: now)
        guard let sent = payload["nonce"] as? String, sent.utf8.elementsEqual(nonce.utf8) else { throw .wrongNonce }
        return principal
    }

    private func verifyAnew(_ token: String, now: Date) async throws(TokenRejection) -> Principal {
        if let external {
            // Not a JWT: an opaque token of the provider, if the settings allow asking it.
            if token.split(separator: ".", omittingEmptySubsequences: false).count != 3 {
                guard let opaque = external.opaque, OpaqueToken.isPlausible(token) else { throw .malformed }
                return try await opaque(token)
            }
            // The provider's JWT: its keys, its issuer (the claim only routes; the signature decides).
            if let payload = Self.unverifiedPayload(token),
                Self.sameIssuer(payload["iss"] as? String, external.verifier.settings.issuer)
            {
                return try await external.verifier.verify(token, now: now)
            }
        }
        return try await check(token, now: now).0
    }

    /// Issuers are compared exactly, except for a trailing slash (providers differ on it).
    static func sameIssuer(_ claimed: String?, _ expected: String) -> Bool {
        guard var claimed else { return false }
        var expected = expected
        if claimed.hasSuffix("/") { claimed.removeLast() }
        if expected.hasSuffix("/") { expected.removeLast() }
        return claimed == expected
    }

    private static func unverifiedPayload(_ token: String) -> [String: Any]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let data = Base64URL.decode(parts[1]) else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    private func check(_ token: String, now: Date) async throws(TokenRejection) -> (Principal, [String: Any]) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count < 16_384,
            let headerData = Base64URL.decode(parts[0]),
            let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
            let payloadData = Base64URL.decode(parts[1]),
            let payload = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any]
        else { throw .malformed }
        guard let alg = header["alg"] as? String, Self.allowedAlgorithms.contains(alg) else {
            throw .algorithmNotAllowed(String(describing: header["alg"] ?? "none"))
        }
        // ECDSA signatures are malleable: (r, n - s) verifies as (r, s) does. Only the low-S form
        // is accepted, so a token has exactly one text (and one entry in the verified cache).
        if alg == "ES256", settings.requireLowS {
            guard let signature = Base64URL.decode(parts[2]), LowS.isLow(signature) else { throw .badSignature }
        }
        let kid = header["kid"] as? String
        if kid.map({ !knownKids.contains($0) }) ?? knownKids.isEmpty { await refreshKeys() }
        if let kid, !knownKids.contains(kid) { throw .unknownKey }

        let claims: AccessClaims
        do {
            claims = try await keys.verify(token, as: AccessClaims.self)
        } catch {
            throw .badSignature
        }
        guard claims.exp.value.addingTimeInterval(settings.leeway) > now else { throw .expired }
        guard claims.exp.value.timeIntervalSince(now) <= settings.maxLifetime + settings.leeway else {
            throw .lifetimeTooLong
        }
        if let nbf = claims.nbf, nbf.value.addingTimeInterval(-settings.leeway) > now { throw .notYetValid }
        guard Self.sameIssuer(claims.iss.value, settings.issuer) else { throw .wrongIssuer }
        guard claims.aud.value.contains(settings.audience),
            settings.audienceMayBeShared || claims.aud.value.count == 1
        else { throw .wrongAudience }
        guard let role = Self.role(in: payload, at: settings.roleClaim) else { throw .noRole }
        let username = try Self.username(in: payload, at: settings.usernameClaim, subject: claims.sub.value)
        return (
            Principal(
                username: username, role: role, expiresAt: claims.exp.value, sessionId: claims.sid,
                issuedAt: claims.iat?.value, departments: Self.departments(in: payload, at: settings.departmentsClaim)),
            payload
        )
    }

    /// The user's name at `path` (else `sub`): what events and the audit trail name them by, so a
    /// plain name of at most 64 bytes without control or invisible formatting characters.
    static func username(in payload: [String: Any], at path: [String]?, subject: String?) throws(TokenRejection)
        -> String
    {
        var value: Any? = payload
        for key in path ?? [] { value = (value as? [String: Any])?[key] }
        guard let name = (path == nil ? nil : value as? String) ?? subject, !name.isEmpty, name.utf8.count <= 64,
            name.unicodeScalars.allSatisfy({
                !$0.properties.generalCategory.isControlOrFormat && !$0.properties.isWhitespace || $0 == " "
            })
        else { throw .badSubject }
        return name
    }

    /// The departments at `path` in the (verified) payload: a string or a list of them, each a
    /// plain name (at most 16, of at most 50 characters; anything else is not believed).
    static func departments(in payload: [String: Any], at path: [String]) -> [String] {
        var value: Any? = payload
        for key in path { value = (value as? [String: Any])?[key] }
        let names = (value as? [String]) ?? (value as? String).map { [$0] } ?? []
        return names.prefix(16).filter { Departments.isName($0) }
    }

    /// The role at `path` in the (verified) payload: a string, or the first known of a list.
    static func role(in payload: [String: Any], at path: [String]) -> Role? {
        var value: Any? = payload
        for key in path { value = (value as? [String: Any])?[key] }
        if let name = value as? String { return Role(rawValue: name) }
        if let names = value as? [String] { return names.lazy.compactMap(Role.init(rawValue:)).first }
        return nil
    }

    /// Reads the key set again, unless it was read within `refreshInterval`. Callers that arrive
    /// while a read is under way wait for it (the actor is reentrant: without this, a burst of
    /// first requests would find the keys still unknown and be refused).
    private func refreshKeys() async {
        if let refreshing {
            await refreshing.value
            return
        }
        let clock = ContinuousClock()
        if let lastFetch, clock.now - lastFetch < settings.refreshInterval { return }
        lastFetch = clock.now
        let task = Task { await self.loadKeys() }
        refreshing = task
        await task.value
        refreshing = nil
    }

    private func loadKeys() async {
        guard let set = try? await fetchKeys() else { return }
        let fresh = JWTKeyCollection()
        var kids: Set<String> = []
        for jwk in set.keys {
            // Only keys for the algorithms allowed; a key without an id cannot be matched.
            guard let kid = jwk.keyIdentifier?.string,
                jwk.algorithm.map({ Self.allowedAlgorithms.contains($0.rawValue) }) ?? true,
                (try? await fresh.add(jwk: jwk)) != nil
            else { continue }
            kids.insert(kid)
        }
        if kids != knownKids { verified.withLock { $0.removeAll() } }  // a withdrawn key takes its tokens
        keys = fresh
        knownKids = kids
    }
}

/// An opaque bearer token (RFC 6750 `b64token`), checked before it is sent anywhere.
enum OpaqueToken {
    static func isPlausible(_ token: String) -> Bool {
        (16...4096).contains(token.utf8.count)
            && token.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || "-._~+/=".utf8.contains(byte)
            }
    }
}

extension Unicode.GeneralCategory {
    var isControlOrFormat: Bool {
        switch self {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: true
        default: false
        }
    }
}

/// Base64url without padding (RFC 7515, 2).
public enum Base64URL {
    /// `count` random bytes, base64url (32 bytes: 43 characters).
    public static func random(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return encode(Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }))
    }

    public static func encode(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func decode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard base64.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/") }) else {
            return nil
        }
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}

/// The low-S form of P-256 ECDSA signatures (r ‖ s, 32 bytes each): s at most half the group order.
enum LowS {
    /// The order n of P-256's group, big-endian.
    static let order: [UInt8] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
    ]
    /// ⌊n / 2⌋.
    static let half: [UInt8] = {
        var result = [UInt8](repeating: 0, count: 32)
        var carry: UInt8 = 0
        for (index, byte) in order.enumerated() {
            result[index] = (byte >> 1) | (carry << 7)
            carry = byte & 1
        }
        return result
    }()

    static func isLow(_ signature: Data) -> Bool {
        guard signature.count == 64 else { return false }
        let s = Array(signature.suffix(32))
        return s == half || s.lexicographicallyPrecedes(half)
    }

    /// n - s, big-endian.
    static func negated(_ s: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for index in stride(from: 31, through: 0, by: -1) {
            var value = Int(order[index]) - Int(s[index]) - borrow
            borrow = value < 0 ? 1 : 0
            if value < 0 { value += 256 }
            result[index] = UInt8(value)
        }
        return result
    }

    /// The token with its ES256 signature in low-S form (the same signature, as verifiers see it).
    static func normalized(_ token: String) -> String {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let signature = Base64URL.decode(parts[2]), signature.count == 64,
            !isLow(signature)
        else { return token }
        let low = Data(signature.prefix(32)) + Data(negated(Array(signature.suffix(32))))
        return parts[0] + "." + parts[1] + "." + Base64URL.encode(low)
    }
}
