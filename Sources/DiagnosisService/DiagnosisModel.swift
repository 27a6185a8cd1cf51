import DiagnosisDomain
import FluentKit
import Foundation
import ServiceKit
import SharedKernel
import Storage

/// A diagnosis as stored. Its orders are part of the aggregate and are stored with it, as JSON.
final class DiagnosisModel: AggregateRecord, @unchecked Sendable {
    static let schema = "diagnoses"
    static let resource = "diagnosis"

    @ID(key: .id) var id: UUID?
    @Field(key: "version") var version: Int
    @Field(key: "reception_id") var receptionId: UUID
    @Field(key: "patient_name") var patientName: String
    @OptionalField(key: "department") var department: String?
    @OptionalField(key: "symptom") var symptom: String?
    @Field(key: "status") var status: String
    @Field(key: "orders") var orders: String
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "closed_at") var closedAt: Date?
    @OptionalField(key: "closing_note") var closingNote: String?
    /// The registry's patient (from the visit's event; nil for visits from before the registry).
    @OptionalField(key: "patient_id") var patientId: UUID?
    /// 대기 번호, the desk's priority (and its rank, for the queue's order) and the calling state (JSON).
    @OptionalField(key: "queue_number") var queueNumber: String?
    @OptionalField(key: "priority") var priority: String?
    @OptionalField(key: "priority_rank") var priorityRank: Int?
    @OptionalField(key: "calling") var calling: String?

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] {
        [
            $id, $version, $receptionId, $patientName, $department, $symptom, $status, $orders, $createdAt, $closedAt,
            $closingNote, $patientId, $queueNumber, $priority, $priorityRank, $calling,
        ]
    }

    init(_ diagnosis: Diagnosis) throws {
        id = diagnosis.id
        version = 0
        receptionId = diagnosis.receptionId
        patientName = diagnosis.patientName
        department = diagnosis.department
        symptom = diagnosis.symptom
        createdAt = diagnosis.createdAt
        queueNumber = diagnosis.queueNumber
        try copy(diagnosis)
    }

    func aggregate() throws -> Diagnosis {
        Diagnosis(
            id: id!, receptionId: receptionId, patientName: patientName, department: department, symptom: symptom,
            status: try UnknownState.parse(status, as: Diagnosis.Status.self, resource: "diagnosis"),
            orders: try APIJSON.decoder().decode([Diagnosis.Order].self, from: Data(orders.utf8)),
            createdAt: createdAt, closedAt: closedAt, closingNote: closingNote, queueNumber: queueNumber,
            priority: priority.flatMap(QueuePriority.init(rawValue:)) ?? .normal,
            calling: try calling.map { try APIJSON.decoder().decode(Calling.self, from: Data($0.utf8)) } ?? Calling())
    }

    func copy(_ diagnosis: Diagnosis) throws {
        status = diagnosis.status.rawValue
        // The desk may change the priority after 접수 (PriorityChanged).
        priority = diagnosis.priority.rawValue
        priorityRank = diagnosis.priority.rank
        orders = String(decoding: try APIJSON.encoder().encode(diagnosis.orders), as: UTF8.self)
        closedAt = diagnosis.closedAt
        closingNote = diagnosis.closingNote
        calling =
            diagnosis.calling == Calling()
            ? nil : String(decoding: try APIJSON.encoder().encode(diagnosis.calling), as: UTF8.self)
    }
}

enum DiagnosisMigrations {
    /// Calling: each consultation's queue number, priority and place in its department's queue.
    struct AddCalling: AsyncMigration {
        var name: String { "D005_Calling" }

        func prepare(on database: any Database) async throws {
            try await DatabaseEngine.of(database).writeTransaction(on: database) { db in
                for (column, type) in [
                    ("queue_number", "TEXT"), ("priority", "TEXT"), ("priority_rank", "INTEGER"), ("calling", "TEXT"),
                ] {
                    try await db.sql.raw("ALTER TABLE diagnoses ADD COLUMN \(unsafeRaw: column) \(unsafeRaw: type)").run()
                }
                // A department's queue: who waits for the doctor, by priority, then arrival.
                try await db.sql.raw(
                    "CREATE INDEX diagnoses_queue ON diagnoses (department, status, priority_rank, created_at)"
                ).run()
            }
        }

        func revert(on database: any Database) async throws {
            try await database.sql.raw("DROP INDEX IF EXISTS diagnoses_queue").run()
            for column in ["calling", "priority_rank", "priority", "queue_number"] {
                try await database.sql.raw("ALTER TABLE diagnoses DROP COLUMN \(unsafeRaw: column)").run()
            }
        }
    }

    /// Each diagnosis names the registry's patient; a patient's visits are found by it.
    struct AddPatient: AsyncMigration {
        var name: String { "D004_DiagnosisPatient" }

        func prepare(on database: any Database) async throws {
            try await database.schema(DiagnosisModel.schema).field("patient_id", .uuid).update()
            try await database.sql.raw(
                "CREATE INDEX diagnoses_patient ON diagnoses (patient_id, created_at)"
            ).run()
        }

        func revert(on database: any Database) async throws {
            try await database.sql.raw("DROP INDEX IF EXISTS diagnoses_patient").run()
            try await database.schema(DiagnosisModel.schema).deleteField("patient_id").update()
        }
    }

    struct CreateDiagnoses: AsyncMigration {
        var name: String { "D001_CreateDiagnoses" }

        func prepare(on database: any Database) async throws {
            try await database.schema(DiagnosisModel.schema)
                .id()
                .field("version", .int, .required)
                .field("reception_id", .uuid, .required)
                .field("patient_name", .string, .required)
                .field("department", .string)
                .field("symptom", .string)
                .field("status", .string, .required)
                .field("orders", .string, .required)
                .field("created_at", .datetime, .required)
                .field("closed_at", .datetime)
                .field("closing_note", .string)
                // One diagnosis per visit, whatever happens to deliveries.
                .unique(on: "reception_id")
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(DiagnosisModel.schema).delete()
        }
    }
}
