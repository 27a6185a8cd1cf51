import FluentKit
import Foundation
import PatientManagementDomain
import ServiceKit

/// One row of the desk's board: the visit's facts as JSON, with the columns the board filters on.
final class PatientManagementModel: Model, @unchecked Sendable {
    static let schema = "patient_managements"

    @ID(custom: "reception_id", generatedBy: .user) var id: UUID?
    @Field(key: "status") var status: String
    /// When the visit was registered, or its first event if that has not arrived yet.
    @Field(key: "received_at") var receivedAt: Date
    @Field(key: "document") var document: String
    /// For the desk's search by name (a prefix); also in the document.
    @OptionalField(key: "patient_name") var patientName: String?

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] { [$id, $status, $receivedAt, $document, $patientName] }

    init(_ visit: PatientManagement) throws {
        id = visit.receptionId
        try copy(visit)
    }

    func visit() throws -> PatientManagement {
        try APIJSON.decoder().decode(PatientManagement.self, from: Data(document.utf8))
    }

    func copy(_ visit: PatientManagement) throws {
        status = visit.status.rawValue
        receivedAt = visit.receivedAt ?? visit.lastEventAt
        patientName = visit.patientName
        document = String(decoding: try APIJSON.encoder().encode(visit), as: UTF8.self)
    }
}

enum PatientManagementMigrations {
    struct CreatePatientManagements: AsyncMigration {
        var name: String { "P001_CreatePatientManagements" }

        func prepare(on database: any Database) async throws {
            try await database.schema(PatientManagementModel.schema)
                .field("reception_id", .uuid, .identifier(auto: false))
                .field("status", .string, .required)
                .field("received_at", .datetime, .required)
                .field("document", .string, .required)
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(PatientManagementModel.schema).delete()
        }
    }

    /// The patient's name as a column, filled from each row's document, for the desk's search.
    struct AddPatientName: AsyncMigration {
        var name: String { "P003_AddPatientName" }

        func prepare(on database: any Database) async throws {
            try await database.schema(PatientManagementModel.schema).field("patient_name", .string).update()
            var after: UUID?
            while true {
                let query = PatientManagementModel.query(on: database).sort(\.$id).limit(500)
                if let after { query.filter(\.$id > after) }
                let rows = try await query.all()
                guard let last = rows.last else { break }
                for row in rows {
                    row.patientName = try row.visit().patientName
                    try await row.update(on: database)
                }
                after = last.id
            }
        }

        func revert(on database: any Database) async throws {
            try await database.schema(PatientManagementModel.schema).deleteField("patient_name").update()
        }
    }
}
