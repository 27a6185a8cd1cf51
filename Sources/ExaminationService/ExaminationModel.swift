import ExaminationDomain
import FluentKit
import Foundation
import ServiceKit
import SharedKernel
import Storage

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
    /// The visit's department and 대기 번호, the desk's priority (and its rank, for the exam
    /// rooms' queue order) and the calling state (JSON).
    @OptionalField(key: "department") var department: String?
    @OptionalField(key: "queue_number") var queueNumber: String?
    @OptionalField(key: "priority") var priority: String?
    @OptionalField(key: "priority_rank") var priorityRank: Int?
    @OptionalField(key: "calling") var calling: String?

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] {
        [
            $id, $version, $orderId, $diagnosisId, $receptionId, $patientName, $code, $name, $status, $result,
            $cancelReason, $requestedAt, $resolvedAt, $patientId, $department, $queueNumber, $priority, $priorityRank,
            $calling,
        ]
    }

    init(_ exam: Examination) throws {
        id = exam.id
        version = 0
        orderId = exam.orderId
        diagnosisId = exam.diagnosisId
        receptionId = exam.receptionId
        patientName = exam.patientName
        code = exam.code
        name = exam.name
        requestedAt = exam.requestedAt
        department = exam.department
        queueNumber = exam.queueNumber
        try copy(exam)
    }

    func aggregate() throws -> Examination {
        Examination(
            id: id!, orderId: orderId, diagnosisId: diagnosisId, receptionId: receptionId, patientName: patientName,
            code: code, name: name, status: try UnknownState.parse(status, as: Examination.Status.self, resource: "examination"), result: result,
            cancelReason: cancelReason, requestedAt: requestedAt, resolvedAt: resolvedAt, department: department,
            queueNumber: queueNumber, priority: priority.flatMap(QueuePriority.init(rawValue:)) ?? .normal,
            calling: try calling.map { try APIJSON.decoder().decode(Calling.self, from: Data($0.utf8)) } ?? Calling())
    }

    func copy(_ exam: Examination) throws {
        status = exam.status.rawValue
        result = exam.result
        cancelReason = exam.cancelReason
        resolvedAt = exam.resolvedAt
        priority = exam.priority.rawValue
        priorityRank = exam.priority.rank
        calling =
            exam.calling == Calling()
            ? nil : String(decoding: try APIJSON.encoder().encode(exam.calling), as: UTF8.self)
    }
}

enum ExaminationMigrations {
    /// Calling to exam rooms: each exam's department, queue number, priority and place.
    struct AddCalling: AsyncMigration {
        var name: String { "E005_ExamCalling" }

        func prepare(on database: any Database) async throws {
            try await DatabaseEngine.of(database).writeTransaction(on: database) { db in
                for (column, type) in [
                    ("department", "TEXT"), ("queue_number", "TEXT"), ("priority", "TEXT"), ("priority_rank", "INTEGER"),
                    ("calling", "TEXT"),
                ] {
                    try await db.sql.raw("ALTER TABLE examinations ADD COLUMN \(unsafeRaw: column) \(unsafeRaw: type)").run()
                }
                // Exams ordered before: the desk's ordinary priority, so they queue among the rest.
                try await db.sql.raw(
                    "UPDATE examinations SET priority = 'NORMAL', priority_rank = 2 WHERE priority_rank IS NULL"
                ).run()
                // The exam rooms' queue: what waits to be performed, by priority, then arrival.
                try await db.sql.raw(
                    "CREATE INDEX examinations_queue ON examinations (status, priority_rank, requested_at, id)"
                ).run()
            }
        }

        func revert(on database: any Database) async throws {
            try await database.sql.raw("DROP INDEX IF EXISTS examinations_queue").run()
            for column in ["calling", "priority_rank", "priority", "queue_number", "department"] {
                try await database.sql.raw("ALTER TABLE examinations DROP COLUMN \(unsafeRaw: column)").run()
            }
        }
    }

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
