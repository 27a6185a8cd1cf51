import Foundation
import HTTPProxy
import ServiceKit
import Vapor

/// Result files on the screens: the examiner attaches them (a file input or drag and drop, a
/// progress bar for large files), the doctor sees them on the visit (images inline, PDFs in the
/// browser, DICOM downloaded). Bytes stream through to the examination service as the signed-in
/// user, never collected here.
extension WebScreens {
    /// `POST /examiner/examinations/{id}/attachments`: the form's file (multipart), or a script's
    /// raw file with its name in `Content-Disposition`.
    @Sendable func attach(_ req: Request) async throws -> Response {
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
            return req.redirect(to: "/examiner?error=notFound", redirectType: .normal)
        }
        let path = "/examinations/\(id.uuidString)/attachments"
        let upstream = try Self.upstream(of: path, in: upstreams)
        let answer = try await StreamingProxy.forward(
            req, to: upstream.url, service: upstream.service, path: path, token: req.signedIn?.token)
        // A script reads the answer itself (its own progress and messages).
        if req.headers.first(name: "X-Requested-With") == "fetch" { return answer }
        if answer.status == .created {
            return req.redirect(to: "/examiner?notice=attached", redirectType: .normal)
        }
        // The URL names a known case, never free text.
        let code =
            switch answer.status.code {
            case 415: "attachType"
            case 413: "attachSize"
            case 400, 422: "attachInvalid"
            case 409: "attachClosed"
            default: "attach"
            }
        return req.redirect(to: "/examiner?error=\(code)", redirectType: .normal)
    }

    /// A file, for the screens (an image's `src`, a PDF's link): the API's answer streamed through.
    @Sendable func attachmentFile(_ req: Request) async throws -> Response {
        guard let id = req.parameters.get("id").flatMap(UUID.init(uuidString:)),
            let attachment = req.parameters.get("attachmentId").flatMap(UUID.init(uuidString:))
        else { throw Abort(.notFound) }
        let path = "/examinations/\(id.uuidString)/attachments/\(attachment.uuidString)"
        let upstream = try Self.upstream(of: path, in: upstreams)
        return try await StreamingProxy.forward(
            req, to: upstream.url, service: upstream.service, path: path, token: req.signedIn?.token)
    }

    /// The files of an examination for a page: name, type, size, where to see them.
    func attachmentRows(_ req: Request, examination: UUID, role: String, screen: Screen) async -> [[String: Any]] {
        guard let list: ListOf<AttachmentDTO> = try? await api(req).get(
            "/examinations/\(examination.uuidString)/attachments")
        else { return [] }
        return list.items.map { file in
            [
                "id": file.id.uuidString, "fileName": file.fileName, "size": Self.size(file.size),
                "url": "/\(role)/examinations/\(examination.uuidString)/attachments/\(file.id.uuidString)",
                "isImage": file.contentType == "image/png" || file.contentType == "image/jpeg",
                "isPDF": file.contentType == "application/pdf", "isDICOM": file.contentType == "application/dicom",
            ] as [String: Any]
        }
    }

    static func size(_ bytes: Int64) -> String {
        bytes >= 1_048_576
            ? String(format: "%.1f MB", Double(bytes) / 1_048_576) : String(format: "%.0f KB", max(1, Double(bytes) / 1024))
    }
}

struct AttachmentDTO: Decodable, Sendable {
    var id: UUID
    var fileName: String
    var contentType: String
    var size: Int64
}
