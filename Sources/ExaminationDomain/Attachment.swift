import Foundation

/// A result file attached to an examination: an X-ray or ultrasound image, an ECG strip, a lab
/// report. Its type is what its own bytes say, never what a client claims.
public enum AttachmentKind: String, Sendable, CaseIterable, Codable {
    case png = "image/png"
    case jpeg = "image/jpeg"
    case pdf = "application/pdf"
    case dicom = "application/dicom"

    /// How many leading bytes `sniff` needs to decide (DICOM: a 128-byte preamble, then "DICM").
    public static let signatureLength = 132

    /// The kind the leading bytes of a file show, or nil for anything else (an executable, a
    /// script, a file of another kind). `complete` says these are all of the file's bytes.
    public static func sniff(_ head: [UInt8]) -> AttachmentKind? {
        if head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if head.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if head.starts(with: Array("%PDF-".utf8)) { return .pdf }
        if head.count >= 132, Array(head[128..<132]) == Array("DICM".utf8) { return .dicom }
        return nil
    }

    /// The kind a client names in `Content-Type` (parameters ignored), if it is one of these.
    public init?(mediaType: String) {
        let bare = mediaType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard let bare else { return nil }
        switch bare {
        case "image/png": self = .png
        case "image/jpeg", "image/jpg", "image/pjpeg": self = .jpeg
        case "application/pdf": self = .pdf
        case "application/dicom": self = .dicom
        default: return nil
        }
    }

    /// Shown in the browser (images, PDFs) rather than downloaded.
    public var isInline: Bool { self != .dicom }

    public var isImage: Bool { self == .png || self == .jpeg }
}

/// Why an attachment was refused.
public enum AttachmentRefusal: Error, Equatable, Sendable {
    /// Not PNG, JPEG, PDF or DICOM by its own bytes, or not what the client said it was.
    case unsupportedType(claimed: String?, found: AttachmentKind?)
    case empty
    case tooLarge(limit: Int64)
    case badFileName
    /// The examination is canceled: nothing more is attached to it.
    case examinationClosed(status: String)
}

/// A file name as a person gave it, made safe to store and to show: only its last path
/// component, no control or bidirectional-override characters, at most 200 bytes of UTF-8.
/// The name is never used to build a path (files are stored by their SHA-256).
public struct AttachmentFileName: Sendable, Equatable {
    public let text: String

    public init(_ raw: String?) throws(AttachmentRefusal) {
        guard let raw else {
            text = "attachment"
            return
        }
        // Whatever a client sends as a path, only the last component is a name.
        let last = raw.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        let cleaned = last.trimmingCharacters(in: .whitespaces)
        // A name sent in another encoding than UTF-8 arrives with replacement characters: it
        // cannot be shown as it was, so it gets a plain one.
        if cleaned.contains("\u{FFFD}") {
            text = "attachment"
            return
        }
        guard !cleaned.isEmpty, cleaned != ".", cleaned != "..", cleaned.utf8.count <= 200,
            cleaned.unicodeScalars.allSatisfy({ scalar in
                switch scalar.properties.generalCategory {
                case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned:
                    false
                default: true
                }
            })
        else { throw .badFileName }
        text = cleaned
    }
}
