import Crypto
import Foundation

/// What a backup holds and how to check it: written last, as `manifest.json`, into the
/// backup's directory.
public struct BackupManifest: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        /// Path within the backup, `/`-separated: `data/reception.sqlite`, `attachments/sha256/ab/ab…`.
        public var path: String
        /// `database`, `key`, `attachment` or `installation`.
        public var kind: String
        /// Bytes as stored (sealed, when the backup is encrypted).
        public var size: Int64
        /// SHA-256 of the bytes as stored, hex.
        public var sha256: String

        public init(path: String, kind: String, size: Int64, sha256: String) {
            self.path = path
            self.kind = kind
            self.size = size
            self.sha256 = sha256
        }
    }

    public struct Encryption: Codable, Sendable, Equatable {
        public var cipher: String
        /// The first 16 hex digits of SHA-256 of the backup key: names the key without giving it.
        public var keyID: String
        public var chunkBytes: Int
    }

    /// The layout of this file and the backup's directory; a restore refuses any other.
    public var format: Int
    public var product: String
    public var backupID: String
    /// The data directory's own id (its `installation-id` file, which the backup also holds).
    public var installation: String
    /// ISO 8601, UTC: the moment the databases were copied as of.
    public var createdAt: String
    public var writePauseMilliseconds: Int64
    /// The last position of the local event log in the backup (nil: no local event log).
    public var eventLogEnd: Int64?
    /// Every migration the backup's databases have had: a restore refuses one it does not know.
    public var migrations: [String]
    public var encryption: Encryption?
    /// What is deliberately not in the backup, and why.
    public var notIncluded: [String]
    public var files: [Entry]
    /// HMAC-SHA256 of the manifest without this field, under a key derived from the backup key
    /// (encrypted backups only): a manifest edited, or from another installation, fails it.
    public var seal: String?

    public static let currentFormat = 1
    public static let fileName = "manifest.json"

    public var totalBytes: Int64 { files.reduce(0) { $0 + $1.size } }

    func canonical() throws -> Data {
        var unsealed = self
        unsealed.seal = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(unsealed)
    }

    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

/// The key a backup is encrypted with: 32 random bytes, given in base64 (`HOSPITAL_BACKUP_KEY`
/// or a file). It is never written into a backup: kept apart, it is what makes a stolen
/// backup (resident numbers' key included) useless.
public struct BackupKey: Sendable {
    let key: SymmetricKey

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(base64: String, name: String) throws {
        guard let data = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32
        else { throw Invalid(description: "\(name): a backup key is 32 bytes in base64 (make one: hospital backup --new-key)") }
        key = SymmetricKey(data: data)
    }

    public static func random() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// Names the key without giving it away.
    public var id: String {
        key.withUnsafeBytes { SHA256.hash(data: Data($0)).hex.prefix(16).description }
    }

    func fileKey(backupID: String, path: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key, salt: Data(backupID.utf8), info: Data("hospital backup file \(path)".utf8),
            outputByteCount: 32)
    }

    func manifestKey(backupID: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key, salt: Data(backupID.utf8), info: Data("hospital backup manifest".utf8),
            outputByteCount: 32)
    }

    func seal(_ manifest: BackupManifest) throws -> String {
        Data(HMAC<SHA256>.authenticationCode(for: try manifest.canonical(), using: manifestKey(backupID: manifest.backupID)))
            .hex
    }
}

/// Files in and out of a backup: copied (or sealed, chunk by chunk, with AES-256-GCM) while
/// hashed, fsynced; and read back, checked and opened.
///
/// A sealed file is `HOSPBAK1` and then chunks, each `UInt32` big-endian length, then the
/// ciphertext and its tag. Each file has its own key (derived from the backup key, the backup's
/// id and the file's path: a file moved to another path or into another backup does not open),
/// the chunk's number is its nonce (chunks cannot be reordered), and the last chunk says it is
/// the last (a file cut short does not open).
public enum BackupFiles {
    static let magic = Data("HOSPBAK1".utf8)
    public static let chunkBytes = 1 << 20

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Writes `source` to `destination` (a new file, mode 0600), sealed when `key` is given, and
    /// returns the entry for the manifest (size and SHA-256 of what was written) and the SHA-256
    /// of what was read (one pass over the file for both).
    static func store(
        _ source: URL, to destination: URL, path: String, kind: String, key: BackupKey?, backupID: String
    ) throws -> (entry: BackupManifest.Entry, sourceSHA256: String) {
        let input = try FileHandle(forReadingFrom: source)
        defer { try? input.close() }
        let output = try createFile(destination)
        defer { try? output.close() }
        var hash = SHA256()
        var read = SHA256()
        var size: Int64 = 0
        func emit(_ data: Data) throws {
            try output.write(contentsOf: data)
            hash.update(data: data)
            size += Int64(data.count)
        }
        if let key {
            let fileKey = key.fileKey(backupID: backupID, path: path)
            try emit(magic)
            var index: UInt64 = 0
            var chunk = try input.read(upToCount: chunkBytes) ?? Data()
            while true {
                read.update(data: chunk)
                let next = chunk.count < chunkBytes ? Data() : (try input.read(upToCount: chunkBytes) ?? Data())
                let last = next.isEmpty
                let box = try AES.GCM.seal(
                    chunk, using: fileKey, nonce: nonce(index), authenticating: Data([last ? 1 : 0]))
                var length = UInt32(box.ciphertext.count + box.tag.count).bigEndian
                try emit(Data(bytes: &length, count: 4))
                try emit(box.ciphertext + box.tag)
                if last { break }
                chunk = next
                index += 1
            }
        } else {
            while let data = try input.read(upToCount: chunkBytes), !data.isEmpty {
                read.update(data: data)
                try emit(data)
            }
        }
        try output.synchronize()
        return (.init(path: path, kind: kind, size: size, sha256: Data(hash.finalize()).hex), read.finalize().hex)
    }

    /// Checks `file` against its entry: size, then SHA-256 of every byte.
    static func check(_ file: URL, against entry: BackupManifest.Entry) throws {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file.path),
            let size = (attributes[.size] as? NSNumber)?.int64Value
        else { throw Failure("\(entry.path): missing from the backup") }
        guard size == entry.size else {
            throw Failure(
                "\(entry.path): \(size) bytes where the manifest says \(entry.size) (\(size < entry.size ? "cut short" : "grown"))")
        }
        let input = try FileHandle(forReadingFrom: file)
        defer { try? input.close() }
        var hash = SHA256()
        while let data = try input.read(upToCount: chunkBytes), !data.isEmpty { hash.update(data: data) }
        guard Data(hash.finalize()).hex == entry.sha256 else {
            throw Failure("\(entry.path): its bytes differ from what the manifest recorded (SHA-256): changed or damaged")
        }
    }

    /// Writes the original of the stored `file` to `destination` (a new file, mode 0600),
    /// opening it with `key` when the backup is sealed; returns the SHA-256 of what it wrote.
    @discardableResult
    static func restore(_ file: URL, path: String, to destination: URL, key: BackupKey?, backupID: String) throws
        -> String
    {
        let input = try FileHandle(forReadingFrom: file)
        defer { try? input.close() }
        let output = try createFile(destination)
        defer { try? output.close() }
        var written = SHA256()
        if let key {
            let fileKey = key.fileKey(backupID: backupID, path: path)
            guard try input.read(upToCount: magic.count) == magic else { throw Failure("\(path): not a sealed backup file") }
            var index: UInt64 = 0
            while true {
                guard let header = try input.read(upToCount: 4), header.count == 4 else {
                    throw Failure("\(path): cut short (no last chunk)")
                }
                let length = header.reduce(0) { $0 << 8 | Int($1) }
                guard length >= 16, length <= chunkBytes + 16, let body = try input.read(upToCount: length),
                    body.count == length
                else { throw Failure("\(path): cut short or damaged (chunk \(index))") }
                let last: Bool
                let plain: Data
                do {
                    let box = try AES.GCM.SealedBox(
                        nonce: nonce(index), ciphertext: body.prefix(length - 16), tag: body.suffix(16))
                    if let opened = try? AES.GCM.open(box, using: fileKey, authenticating: Data([1])) {
                        (plain, last) = (opened, true)
                    } else {
                        (plain, last) = (try AES.GCM.open(box, using: fileKey, authenticating: Data([0])), false)
                    }
                } catch {
                    throw Failure(
                        "\(path): chunk \(index) does not open with this key: changed, damaged, or sealed under another key")
                }
                try output.write(contentsOf: plain)
                written.update(data: plain)
                if last {
                    guard (try input.read(upToCount: 1) ?? Data()).isEmpty else {
                        throw Failure("\(path): bytes after its last chunk")
                    }
                    break
                }
                index += 1
            }
        } else {
            while let data = try input.read(upToCount: chunkBytes), !data.isEmpty {
                try output.write(contentsOf: data)
                written.update(data: data)
            }
        }
        try output.synchronize()
        return written.finalize().hex
    }

    static func nonce(_ index: UInt64) throws -> AES.GCM.Nonce {
        var big = index.bigEndian
        return try AES.GCM.Nonce(data: Data(count: 4) + Data(bytes: &big, count: 8))
    }

    /// A new file, mode 0600 (patient data), never one that exists.
    static func createFile(_ url: URL) throws -> FileHandle {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw Failure("cannot create \(url.path): \(String(cString: strerror(errno)))") }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }
}

extension Data {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}

extension Digest {
    var hex: String { Data(self).hex }
}
