import FluentKit
import Foundation
import PatientManagementDomain
import ServiceKit
import Storage

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
    /// The registry's patient, to follow a correction of the name.
    @OptionalField(key: "patient_id") var patientId: UUID?

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] { [$id, $status, $receivedAt, $document, $patientName, $patientId] }

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
        patientId = visit.patientId
        document = String(decoding: try APIJSON.encoder().encode(visit), as: UTF8.self)
    }
}

enum PatientManagementMigrations {
    /// Each row names the registry's patient.
    struct AddPatient: AsyncMigration {
        var name: String { "P005_BoardPatient" }

        func prepare(on database: any Database) async throws {
            try await database.schema(PatientManagementModel.schema).field("patient_id", .uuid).update()
            try await database.sql.raw(
                "CREATE INDEX patient_managements_patient ON patient_managements (patient_id)"
            ).run()
        }

        func revert(on database: any Database) async throws {
            try await database.sql.raw("DROP INDEX IF EXISTS patient_managements_patient").run()
            try await database.schema(PatientManagementModel.schema).deleteField("patient_id").update()
        }
    }

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
            // In SQL rather than through the model: the model has columns later migrations add.
            let sql = try database.sql
            var after: UUID?
            while true {
                let query = sql.select().columns("reception_id", "document").from(PatientManagementModel.schema)
                    .orderBy("reception_id").limit(500)
                if let after { query.where("reception_id", .greaterThan, after) }
                let rows = try await query.all()
                guard !rows.isEmpty else { break }
                for row in rows {
                    let id = try row.decode(column: "reception_id", as: UUID.self)
                    let document = try row.decode(column: "document", as: String.self)
                    let visit = try APIJSON.decoder().decode(PatientManagement.self, from: Data(document.utf8))
                    try await sql.update(PatientManagementModel.schema).set("patient_name", to: visit.patientName)
                        .where("reception_id", .equal, id).run()
                    after = id
                }
            }
        }

        func revert(on database: any Database) async throws {
            try await database.schema(PatientManagementModel.schema).deleteField("patient_name").update()
        }
    }
}
