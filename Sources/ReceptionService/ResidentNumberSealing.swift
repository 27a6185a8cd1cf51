import Crypto
import Foundation
import ServiceKit

/// Encrypts identifiers a patient must not lose control of (the resident registration number):
/// AES-256-GCM with a key from a secret, each value with its own nonce and the key's id, and a
/// keyed hash (HMAC-SHA256, with a key derived from the same secret) to find a record by the
/// value without storing it in clear. Old keys may be kept to read what they encrypted. The keys
/// come from the host (`ResidentNumberKeys`); what is done with them is reception's.
struct PIIProtector: Sendable {
    struct Key: Sendable {
        let key: SymmetricKey
        /// The first 8 hex digits of the key's SHA-256: which key sealed a value.
        let id: String

        init(_ data: Data) {
            key = SymmetricKey(data: data)
            id = String(SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined().prefix(8))
        }
    }

    struct PIIError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    let current: Key
    let previous: [Key]
    private let indexKey: SymmetricKey

    /// `current` seals; `previous` only open what they sealed. The index key stays that of the
    /// first key ever used (`indexSecret`), so rotating the encryption key keeps every index.
    init(_ keys: ResidentNumberKeys) {
        current = Key(keys.current)
        previous = keys.previous.map(Key.init)
        indexKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: keys.indexSecret ?? keys.current),
            info: Data("hospital resident number index".utf8), outputByteCount: 32)
    }

    /// `v1:<key id>:<base64 of nonce, ciphertext and tag>`.
    func seal(_ text: String) throws -> String {
        let box = try AES.GCM.seal(Data(text.utf8), using: current.key)
        guard let combined = box.combined else { throw PIIError("sealing failed") }
        return "v1:\(current.id):\(combined.base64EncodedString())"
    }

    func open(_ sealed: String) throws -> String {
        let parts = sealed.split(separator: ":", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "v1", let data = Data(base64Encoded: parts[2]) else {
            throw PIIError("not a sealed value")
        }
        guard let key = ([current] + previous).first(where: { $0.id == parts[1] }) else {
            throw PIIError("sealed with key \(parts[1]), which this process does not have")
        }
        return String(decoding: try AES.GCM.open(AES.GCM.SealedBox(combined: data), using: key.key), as: UTF8.self)
    }

    /// The keyed hash to look a value up by.
    func index(_ text: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: indexKey).map { String(format: "%02x", $0) }
            .joined()
    }
}
