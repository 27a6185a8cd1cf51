import ExaminationDomain
import FluentKit
import Foundation
import ServiceKit

/// An examination as stored.
final class ExaminationModel: AggregateRecord, @unchecked Sendable {
    static let schema = "examinations"
    static let resource = "examination"

    @ID(key: .id) var id: UUID?
    @Field(key: "version") var version: Int
    @Field(key: "order_id") var orderId: UUID
    @Field(key: "diagnosis_id") var diagnosisId: UUID
    @Field(key: "reception_id") var receptionId: UUID
    @Field(key: "patient_name") var patientName: String
    @Field(key: "code") var code: String
    @Field(key: "name") var name: String
    @Field(key: "status") var status: String
    @OptionalField(key: "result") var result: String?
    @OptionalField(key: "cancel_reason") var cancelReason: String?
    @Field(key: "requested_at") var requestedAt: Date
    @OptionalField(key: "resolved_at") var resolvedAt: Date?
    /// The registry's patient (from the order's event; nil for orders from before the registry).
    @OptionalField(key: "patient_id") var patientId: UUID?

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] {
        [
            $id, $version, $orderId, $diagnosisId, $receptionId, $patientName, $code, $name, $status, $result,
            $cancelReason, $requestedAt, $resolvedAt, $patientId,
        ]
    }

    init(_ exam: Examination) {
        id = exam.id
        version = 0
        orderId = exam.orderId
        diagnosisId = exam.diagnosisId
        receptionId = exam.receptionId
        patientName = exam.patientName
        code = exam.code
        name = exam.name
        requestedAt = exam.requestedAt
        copy(exam)
    }

    func aggregate() throws -> Examination {
        Examination(
            id: id!, orderId: orderId, diagnosisId: diagnosisId, receptionId: receptionId, patientName: patientName,
            code: code, name: name, status: try UnknownState.parse(status, as: Examination.Status.self, resource: "examination"), result: result,
            cancelReason: cancelReason, requestedAt: requestedAt, resolvedAt: resolvedAt)
    }

    func copy(_ exam: Examination) {
        status = exam.status.rawValue
        result = exam.result
        cancelReason = exam.cancelReason
        resolvedAt = exam.resolvedAt
    }
}

enum ExaminationMigrations {
    /// Each exam names the registry's patient, for the name, age and sex the examiner sees.
    struct AddPatient: AsyncMigration {
        var name: String { "E004_ExaminationPatient" }

        func prepare(on database: any Database) async throws {
            try await database.schema(ExaminationModel.schema).field("patient_id", .uuid).update()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(ExaminationModel.schema).deleteField("patient_id").update()
        }
    }

    struct CreateExaminations: AsyncMigration {
        var name: String { "E001_CreateExaminations" }

        func prepare(on database: any Database) async throws {
            try await database.schema(ExaminationModel.schema)
                .id()
                .field("version", .int, .required)
                .field("order_id", .uuid, .required)
                .field("diagnosis_id", .uuid, .required)
                .field("reception_id", .uuid, .required)
                .field("patient_name", .string, .required)
                .field("code", .string, .required)
                .field("name", .string, .required)
                .field("status", .string, .required)
                .field("result", .string)
                .field("cancel_reason", .string)
                .field("requested_at", .datetime, .required)
                .field("resolved_at", .datetime)
                // One exam per order, however often the prescription arrives.
                .unique(on: "order_id")
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(ExaminationModel.schema).delete()
        }
    }
}
