import Foundation

/// Reading a backup back: every check before a byte is written, then the files into place.
public enum BackupReader {
    /// The backup's manifest, once the backup has passed every check: a manifest this build
    /// reads, sealed by `key` when the backup is encrypted, of the same installation as the
    /// files, and every file there with the size and SHA-256 it was written with. Throws,
    /// naming what is wrong, otherwise.
    public static func check(_ directory: URL, key: BackupKey?, allowUnencrypted: Bool = false) throws -> BackupManifest {
        let file = directory.appendingPathComponent(BackupManifest.fileName)
        guard let data = try? Data(contentsOf: file) else {
            throw BackupFiles.Failure(
                "no \(BackupManifest.fileName) in \(directory.path): not a backup, or one that did not finish")
        }
        guard let manifest = try? JSONDecoder().decode(BackupManifest.self, from: data) else {
            throw BackupFiles.Failure("\(BackupManifest.fileName) is damaged: not the manifest a backup writes")
        }
        guard manifest.product == "hospital" else {
            throw BackupFiles.Failure("\(BackupManifest.fileName) is of another product (\(manifest.product))")
        }
        guard manifest.format == BackupManifest.currentFormat else {
            throw BackupFiles.Failure(
                "the backup is in format \(manifest.format); this build reads format \(BackupManifest.currentFormat)")
        }
        // Every path inside the backup, before any is read.
        for entry in manifest.files {
            guard !entry.path.split(separator: "/").contains(".."), !entry.path.hasPrefix("/"),
                ["data/", "attachments/", "postgres/"].contains(where: entry.path.hasPrefix)
            else { throw BackupFiles.Failure("\(entry.path): a path outside the backup") }
        }
        if manifest.encryption == nil {
            // Unsealed, a manifest can say anything: it never brings keys, and where a backup key
            // is in use an unencrypted backup is refused unless the operator says it is expected.
            if manifest.files.contains(where: { $0.kind == "key" }) {
                throw BackupFiles.Failure(
                    "the backup is not encrypted but its manifest lists keys: an unencrypted backup never holds keys, so the manifest was changed")
            }
            if key != nil, !allowUnencrypted {
                throw BackupFiles.Failure(
                    "a backup key was given, but this backup is not encrypted (nor sealed): it may have been replaced; give --unencrypted if it was made without a key")
            }
        }
        if let encryption = manifest.encryption {
            guard let key else {
                throw BackupFiles.Failure(
                    "the backup is encrypted (key \(encryption.keyID)): give its key (--key-file or HOSPITAL_BACKUP_KEY)")
            }
            guard key.id == encryption.keyID else {
                throw BackupFiles.Failure(
                    "the backup was encrypted with key \(encryption.keyID); the key given is \(key.id)")
            }
            guard let seal = manifest.seal, seal == (try key.seal(manifest)) else {
                throw BackupFiles.Failure(
                    "the manifest's seal does not verify under this key: it was changed, or it is another installation's")
            }
        }
        // The installation the files belong to, before their hashes: a manifest put beside
        // another installation's files is named as that.
        if let entry = manifest.files.first(where: { $0.kind == "installation" }) {
            let stored = directory.appendingPathComponent(entry.path)
            let owner: String
            if let key, manifest.encryption != nil {
                let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("hospital-restore-\(UUID())")
                defer { try? FileManager.default.removeItem(at: scratch) }
                do {
                    try BackupFiles.restore(stored, path: entry.path, to: scratch, key: key, backupID: manifest.backupID)
                } catch {
                    throw BackupFiles.Failure(
                        "\(entry.path) does not open under this manifest: the files are of another backup or installation (\(error))")
                }
                owner = (try? String(contentsOf: scratch, encoding: .utf8)) ?? ""
            } else {
                guard let text = try? String(contentsOf: stored, encoding: .utf8) else {
                    throw BackupFiles.Failure("\(entry.path): missing from the backup")
                }
                owner = text
            }
            guard owner.trimmingCharacters(in: .whitespacesAndNewlines) == manifest.installation else {
                throw BackupFiles.Failure(
                    "the manifest is of installation \(manifest.installation), the files of another: a manifest from another installation")
            }
        }
        for entry in manifest.files {
            try BackupFiles.check(directory.appendingPathComponent(entry.path), against: entry)
        }
        return manifest
    }

    /// Writes the checked backup's files: `data/…` into `dataDirectory`, `attachments/…` into
    /// `attachments`, the PostgreSQL dumps `postgres/…` into `postgres` (each made, mode 0700). A result file whose bytes do not match its name
    /// once opened is refused.
    public static func extract(
        _ directory: URL, manifest: BackupManifest, key: BackupKey?, dataDirectory: URL, attachments: URL, postgres: URL
    ) throws {
        let manager = FileManager.default
        for entry in manifest.files {
            let destination: URL
            if entry.path.hasPrefix("data/") {
                destination = dataDirectory.appendingPathComponent(String(entry.path.dropFirst("data/".count)))
            } else if entry.path.hasPrefix("postgres/") {
                destination = postgres.appendingPathComponent(String(entry.path.dropFirst("postgres/".count)))
            } else if entry.path.hasPrefix("attachments/") {
                destination = attachments.appendingPathComponent(String(entry.path.dropFirst("attachments/".count)))
            } else {
                throw BackupFiles.Failure("\(entry.path): not a path a backup writes")
            }
            try manager.createDirectory(
                at: destination.deletingLastPathComponent(), withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
            let written = try BackupFiles.restore(
                directory.appendingPathComponent(entry.path), path: entry.path, to: destination,
                key: manifest.encryption == nil ? nil : key, backupID: manifest.backupID)
            if entry.kind == "attachment", written != destination.lastPathComponent {
                throw BackupFiles.Failure("\(entry.path): its bytes do not match its name once restored")
            }
        }
    }
}
