import DiagnosisDomain
import FluentKit
import Foundation
import ServiceKit

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

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] {
        [
            $id, $version, $receptionId, $patientName, $department, $symptom, $status, $orders, $createdAt, $closedAt,
            $closingNote,
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
        try copy(diagnosis)
    }

    func aggregate() throws -> Diagnosis {
        Diagnosis(
            id: id!, receptionId: receptionId, patientName: patientName, department: department, symptom: symptom,
            status: try UnknownState.parse(status, as: Diagnosis.Status.self, resource: "diagnosis"),
            orders: try APIJSON.decoder().decode([Diagnosis.Order].self, from: Data(orders.utf8)),
            createdAt: createdAt, closedAt: closedAt, closingNote: closingNote)
    }

    func copy(_ diagnosis: Diagnosis) throws {
        status = diagnosis.status.rawValue
        orders = String(decoding: try APIJSON.encoder().encode(diagnosis.orders), as: UTF8.self)
        closedAt = diagnosis.closedAt
        closingNote = diagnosis.closingNote
    }
}

enum DiagnosisMigrations {
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
