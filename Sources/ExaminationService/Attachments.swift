import Contracts
import ExaminationDomain
import FluentKit
import Foundation
import Messaging
import NIOCore
import SQLKit
import ServiceKit
import SharedKernel
import Storage
import Vapor

/// One attached file as stored: the row points at the file by its SHA-256.
final class AttachmentModel: Model, @unchecked Sendable {
    static let schema = "attachments"

    @ID(key: .id) var id: UUID?
    @Field(key: "examination_id") var examinationId: UUID
    @Field(key: "reception_id") var receptionId: UUID
    @Field(key: "file_name") var fileName: String
    @Field(key: "content_type") var contentType: String
    @Field(key: "size") var size: Int64
    @Field(key: "sha256") var sha256: String
    @Field(key: "uploaded_at") var uploadedAt: Date
    @Field(key: "uploaded_by") var uploadedBy: String

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query.
    var properties: [any AnyProperty] {
        [$id, $examinationId, $receptionId, $fileName, $contentType, $size, $sha256, $uploadedAt, $uploadedBy]
    }

    init(
        examination: Examination, stored: AttachmentStore.Stored, uploadedAt: Date, uploadedBy: String
    ) {
        id = UUID()
        examinationId = examination.id
        receptionId = examination.receptionId
        fileName = stored.fileName.text
        contentType = stored.kind.rawValue
        size = stored.size
        sha256 = stored.sha256
        self.uploadedAt = uploadedAt
        self.uploadedBy = uploadedBy
    }

    var reference: AttachmentReference {
        AttachmentReference(id: id!, contentType: contentType, size: size, sha256: sha256)
    }
}

enum AttachmentMigrations {
    struct CreateAttachments: AsyncMigration {
        var name: String { "E003_CreateAttachments" }

        func prepare(on database: any Database) async throws {
            try await database.schema(AttachmentModel.schema)
                .id()
                .field("examination_id", .uuid, .required)
                .field("reception_id", .uuid, .required)
                .field("file_name", .string, .required)
                .field("content_type", .string, .required)
                .field("size", .int64, .required)
                .field("sha256", .string, .required)
                .field("uploaded_at", .datetime, .required)
                .field("uploaded_by", .string, .required)
                .create()
            let sql = try database.sql
            try await sql.create(index: "attachments_examination").on(AttachmentModel.schema)
                .column("examination_id").column("uploaded_at").run()
            try await sql.create(index: "attachments_sha256").on(AttachmentModel.schema).column("sha256").run()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(AttachmentModel.schema).delete()
        }
    }
}

/// An attachment as the API shows it.
public struct AttachmentResponse: Content, Equatable {
    public var id: UUID
    public var examinationId: UUID
    public var fileName: String
    public var contentType: String
    public var size: Int64
    public var sha256: String
    public var uploadedAt: Date
    public var uploadedBy: String

    init(_ model: AttachmentModel) {
        id = model.id!
        examinationId = model.examinationId
        fileName = model.fileName
        contentType = model.contentType
        size = model.size
        sha256 = model.sha256
        uploadedAt = model.uploadedAt
        uploadedBy = model.uploadedBy
    }
}

extension ExaminationService {
    func registerAttachmentRoutes(on examinations: any RoutesBuilder) {
        // The body streams to the file: never collected in memory.
        examinations.on(.POST, ":id", "attachments", body: .stream, use: upload)
        examinations.get(":id", "attachments", use: attachments)
        examinations.get(":id", "attachments", ":attachmentId", use: download)
    }

    /// 첨부: `POST /examinations/{id}/attachments`, `multipart/form-data` (part `file`) or the
    /// file itself as the body (its `Content-Type`, its name in `Content-Disposition`).
    @Sendable func upload(_ req: Request) async throws -> Response {
        let id = try req.id(of: "examination")
        guard let store = attachmentStore else { throw AppError.notReady("No attachments directory is set up.") }
        let exam = try await ExaminationModel.require(id, on: context.store.database).aggregate()
        req.auditVisits = [exam.receptionId]
        try Self.requireOpen(exam)
        // Declared over the limit: refused before a byte is read (a multipart body may carry a
        // few kilobytes of headers besides the file).
        if let length = req.headers.first(name: .contentLength).flatMap(Int64.init), length > store.maxBytes + 65_536 {
            throw AppError.payloadTooLarge("A file may have at most \(store.maxBytes / 1_048_576) MB.")
        }
        let contentType = req.headers.first(name: .contentType) ?? ""
        let stored: AttachmentStore.Stored
        if contentType.lowercased().hasPrefix("multipart/form-data") {
            guard let boundary = Disposition.parameter("boundary", in: contentType), !boundary.isEmpty else {
                throw ValidationFailure([.init(field: "Content-Type", code: .invalidFormat, message: "needs a boundary")])
            }
            stored = try await store.receiveMultipart(req.body, boundary: boundary)
        } else {
            let name = req.headers.first(name: .contentDisposition).flatMap(Disposition.fileName(in:))
            stored = try await store.receiveRaw(
                req.body, claimedType: contentType.isEmpty ? nil : contentType,
                fileName: try AttachmentStore.fileName(name))
        }
        let uploader = req.actor(default: "examiner")
        let now = context.now()
        // The row, once the file is in place; the examination checked again inside the
        // transaction (canceled meanwhile: no row, and the file is swept later).
        let model = try await context.store.write { db in
            let current = try await ExaminationModel.require(id, on: db).aggregate()
            try Self.requireOpen(current)
            let model = AttachmentModel(examination: current, stored: stored, uploadedAt: now, uploadedBy: uploader)
            try await model.insert(on: db)
            return model
        }
        req.logger.info(
            "attachment stored",
            metadata: [
                "examination": "\(id)", "attachment": "\(model.id!)", "size": "\(stored.size)",
                "type": "\(stored.kind.rawValue)",
            ])
        let response = Response(status: .created)
        try response.content.encode(AttachmentResponse(model), using: APIJSON.encoder())
        return response
    }

    /// Files are attached while the exam waits for its result, and go with it: the completion
    /// event names them all.
    static func requireOpen(_ exam: Examination) throws {
        guard exam.status == .requested else {
            throw AppError.conflict(
                currentState: exam.status.rawValue,
                detail: "Files are attached before the result is recorded; this examination is \(exam.status.rawValue).")
        }
    }

    struct AttachmentList: Content {
        var items: [AttachmentResponse]
    }

    /// `GET /examinations/{id}/attachments`: oldest first.
    @Sendable func attachments(_ req: Request) async throws -> AttachmentList {
        let id = try req.id(of: "examination")
        let exam = try await ExaminationModel.require(id, on: context.store.database)
        req.auditVisits = [exam.receptionId]
        let rows = try await AttachmentModel.query(on: context.store.database)
            .filter(\.$examinationId == id).sort(\.$uploadedAt).sort(\.$id).all()
        return AttachmentList(items: rows.map(AttachmentResponse.init))
    }

    /// `GET /examinations/{id}/attachments/{attachmentId}`: the bytes, streamed, with their type,
    /// a `Content-Disposition` (inline for images and PDFs), the SHA-256 as `ETag`, and `Range`.
    @Sendable func download(_ req: Request) async throws -> Response {
        let id = try req.id(of: "examination")
        let attachmentId = try req.id("attachmentId", of: "attachment")
        guard let store = attachmentStore else { throw AppError.notReady("No attachments directory is set up.") }
        guard
            let row = try await AttachmentModel.query(on: context.store.database)
                .filter(\.$id == attachmentId).filter(\.$examinationId == id).first()
        else { throw AppError.notFound(resource: "attachment", id: attachmentId.uuidString) }
        req.auditVisits = [row.receptionId]
        let etag = "\"\(row.sha256)\""
        if let match = req.headers.first(name: .ifNoneMatch), match == etag || match == "*" {
            var headers = HTTPHeaders()
            headers.replaceOrAdd(name: .eTag, value: etag)
            return Response(status: .notModified, headers: headers)
        }
        let file = store.contentFile(sha256: row.sha256)
        guard FileManager.default.fileExists(atPath: file.path) else {
            req.logger.error("an attachment's file is missing", metadata: ["attachment": "\(attachmentId)"])
            throw AppError.notReady("The file of this attachment cannot be read right now.")
        }
        let kind = AttachmentKind(rawValue: row.contentType) ?? .dicom
        let response = try await req.fileio.asyncStreamFile(
            at: file.path, mediaType: Self.mediaType(kind))
        response.headers.replaceOrAdd(name: .eTag, value: etag)
        response.headers.replaceOrAdd(name: .contentDisposition, value: Disposition.header(inline: kind.isInline, fileName: row.fileName))
        response.headers.replaceOrAdd(name: .cacheControl, value: "private, no-store")
        response.headers.remove(name: .lastModified)
        return response
    }

    static func mediaType(_ kind: AttachmentKind) -> HTTPMediaType {
        switch kind {
        case .png: .png
        case .jpeg: .jpeg
        case .pdf: .pdf
        case .dicom: HTTPMediaType(type: "application", subType: "dicom")
        }
    }

    /// What an `ExaminationCompleted` event names: the files attached so far.
    func references(of examination: UUID) async throws -> [AttachmentReference] {
        try await AttachmentModel.query(on: context.store.database)
            .filter(\.$examinationId == examination).sort(\.$uploadedAt).sort(\.$id).all().map(\.reference)
    }

    /// Sweeps the attachments directory (at start, then every ten minutes).
    func sweepAttachments() async {
        guard let store = attachmentStore else { return }
        let database = context.store.database
        do {
            try await store.sweep { candidates in
                let rows = try await AttachmentModel.query(on: database).filter(\.$sha256 ~~ candidates).all()
                return Set(rows.map(\.sha256))
            }
        } catch {
            context.logger.warning("the attachments sweep failed", metadata: ["error": "\(loggable(error))"])
        }
    }
}
