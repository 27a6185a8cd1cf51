import FluentKit
import Foundation
import Logging
import ReceptionDomain
import SQLKit
import ServiceKit
import Storage

/// A registry entry as stored (환자 마스터): demographics, the issued chart number, the sealed
/// resident number, and where it went if it was merged into another.
final class PatientModel: Model, @unchecked Sendable {
    static let schema = "patients"

    @ID(key: .id) var id: UUID?
    @Field(key: "version") var version: Int
    @Field(key: "chart_number") var chartNumber: String
    @Field(key: "name") var name: String
    @OptionalField(key: "birth_date") var birthDate: String?
    @Field(key: "sex") var sex: String
    @OptionalField(key: "phone") var phone: String?
    @OptionalField(key: "address") var address: String?
    /// 주민등록번호, sealed as on visits before the registry (`PIIProtector`).
    @OptionalField(key: "resident_number") var residentNumberSealed: String?
    /// Its keyed hash: unique among the records that are not merged away.
    @OptionalField(key: "resident_number_index") var residentNumberIndex: String?
    @OptionalField(key: "resident_number_masked") var residentNumberMasked: String?
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "updated_at") var updatedAt: Date
    @OptionalField(key: "merged_into") var mergedInto: UUID?
    /// For a record the migration made from visits: what grouped them (`chart:` or `name:`).
    @OptionalField(key: "migrated_from") var migratedFrom: String?

    init() {}

    /// Listed by hand: FluentKit's default finds them by reflection on every query.
    var properties: [any AnyProperty] {
        [
            $id, $version, $chartNumber, $name, $birthDate, $sex, $phone, $address, $residentNumberSealed,
            $residentNumberIndex, $residentNumberMasked, $createdAt, $updatedAt, $mergedInto, $migratedFrom,
        ]
    }

    var demographics: Demographics {
        Demographics(name: name, birthDate: birthDate, sex: Sex(rawValue: sex) ?? .unknown, phone: phone, address: address)
    }

    func copy(_ d: Demographics) {
        name = d.name
        birthDate = d.birthDate
        sex = d.sex.rawValue
        phone = d.phone
        address = d.address
    }
}

/// One change of a patient's record: who, when, which fields (never their values).
final class PatientChangeModel: Model, @unchecked Sendable {
    static let schema = "patient_changes"

    @ID(key: .id) var id: UUID?
    @Field(key: "patient_id") var patientId: UUID
    @Field(key: "version") var version: Int
    @Field(key: "changed_at") var changedAt: Date
    @Field(key: "actor") var actor: String
    /// What happened: `registered`, `corrected`, `merged-into`, `merged-from`, `migrated`.
    @Field(key: "kind") var kind: String
    /// The fields it changed, comma-separated.
    @Field(key: "fields") var fields: String

    init() {}

    var properties: [any AnyProperty] { [$id, $patientId, $version, $changedAt, $actor, $kind, $fields] }

    init(patientId: UUID, version: Int, at: Date, actor: String, kind: String, fields: [String]) {
        id = UUID()
        self.patientId = patientId
        self.version = version
        changedAt = at
        self.actor = actor
        self.kind = kind
        self.fields = fields.joined(separator: ",")
    }
}

/// The running number behind issued chart numbers: one row, advanced in one statement, so no
/// number reaches anyone twice; the unique index on `chart_number` is the last guard. On SQLite
/// it is advanced inside the registering transaction (a registration that does not commit issued
/// nothing). On PostgreSQL in a statement of its own just before the registration, so the row's
/// lock does not line every registration up behind one another (a registration that then fails
/// leaves a gap); registrations of the same person line up on that person's keys instead
/// (`PatientRegistry.lineUp`).
enum ChartNumbers {
    static let table = "chart_number_sequence"

    /// The next number free of every record (carried-over numbers included), taken in `db`'s transaction.
    static func issue(on db: any Database) async throws -> String {
        let sql = try db.sql
        while true {
            let row = try await sql.raw(
                "UPDATE \(ident: table) SET next_number = next_number + 1 WHERE id = 1 RETURNING next_number"
            ).first()
            guard let next = try row?.decode(column: "next_number", as: Int.self) else {
                throw ChartNumberError(description: "the chart number sequence is missing")
            }
            let running = next - 1
            guard running <= ChartNumber.last else {
                throw ChartNumberError(description: "every eight-digit chart number has been issued")
            }
            let number = ChartNumber.issue(running)
            let taken = try await sql.raw("SELECT 1 AS x FROM patients WHERE chart_number = \(bind: number)").first()
            if taken == nil { return number }
        }
    }

    struct ChartNumberError: Error, CustomStringConvertible {
        var description: String
    }
}

enum PatientMigrations {
    struct CreatePatients: AsyncMigration {
        var name: String { "R009_CreatePatients" }

        func prepare(on database: any Database) async throws {
            // In one transaction (DDL is transactional on both engines): a start that dies part
            // way leaves nothing behind, and the next one does it all again.
            try await DatabaseEngine.of(database).writeTransaction(on: database) { db in try await create(on: db) }
        }

        private func create(on database: any Database) async throws {
            // Names compare byte by byte (UTF-8 order) on both engines, so a name prefix is a
            // range of the index: PostgreSQL's default collation would order by locale instead.
            let nameType: DatabaseSchema.DataType =
                try DatabaseEngine.of(database).kind == .postgresql ? .sql(unsafeRaw: "TEXT COLLATE \"C\"") : .string
            try await database.schema(PatientModel.schema)
                .id()
                .field("version", .int, .required)
                .field("chart_number", .string, .required)
                .field("name", nameType, .required)
                .field("birth_date", .string)
                .field("sex", .string, .required)
                .field("phone", .string)
                .field("address", .string)
                .field("resident_number", .string)
                .field("resident_number_index", .string)
                .field("resident_number_masked", .string)
                .field("created_at", .datetime, .required)
                .field("updated_at", .datetime, .required)
                .field("merged_into", .uuid)
                .field("migrated_from", .string)
                .unique(on: "chart_number", name: "patients_chart_number")
                .create()
            let sql = try database.sql
            try await sql.raw(
                "CREATE UNIQUE INDEX patients_resident_number ON patients (resident_number_index)"
            ).run()
            for (name, columns) in [
                ("patients_name", "name, id"), ("patients_birth_name", "birth_date, name"), ("patients_phone", "phone"),
                ("patients_migrated", "migrated_from"), ("patients_created", "created_at, id"),
            ] {
                try await sql.raw("CREATE INDEX \(unsafeRaw: name) ON patients (\(unsafeRaw: columns))").run()
            }
            try await database.schema(PatientChangeModel.schema)
                .id()
                .field("patient_id", .uuid, .required)
                .field("version", .int, .required)
                .field("changed_at", .datetime, .required)
                .field("actor", .string, .required)
                .field("kind", .string, .required)
                .field("fields", .string, .required)
                .create()
            try await sql.raw("CREATE INDEX patient_changes_patient ON patient_changes (patient_id, changed_at)").run()
            try await sql.raw("CREATE TABLE \(ident: ChartNumbers.table) (id INTEGER PRIMARY KEY, next_number BIGINT NOT NULL)")
                .run()
            try await sql.raw(
                "INSERT INTO \(ident: ChartNumbers.table) (id, next_number) VALUES (1, \(literal: ChartNumber.first))"
            ).run()
            // Each visit names its registry entry.
            try await database.schema(ReceptionModel.schema).field("patient_ref", .uuid).update()
            try await sql.raw(
                "CREATE INDEX receptions_patient_ref ON receptions (patient_ref, received_at, id)"
            ).run()
        }

        func revert(on database: any Database) async throws {
            try await database.sql.raw("DROP INDEX IF EXISTS receptions_patient_ref").run()
            try await database.schema(ReceptionModel.schema).deleteField("patient_ref").update()
            try await database.sql.raw("DROP TABLE \(ident: ChartNumbers.table)").run()
            try await database.schema(PatientChangeModel.schema).delete()
            try await database.schema(PatientModel.schema).delete()
        }
    }

    /// Today's visits become registry entries, once: each distinct chart number the desk typed is
    /// one patient (keeping that number); visits without one are grouped by name and birth date,
    /// and each group gets a newly issued number. The newest visit of a group gives the name,
    /// birth date, phone and resident number; sex is not known (`U`) until the desk corrects it.
    /// Visits that already name a patient are left alone, so running it again does nothing.
    struct MigrateVisits: AsyncMigration {
        let logger: Logger
        var name: String { "R010_MigrateVisitsToPatients" }

        func prepare(on database: any Database) async throws {
            // In one transaction: a crash part way leaves no patient behind, and the next start
            // does it all again.
            let report = try await DatabaseEngine.of(database).writeTransaction(on: database) { db in
                try await PatientMigrations.migrateVisits(on: db, now: ServiceContext.millisecondNow())
            }
            logger.notice(
                "patient registry: \(report.visits) visits migrated into \(report.patients) patients (\(report.byChartNumber) by chart number, \(report.byNameAndBirthDate) by name and birth date; \(report.sharedResidentNumbers) resident numbers shared by more than one patient left on their visits)",
                metadata: ["migration": "\(name)"])
        }

        func revert(on database: any Database) async throws {}
    }

    struct Report: Equatable, Sendable {
        var visits = 0
        var patients = 0
        var byChartNumber = 0
        var byNameAndBirthDate = 0
        var sharedResidentNumbers = 0
    }

    /// What groups a visit: its chart number, or its name and birth date.
    static let grouping = """
        CASE WHEN receptions.patient_id IS NOT NULL AND receptions.patient_id <> '' THEN 'chart:' || receptions.patient_id
             ELSE 'name:' || receptions.patient_name || '|' || COALESCE(receptions.birth_date, '') END
        """

    static func migrateVisits(on database: any Database, now: Date) async throws -> Report {
        let sql = try database.sql
        var report = Report()
        // The newest visit of each group (its name, birth date and phone), and how many visits it has.
        let groups = try await sql.raw(
            """
            SELECT receptions.patient_id, receptions.patient_name, receptions.birth_date, receptions.phone,
                   g.visits, g.grouping
            FROM receptions
            JOIN (SELECT \(unsafeRaw: grouping) AS grouping, MAX(received_at) AS newest, COUNT(*) AS visits
                  FROM receptions WHERE patient_ref IS NULL GROUP BY 1) g
              ON g.grouping = \(unsafeRaw: grouping) AND receptions.received_at = g.newest
            WHERE receptions.patient_ref IS NULL
            ORDER BY g.grouping
            """
        ).all()
        // The newest resident number each group's visits recorded (not every visit asked for it).
        var residents: [String: (sealed: String?, index: String, masked: String?)] = [:]
        for row in try await sql.raw(
            """
            SELECT \(unsafeRaw: grouping) AS grouping, resident_number, resident_number_index, resident_number_masked
            FROM receptions WHERE patient_ref IS NULL AND resident_number_index IS NOT NULL
            ORDER BY received_at DESC
            """
        ).all() {
            let key = try row.decode(column: "grouping", as: String.self)
            if residents[key] == nil {
                residents[key] = (
                    try row.decode(column: "resident_number", as: String?.self),
                    try row.decode(column: "resident_number_index", as: String.self),
                    try row.decode(column: "resident_number_masked", as: String?.self)
                )
            }
        }
        var seen: Set<String> = []
        var residentIndexes: Set<String> = []
        for row in groups {
            let grouping = try row.decode(column: "grouping", as: String.self)
            guard seen.insert(grouping).inserted else { continue }  // two visits at the newest moment
            guard try await sql.raw("SELECT 1 AS x FROM patients WHERE migrated_from = \(bind: grouping)").first() == nil
            else { continue }
            let chart = try row.decode(column: "patient_id", as: String?.self).flatMap { $0.isEmpty ? nil : $0 }
            let chartNumber: String
            if let chart {
                chartNumber = chart
            } else {
                chartNumber = try await ChartNumbers.issue(on: database)
            }
            var resident: (sealed: String?, index: String, masked: String?)?
            if let found = residents[grouping] {
                let takenBefore = try await sql.raw(
                    "SELECT 1 AS x FROM patients WHERE resident_number_index = \(bind: found.index)"
                ).first() != nil
                if residentIndexes.insert(found.index).inserted, !takenBefore {
                    resident = found
                } else {
                    report.sharedResidentNumbers += 1
                }
            }
            // In SQL rather than through the model: the model has columns later migrations add.
            let id = UUID()
            try await sql.insert(into: PatientModel.schema)
                .columns(
                    "id", "version", "chart_number", "name", "birth_date", "sex", "phone", "resident_number",
                    "resident_number_index", "resident_number_masked", "created_at", "updated_at", "migrated_from")
                .values(
                    SQLBind(id), SQLBind(1), SQLBind(chartNumber),
                    SQLBind(try row.decode(column: "patient_name", as: String.self)),
                    SQLBind(try row.decode(column: "birth_date", as: String?.self)), SQLBind(Sex.unknown.rawValue),
                    SQLBind(try row.decode(column: "phone", as: String?.self)), SQLBind(resident?.sealed),
                    SQLBind(resident?.index), SQLBind(resident?.masked), SQLBind(now), SQLBind(now), SQLBind(grouping))
                .run()
            try await sql.insert(into: PatientChangeModel.schema)
                .columns("id", "patient_id", "version", "changed_at", "actor", "kind", "fields")
                .values(
                    SQLBind(UUID()), SQLBind(id), SQLBind(1), SQLBind(now), SQLBind("system:migration"),
                    SQLBind("migrated"), SQLBind(""))
                .run()
            report.patients += 1
            let visits = try row.decode(column: "visits", as: Int.self)
            report.visits += visits
            if chart != nil { report.byChartNumber += 1 } else { report.byNameAndBirthDate += 1 }
        }
        // Every visit of a group names its patient, in one statement.
        try await sql.raw(
            """
            UPDATE receptions SET patient_ref = (
              SELECT p.id FROM patients p WHERE p.migrated_from = \(unsafeRaw: grouping))
            WHERE patient_ref IS NULL
            """
        ).run()
        return report
    }
}
