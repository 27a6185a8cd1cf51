import Crypto
import ExaminationDomain
import Foundation
import Logging
import MultipartKit
import NIOCore
import NIOPosix
import ServiceKit
import SharedKernel

/// Result files on a directory that any number of examination replicas share (a ReadWriteMany
/// volume): stored by their SHA-256 (`sha256/ab/abcd…`, the same file twice is stored once),
/// received into `tmp/` first and renamed into place only when complete and checked, so a crash
/// never leaves a half file under a content name. What nothing refers to any more is swept.
public final class AttachmentStore: Sendable {
    public let directory: URL
    /// The most bytes one file may have.
    public let maxBytes: Int64
    /// A temporary file untouched this long belongs to an upload that died; a content file this
    /// old with no row, to one whose row was never written.
    public let grace: TimeInterval
    private let logger: Logger

    public init(directory: URL, maxBytes: Int64, grace: TimeInterval, logger: Logger) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        self.grace = grace
        self.logger = logger
        for sub in ["", "tmp", "sha256"] {
            let url = sub.isEmpty ? directory : directory.appendingPathComponent(sub)
            try FileManager.default.createDirectory(
                at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    /// Where the file with this SH-256 (64 lowercase hex digits) lives.
    func contentFile(sha256: String) -> URL {
        directory.appendingPathComponent("sha256").appendingPathComponent(String(sha256.prefix(2)))
            .appendingPathComponent(sha256)
    }

    /// A file received and in place.
    struct Stored: Sendable {
        var sha256: String
        var size: Int64
        var kind: AttachmentKind
        var fileName: AttachmentFileName
    }

    /// Receives a raw body: its bytes are the file, `Content-Type` the claimed type.
    func receiveRaw<Body: AsyncSequence & Sendable>(
        _ body: Body, claimedType: String?, fileName: AttachmentFileName
    ) async throws -> Stored where Body.Element == ByteBuffer {
        let upload = try Upload(store: self)
        do {
            for try await chunk in body { try await upload.append(chunk) }
            return try await upload.finish(claimedType: claimedType, fileName: fileName)
        } catch {
            upload.abandon()
            throw error
        }
    }

    /// Receives `multipart/form-data`: the part named `file` is the file (its own
    /// `Content-Type` the claimed type, its `filename` the name); other parts are ignored.
    func receiveMultipart<Body: AsyncSequence & Sendable>(
        _ body: Body, boundary: String
    ) async throws -> Stored where Body.Element == ByteBuffer {
        let upload = try Upload(store: self)
        do {
            let parser = MultipartParser(boundary: boundary)
            var headers: [(String, String)] = []
            var inFile: Bool?
            var fileHeaders: [(String, String)] = []
            var pending = ByteBuffer()
            var parts = 0
            parser.onHeader = { name, value in headers.append((name, value)) }
            parser.onBody = { chunk in
                if inFile == nil {
                    let disposition = headers.first { $0.0.lowercased() == "content-disposition" }?.1 ?? ""
                    // The part named `file`; or a part whose disposition could not be read at all
                    // (a name in another encoding than UTF-8 makes the parser drop the header).
                    let named = disposition.isEmpty || Disposition.parameter("name", in: disposition) == "file"
                    inFile = named && parts == 0 && fileHeaders.isEmpty
                    if inFile == true { fileHeaders = headers }
                }
                if inFile == true { pending.writeBuffer(&chunk) }
            }
            parser.onPartComplete = {
                if inFile == true { parts += 1 }
                headers = []
                inFile = nil
            }
            for try await chunk in body {
                try parser.execute(chunk)
                if pending.readableBytes > 0 {
                    try await upload.append(pending)
                    pending.clear()
                }
            }
            guard parts == 1 else {
                throw ValidationFailure([.init(field: "file", code: .invalidFormat, message: "must be one part named file")])
            }
            let disposition = fileHeaders.first { $0.0.lowercased() == "content-disposition" }?.1 ?? ""
            let claimed = fileHeaders.first { $0.0.lowercased() == "content-type" }?.1
            return try await upload.finish(
                claimedType: claimed, fileName: try Self.fileName(Disposition.fileName(in: disposition)))
        } catch {
            upload.abandon()
            throw error
        }
    }

    static func fileName(_ raw: String?) throws -> AttachmentFileName {
        do {
            return try AttachmentFileName(raw)
        } catch {
            throw ValidationFailure([
                .init(field: "fileName", code: .invalidCharacters, message: "must be a plain name of at most 200 bytes")
            ])
        }
    }

    /// Removes temporary files of uploads that died, and content files no row refers to (both
    /// only once older than `grace`: an upload under way, or a row about to be written, keeps
    /// its file). `referenced` says which of some SHA-256s have rows.
    @discardableResult
    public func sweep(referenced: @Sendable ([String]) async throws -> Set<String>) async throws -> Int {
        let manager = FileManager.default
        let cutoff = Date().addingTimeInterval(-grace)
        func old(_ url: URL) -> Bool {
            let modified = (try? manager.attributesOfItem(atPath: url.path)[.modificationDate] as? Date) ?? Date()
            return modified < cutoff
        }
        var removed = 0
        let tmp = directory.appendingPathComponent("tmp")
        for name in (try? manager.contentsOfDirectory(atPath: tmp.path)) ?? [] {
            let url = tmp.appendingPathComponent(name)
            if old(url), (try? manager.removeItem(at: url)) != nil { removed += 1 }
        }
        let content = directory.appendingPathComponent("sha256")
        for prefix in (try? manager.contentsOfDirectory(atPath: content.path)) ?? [] {
            let folder = content.appendingPathComponent(prefix)
            let candidates = ((try? manager.contentsOfDirectory(atPath: folder.path)) ?? []).filter {
                old(folder.appendingPathComponent($0))
            }
            guard !candidates.isEmpty else { continue }
            let kept = try await referenced(candidates)
            for name in candidates where !kept.contains(name) {
                if (try? manager.removeItem(at: folder.appendingPathComponent(name))) != nil { removed += 1 }
            }
        }
        if removed > 0 { logger.info("swept attachment files nothing refers to", metadata: ["count": "\(removed)"]) }
        return removed
    }

    /// One file being received: written to a temporary file as it arrives (in blocks, on the
    /// thread pool), hashed and counted on the way, its first bytes kept to tell its type.
    final class Upload: @unchecked Sendable {
        let store: AttachmentStore
        let temporary: URL
        private let fd: Int32
        private var hasher = SHA256()
        private var size: Int64 = 0
        private var head: [UInt8] = []
        private var block = ByteBuffer()
        private var closed = false

        init(store: AttachmentStore) throws {
            self.store = store
            temporary = store.directory.appendingPathComponent("tmp").appendingPathComponent(
                "\(UUID().uuidString).part")
            fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StoreFailure("cannot create a temporary file in \(store.directory.path)") }
        }

        func append(_ chunk: ByteBuffer) async throws {
            size += Int64(chunk.readableBytes)
            // Over the limit: refused now, not after reading the rest.
            guard size <= store.maxBytes else {
                throw AppError.payloadTooLarge("A file may have at most \(store.maxBytes / 1_048_576) MB.")
            }
            chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            if head.count < AttachmentKind.signatureLength {
                head += chunk.getBytes(
                    at: chunk.readerIndex,
                    length: min(chunk.readableBytes, AttachmentKind.signatureLength - head.count)) ?? []
                // An executable or a script is refused as soon as its first bytes show it.
                if head.count >= AttachmentKind.signatureLength, AttachmentKind.sniff(head) == nil {
                    throw Self.unsupported(claimed: nil)
                }
            }
            var chunk = chunk
            block.writeBuffer(&chunk)
            if block.readableBytes >= 1 << 20 { try await flush() }
        }

        private func flush() async throws {
            guard block.readableBytes > 0 else { return }
            let data = block
            block = ByteBuffer()
            let fd = self.fd
            try await NIOThreadPool.singleton.runIfActive {
                try data.withUnsafeReadableBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                        if written < 0 {
                            if errno == EINTR { continue }
                            throw StoreFailure("writing an attachment failed: errno \(errno)")
                        }
                        offset += written
                    }
                }
            }
        }

        /// Checks the whole file, makes it durable and renames it to its content name.
        func finish(claimedType: String?, fileName: AttachmentFileName) async throws -> Stored {
            guard size > 0 else {
                throw ValidationFailure([.init(field: "file", code: .required, message: "is empty")])
            }
            guard let kind = AttachmentKind.sniff(head) else { throw Self.unsupported(claimed: claimedType) }
            // A client that names a type must name the one the bytes show.
            if let claimedType, !claimedType.isEmpty,
                !claimedType.lowercased().hasPrefix("application/octet-stream"),
                AttachmentKind(mediaType: claimedType) != kind
            {
                throw AppError.unsupportedMediaType(
                    "The file is \(kind.rawValue) by its contents, not \(claimedType.prefix(100)).")
            }
            try await flush()
            let fd = self.fd
            try await NIOThreadPool.singleton.runIfActive {
                guard fsync(fd) == 0 else { throw StoreFailure("fsync of an attachment failed: errno \(errno)") }
            }
            close(fd)
            closed = true
            let sha256 = hasher.finalize().map { String(format: "%02x", $0) }.joined()
            let target = store.contentFile(sha256: sha256)
            let folder = target.deletingLastPathComponent()
            try FileManager.default.createDirectory(
                at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            if FileManager.default.fileExists(atPath: target.path) {
                // The same bytes are there already: keep that one (and make it young again, so a
                // sweep does not take it before this upload's row is written).
                try? FileManager.default.removeItem(at: temporary)
                _ = utimes(target.path, nil)
            } else {
                guard rename(temporary.path, target.path) == 0 else {
                    throw StoreFailure("renaming an attachment into place failed: errno \(errno)")
                }
                let dir = open(folder.path, O_RDONLY | O_DIRECTORY)
                if dir >= 0 {
                    fsync(dir)
                    close(dir)
                }
            }
            return Stored(sha256: sha256, size: size, kind: kind, fileName: fileName)
        }

        /// Drops the temporary file of an upload that failed.
        func abandon() {
            if !closed {
                close(fd)
                closed = true
            }
            try? FileManager.default.removeItem(at: temporary)
        }

        static func unsupported(claimed: String?) -> AppError {
            .unsupportedMediaType(
                "Only PNG, JPEG, PDF and DICOM files can be attached; this file's contents are none of them.")
        }
    }
}

struct StoreFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `Content-Disposition` parameters (RFC 6266, RFC 5987's `filename*`).
enum Disposition {
    static func parameter(_ name: String, in header: String) -> String? {
        for part in header.split(separator: ";").dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == name.lowercased() else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
                value = String(value.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"")
            }
            return value
        }
        return nil
    }

    /// `filename*=UTF-8''…` (percent-encoded UTF-8) when given, else `filename`.
    static func fileName(in header: String) -> String? {
        if let extended = parameter("filename*", in: header) {
            let parts = extended.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
            if parts.count == 3, parts[0].lowercased() == "utf-8", let decoded = parts[2].removingPercentEncoding {
                return decoded
            }
            // Not UTF-8, or not decodable: a name that cannot be shown as it was.
            return "\u{FFFD}"
        }
        return parameter("filename", in: header)
    }

    /// `attachment; filename="…"; filename*=UTF-8''…` for a download.
    static func header(inline: Bool, fileName: String) -> String {
        let ascii = String(fileName.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" ? Character($0) : "_" })
        var allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        allowed.insert(charactersIn: "!#$&+-.^_`|~")
        let encoded = fileName.addingPercentEncoding(withAllowedCharacters: allowed) ?? "attachment"
        return "\(inline ? "inline" : "attachment"); filename=\"\(ascii)\"; filename*=UTF-8''\(encoded)"
    }
}
