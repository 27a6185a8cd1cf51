import FluentKit
import Foundation
import ReceptionDomain
import SQLKit
import ServiceKit
import Storage

/// A reception as stored: the aggregate's state plus its version for optimistic concurrency.
final class ReceptionModel: AggregateRecord, @unchecked Sendable {
    static let schema = "receptions"
    static let resource = "reception"

    @ID(key: .id) var id: UUID?
    @Field(key: "version") var version: Int
    @Field(key: "status") var status: String
    @Field(key: "patient_name") var patientName: String
    @OptionalField(key: "patient_id") var patientId: String?
    @OptionalField(key: "birth_date") var birthDate: String?
    @OptionalField(key: "phone") var phone: String?
    @OptionalField(key: "department") var department: String?
    @OptionalField(key: "symptom") var symptom: String?
    @Field(key: "received_at") var receivedAt: Date
    @OptionalField(key: "completed_at") var completedAt: Date?
    @OptionalField(key: "canceled_at") var canceledAt: Date?
    @OptionalField(key: "cancel_reason") var cancelReason: String?
    /// 주민등록번호, AES-256-GCM sealed (`PIIProtector`); never stored in clear.
    @OptionalField(key: "resident_number") var residentNumberSealed: String?
    /// Its keyed hash, to find the patient by it.
    @OptionalField(key: "resident_number_index") var residentNumberIndex: String?
    /// As every answer shows it: `850315-1******`.
    @OptionalField(key: "resident_number_masked") var residentNumberMasked: String?
    /// The registry's patient this visit is for.
    @OptionalField(key: "patient_ref") var patientRef: UUID?
    /// 대기 번호 (`A-012`) and the desk's priority (`EMERGENCY`, `CARE`, `NORMAL`).
    @OptionalField(key: "queue_number") var queueNumber: String?
    @OptionalField(key: "priority") var priority: String?

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] {
        [
            $id, $version, $status, $patientName, $patientId, $birthDate, $phone, $department, $symptom, $receivedAt,
            $completedAt, $canceledAt, $cancelReason, $residentNumberSealed, $residentNumberIndex,
            $residentNumberMasked, $patientRef, $queueNumber, $priority,
        ]
    }

    init(_ reception: Reception) {
        id = reception.id
        version = 0
        patientName = reception.patient.name
        receivedAt = reception.receivedAt
        copy(reception)
    }

    func aggregate() throws -> Reception {
        Reception(
            id: id!,
            patient: Patient(
                name: patientName, patientId: patientId, birthDate: birthDate, phone: phone, department: department,
                symptom: symptom),
            status: try UnknownState.parse(status, as: Reception.Status.self, resource: "reception"), receivedAt: receivedAt, completedAt: completedAt,
            canceledAt: canceledAt, cancelReason: cancelReason)
    }

    func copy(_ reception: Reception) {
        status = reception.status.rawValue
        patientId = reception.patient.patientId
        birthDate = reception.patient.birthDate
        phone = reception.patient.phone
        department = reception.patient.department
        symptom = reception.patient.symptom
        completedAt = reception.completedAt
        canceledAt = reception.canceledAt
        cancelReason = reception.cancelReason
    }
}

/// A registration's Idempotency-Key: the visit it created and a digest of the request, so a retry
/// gets that visit again (read afresh: no copy of the patient is kept here) for a day.
final class IdempotencyRecord: Model, @unchecked Sendable {
    static let schema = "idempotency_keys"

    @ID(custom: "key", generatedBy: .user) var id: String?
    /// A digest of the request as validated, to tell a retry from a different request.
    @Field(key: "request") var request: String
    @Field(key: "reception_id") var receptionId: UUID
    @Field(key: "response") var response: String
    @Field(key: "created_at") var createdAt: Date

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query, its costliest step.
    var properties: [any AnyProperty] { [$id, $request, $receptionId, $response, $createdAt] }

    init(key: String, request: String, receptionId: UUID, response: String, createdAt: Date) {
        self.id = key
        self.request = request
        self.receptionId = receptionId
        self.response = response
        self.createdAt = createdAt
    }
}

enum ReceptionMigrations {
    /// Idempotency records kept a copy of the answer (the patient's details); they no longer do.
    struct ForgetStoredAnswers: AsyncMigration {
        var name: String { "R007_ForgetStoredAnswers" }

        func prepare(on database: any Database) async throws {
            try await database.sql.update(IdempotencyRecord.schema).set("response", to: "").run()
        }

        func revert(on database: any Database) async throws {}
    }

    /// The resident registration number: sealed, its lookup hash (indexed) and its masked form.
    struct AddResidentNumber: AsyncMigration {
        var name: String { "R005_AddResidentNumber" }

        func prepare(on database: any Database) async throws {
            // One column per statement: SQLite adds one at a time.
            for column in ["resident_number", "resident_number_index", "resident_number_masked"] {
                try await database.schema(ReceptionModel.schema).field(.string(column), .string).update()
            }
            try await database.sql.create(index: "receptions_resident_number")
                .on(ReceptionModel.schema).column("resident_number_index").run()
        }

        func revert(on database: any Database) async throws {
            for column in ["resident_number", "resident_number_index", "resident_number_masked"] {
                try await database.schema(ReceptionModel.schema).deleteField(.string(column)).update()
            }
        }
    }

    struct CreateReceptions: AsyncMigration {
        var name: String { "R001_CreateReceptions" }

        func prepare(on database: any Database) async throws {
            try await database.schema(ReceptionModel.schema)
                .id()
                .field("version", .int, .required)
                .field("status", .string, .required)
                .field("patient_name", .string, .required)
                .field("patient_id", .string)
                .field("birth_date", .string)
                .field("phone", .string)
                .field("department", .string)
                .field("symptom", .string)
                .field("received_at", .datetime, .required)
                .field("completed_at", .datetime)
                .field("canceled_at", .datetime)
                .field("cancel_reason", .string)
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(ReceptionModel.schema).delete()
        }
    }

    struct CreateIdempotencyKeys: AsyncMigration {
        var name: String { "R002_CreateIdempotencyKeys" }

        func prepare(on database: any Database) async throws {
            try await database.schema(IdempotencyRecord.schema)
                .field("key", .string, .identifier(auto: false))
                .field("request", .string, .required)
                .field("reception_id", .uuid, .required)
                .field("response", .string, .required)
                .field("created_at", .datetime, .required)
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(IdempotencyRecord.schema).delete()
        }
    }
}

/// 대기 번호: each department's running number of the day, issued in the registering
/// transaction (the row's lock lines up concurrent registrations on PostgreSQL; SQLite's single
/// writer does on SQLite), so two visits of a department never share a number.
enum QueueNumbers {
    static let table = "queue_numbers"

    /// The next number of `department` (nil: visits without one share a queue) on `day`
    /// (the hospital's date, `yyyy-MM-dd`).
    static func issue(department: String?, day: String, on db: any Database) async throws -> Int {
        let row = try await db.sql.raw(
            """
            INSERT INTO \(ident: table) (day, department, last_number) VALUES (\(bind: day), \(bind: department ?? ""), 1)
            ON CONFLICT (day, department) DO UPDATE SET last_number = \(ident: table).last_number + 1
            RETURNING last_number
            """
        ).first()
        return try row?.decode(column: "last_number", as: Int.self) ?? 1
    }
}

extension ReceptionMigrations {
    /// Day queue numbers per department, and each visit's number and priority.
    struct AddQueueNumbers: AsyncMigration {
        var name: String { "R011_QueueNumbers" }

        func prepare(on database: any Database) async throws {
            try await DatabaseEngine.of(database).writeTransaction(on: database) { db in
                try await db.sql.raw(
                    """
                    CREATE TABLE \(ident: QueueNumbers.table) (
                        day TEXT NOT NULL, department TEXT NOT NULL, last_number INTEGER NOT NULL,
                        PRIMARY KEY (day, department))
                    """
                ).run()
                try await db.sql.raw("ALTER TABLE receptions ADD COLUMN queue_number TEXT").run()
                try await db.sql.raw("ALTER TABLE receptions ADD COLUMN priority TEXT").run()
            }
        }

        func revert(on database: any Database) async throws {
            try await database.sql.raw("ALTER TABLE receptions DROP COLUMN priority").run()
            try await database.sql.raw("ALTER TABLE receptions DROP COLUMN queue_number").run()
            try await database.sql.raw("DROP TABLE \(ident: QueueNumbers.table)").run()
        }
    }
}
