import Contracts
import FluentKit
import Foundation
import SQLKit
import SharedKernel
import Storage

/// What a service keeps of the registry's patients, from events alone: the name, sex and birth
/// date its screens show, and where a merged record went. The desk's registry is the one writer;
/// this copy answers the doctor's and the examiner's screens while reception is down.
///
/// Events reach a service in no particular order across patients and visits (a visit's events
/// and a patient's are keyed differently), so each row keeps the registry's version and only a
/// newer one replaces it: the copy converges on the registry's latest, whatever the order.
public enum KnownPatients {
    public static let table = "known_patients"

    public struct Patient: Sendable, Equatable {
        public var id: UUID
        public var name: String
        public var sex: String
        public var birthDate: String?
        public var version: Int
        public var mergedInto: UUID?

        /// 만 나이 on `day` (`YYYY-MM-DD`).
        public func age(on day: String) -> Int? { birthDate.flatMap { Age.years(born: $0, on: day) } }
    }

    /// The table, under the owning service's migration name (`D003_KnownPatients`).
    public struct Create: AsyncMigration {
        public let name: String

        public init(name: String) { self.name = name }

        public func prepare(on database: any Database) async throws {
            try await database.schema(KnownPatients.table)
                .field("patient_id", .uuid, .identifier(auto: false))
                .field("name", .string, .required)
                .field("sex", .string, .required)
                .field("birth_date", .string)
                .field("version", .int, .required)
                .field("merged_into", .uuid)
                .create()
            try await database.sql.raw(
                "CREATE INDEX known_patients_merged ON known_patients (merged_into)"
            ).run()
        }

        public func revert(on database: any Database) async throws {
            try await database.schema(KnownPatients.table).delete()
        }
    }

    /// Keeps `facts` unless a newer version is already kept.
    public static func learn(_ facts: PatientFacts, on db: any Database) async throws {
        let sql = try db.sql
        try await sql.raw(
            """
            INSERT INTO known_patients (patient_id, name, sex, birth_date, version)
            VALUES (\(bind: facts.patientId), \(bind: facts.name), \(bind: facts.sex), \(bind: facts.birthDate), \(bind: facts.version))
            ON CONFLICT (patient_id) DO NOTHING
            """
        ).run()
        try await sql.raw(
            """
            UPDATE known_patients SET name = \(bind: facts.name), sex = \(bind: facts.sex),
                birth_date = \(bind: facts.birthDate), version = \(bind: facts.version)
            WHERE patient_id = \(bind: facts.patientId) AND version < \(bind: facts.version)
            """
        ).run()
    }

    /// Records that `id` was merged into `into` (a record not seen yet is kept as a placeholder
    /// the visit's own event fills in).
    public static func merged(_ id: UUID, into: UUID, on db: any Database) async throws {
        let sql = try db.sql
        try await sql.raw(
            """
            INSERT INTO known_patients (patient_id, name, sex, birth_date, version, merged_into)
            VALUES (\(bind: id), '', 'U', NULL, 0, \(bind: into))
            ON CONFLICT (patient_id) DO UPDATE SET merged_into = \(bind: into)
            """
        ).run()
    }

    /// Applies a registry event; false for any other event.
    @discardableResult
    public static func apply(_ envelope: EventEnvelope, on db: any Database) async throws -> Bool {
        switch envelope.event {
        case .patientRegistered(let e): try await learn(e.patient, on: db)
        case .patientUpdated(let e): try await learn(e.patient, on: db)
        case .patientMerged(let e): try await merged(e.patientId, into: e.into, on: db)
        default: return false
        }
        return true
    }

    /// The registry's events a service that keeps this copy handles: a correction and a merge.
    /// Not a registration: a patient matters to a service from their first visit, whose event
    /// carries them (skipping it keeps a walk-in's registration free for every consumer).
    public static let eventTypes: Set<String> = [PatientUpdated.type, PatientMerged.type]

    /// The kept patients among `ids`.
    public static func find(_ ids: some Collection<UUID>, on db: any Database) async throws -> [UUID: Patient] {
        guard !ids.isEmpty else { return [:] }
        let rows = try await db.sql.select().columns("*").from(table)
            .where("patient_id", .in, Array(Set(ids))).all()
        var found: [UUID: Patient] = [:]
        for row in rows {
            let p = Patient(
                id: try row.decode(column: "patient_id", as: UUID.self),
                name: try row.decode(column: "name", as: String.self),
                sex: try row.decode(column: "sex", as: String.self),
                birthDate: try row.decode(column: "birth_date", as: String?.self),
                version: try row.decode(column: "version", as: Int.self),
                mergedInto: try row.decode(column: "merged_into", as: UUID?.self))
            found[p.id] = p
        }
        return found
    }

    /// The kept patients among `ids` as they are now: a record merged away shows the record it
    /// went to (when this service knows that one), so a visit of a misspelled duplicate shows
    /// the corrected patient after the merge.
    public static func current(_ ids: some Collection<UUID>, on db: any Database) async throws -> [UUID: Patient] {
        var found = try await find(ids, on: db)
        for _ in 0..<5 {
            let survivors = Set(found.values.compactMap(\.mergedInto))
            guard !survivors.isEmpty else { break }
            let known = try await find(survivors, on: db)
            var changed = false
            for (id, patient) in found {
                if let into = patient.mergedInto, let survivor = known[into], !survivor.name.isEmpty {
                    found[id] = survivor
                    changed = true
                }
            }
            if !changed { break }
        }
        return found
    }

    /// `id` and every record merged into it (and into those), so a patient's history holds the
    /// visits of the duplicates merged away.
    public static func identities(of id: UUID, on db: any Database) async throws -> [UUID] {
        var all: [UUID] = [id]
        var frontier: [UUID] = [id]
        while !frontier.isEmpty, all.count < 100 {
            let rows = try await db.sql.select().column("patient_id").from(table)
                .where("merged_into", .in, frontier).all()
            frontier = try rows.map { try $0.decode(column: "patient_id", as: UUID.self) }.filter { !all.contains($0) }
            all += frontier
        }
        return all
    }

    /// The record a merged one went to (itself when not merged).
    public static func survivor(of id: UUID, on db: any Database) async throws -> UUID {
        var current = id
        for _ in 0..<100 {
            guard let next = try await find([current], on: db)[current]?.mergedInto else { return current }
            current = next
        }
        return current
    }
}

extension ServiceContext {
    /// Today in the hospital's time zone, `YYYY-MM-DD`, for 만 나이.
    public func today() -> String { day(of: now()) }

    /// The day `date` falls on in the hospital's time zone, `YYYY-MM-DD`.
    public func day(of date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }
}
