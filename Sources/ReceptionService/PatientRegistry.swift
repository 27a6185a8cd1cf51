import Contracts
import FluentKit
import Foundation
import Messaging
import ReceptionDomain
import SQLKit
import ServiceKit
import SharedKernel
import Storage
import Vapor

/// The patient registry (환자 마스터), the desk's: a patient is registered once (신환 등록), gets
/// a chart number the system issues, and every visit names the record. Its own tables and
/// events, in reception's database: a visit registered right after its patient finds the record
/// in the same database, and a merge moves visits in the same transaction that merges.
extension ReceptionService {
    func registerPatientRoutes(on routes: any RoutesBuilder) {
        let patients = routes.grouped("patients")
        patients.post(use: registerPatient)
        patients.post("search", use: searchPatients)
        patients.post("lookup", use: lookupChartNumbers)
        patients.get(":id", use: showPatient)
        patients.patch(":id", use: correctPatient)
        patients.post(":id", "merge", use: mergePatient)
    }

    struct NewPatientBody: Decodable {
        var name: String?
        var birthDate: String?
        var sex: String?
        var phone: String?
        var address: String?
        var residentNumber: String?
        /// The desk looked at the possible duplicates and says this is someone else.
        var confirmDistinct: Bool?
    }

    /// 신환 등록: POST /patients.
    @Sendable func registerPatient(_ req: Request) async throws -> Response {
        let body = try req.body(NewPatientBody.self)
        let now = context.now()
        let (demographics, resident) = try Demographics.validated(
            name: body.name, birthDate: body.birthDate, sex: body.sex, phone: body.phone, address: body.address,
            residentNumber: body.residentNumber, today: now)
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "desk"), trace: req.trace)
        let chartNumber = try await preissuedChartNumber()
        let patient = try await context.command { db in
            try await self.createPatient(
                demographics, resident: resident, confirmDistinct: body.confirmDistinct ?? false, stamp: stamp,
                at: now, chartNumber: chartNumber, on: db)
        }
        req.auditChartNumbers = [patient.chartNumber]
        var headers = HTTPHeaders()
        headers.contentType = .json
        headers.replaceOrAdd(name: .location, value: "/patients/\(patient.id!.uuidString)")
        let answer = try APIJSON.encoder().encode(PatientResponse(patient, role: .desk, today: today(now)))
        return Response(status: .created, headers: headers, body: .init(data: answer))
    }

    /// On PostgreSQL, the chart number for a registration about to begin, issued in a statement
    /// of its own: its row's lock lasts that statement, so registrations run side by side (a
    /// registration that then fails leaves a gap; a number is never issued twice). On SQLite
    /// nil: the number is taken inside the registration (one writer at a time anyway).
    func preissuedChartNumber() async throws -> String? {
        guard context.store.engine.kind == .postgresql else { return nil }
        return try await ChartNumbers.issue(on: context.store.database)
    }

    /// On PostgreSQL, registrations and corrections that could make the same person twice line up
    /// on that person's keys (the resident number's index; the name and birth date) for the rest
    /// of the transaction, so the second sees the first's record; anyone else's goes on beside.
    func lineUp(residentIndex: String?, name: String?, birthDate: String?, on db: any Database) async throws {
        guard context.store.engine.kind == .postgresql else { return }
        var keys: [String] = []
        if let residentIndex { keys.append("patient-rn:\(residentIndex)") }
        if let name, let birthDate { keys.append("patient-nb:\(name)|\(birthDate)") }
        for key in keys.sorted() {
            try await db.sql.raw("SELECT pg_advisory_xact_lock(hashtextextended(\(bind: key), 0))").run()
        }
    }

    /// Creates the record in `db`'s transaction: lines up with anyone registering the same person
    /// (PostgreSQL), refuses a duplicate, takes the number (given, or issued here on SQLite), then
    /// stores and announces.
    func createPatient(
        _ demographics: Demographics, resident: ResidentNumber?, confirmDistinct: Bool, stamp: EventStamp, at now: Date,
        chartNumber preissued: String?, on db: any Database
    ) async throws -> PatientModel {
        let pii = resident == nil ? nil : try requirePII()
        let index = resident.map { pii!.index($0.digits) }
        try await lineUp(residentIndex: index, name: demographics.name, birthDate: demographics.birthDate, on: db)
        let chartNumber: String
        if let preissued { chartNumber = preissued } else { chartNumber = try await ChartNumbers.issue(on: db) }
        if let index,
            let existing = try await PatientModel.query(on: db).filter(\.$residentNumberIndex == index).first()
        {
            throw DuplicatePatients(
                kind: .residentNumber, candidates: [candidate(existing, today: today(now))])
        }
        if !confirmDistinct, let birthDate = demographics.birthDate {
            var matches = try await PatientModel.query(on: db)
                .filter(\.$name == demographics.name).filter(\.$birthDate == birthDate)
                .filter(\.$mergedInto == nil).limit(20).all()
            if let phone = demographics.phone {
                // Same name and birth date but another phone: someone else, unless one has none.
                // Compared by digits: "010-1234-5678" and "01012345678" are one number.
                let digits = phone.filter(\.isNumber)
                matches = matches.filter { $0.phone == nil || $0.phone!.filter(\.isNumber) == digits }
            }
            if !matches.isEmpty {
                throw DuplicatePatients(
                    kind: .nameAndBirthDate, candidates: matches.map { candidate($0, today: today(now)) })
            }
        }
        let patient = PatientModel()
        patient.id = UUID()
        patient.version = 1
        patient.chartNumber = chartNumber
        patient.copy(demographics)
        if let resident, let pii {
            patient.residentNumberSealed = try pii.seal(resident.digits)
            patient.residentNumberIndex = index
            patient.residentNumberMasked = resident.masked
        }
        patient.createdAt = now
        patient.updatedAt = now
        try await patient.insert(on: db)
        let fields = ["name", "birthDate", "sex"] + (demographics.phone == nil ? [] : ["phone"])
            + (demographics.address == nil ? [] : ["address"]) + (resident == nil ? [] : ["residentNumber"])
        try await PatientChangeModel(
            patientId: patient.id!, version: 1, at: now, actor: stamp.actor, kind: "registered", fields: fields
        ).insert(on: db)
        try await Outbox.append(
            stamp.envelopes(
                [.patientRegistered(PatientRegistered(patient: patient.facts))], receptionId: patient.id!, at: now),
            on: db)
        return patient
    }

    /// GET /patients/{id}: the desk reads it whole, with its history; a doctor without the
    /// contact details; an examiner the name, chart number, age and sex only.
    @Sendable func showPatient(_ req: Request) async throws -> PatientResponse {
        let id = try req.id(of: "patient")
        guard let patient = try await PatientModel.byID(id, on: context.store.database) else {
            throw AppError.notFound(resource: "patient", id: id.uuidString)
        }
        let role = PatientResponse.View(role: req.callerRole)
        var response = PatientResponse(patient, role: role, today: today(context.now()))
        if role == .desk {
            response.changes = try await PatientChangeModel.query(on: context.store.database)
                .filter(\.$patientId == id).sort(\.$changedAt).sort(\.$version).all()
                .map { PatientResponse.Change(at: $0.changedAt, by: $0.actor, kind: $0.kind, fields: $0.fields) }
        }
        if let into = patient.mergedInto,
            let survivor = try await PatientModel.byID(into, on: context.store.database)
        {
            response.mergedIntoChartNumber = survivor.chartNumber
        }
        req.auditChartNumbers = [patient.chartNumber]
        return response
    }

    /// A field a request may send as a value, as null (to clear it) or not at all (to keep it).
    struct Patch: Decodable {
        var version: Int?
        var name: String??
        var birthDate: String??
        var sex: String??
        var phone: String??
        var address: String??
        var residentNumber: String?

        enum CodingKeys: String, CodingKey { case version, name, birthDate, sex, phone, address, residentNumber }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            func field(_ key: CodingKeys) throws -> String?? {
                guard c.contains(key) else { return nil }
                return .some(try c.decodeNil(forKey: key) ? nil : c.decode(String.self, forKey: key))
            }
            version = try c.decodeIfPresent(Int.self, forKey: .version)
            name = try field(.name)
            birthDate = try field(.birthDate)
            sex = try field(.sex)
            phone = try field(.phone)
            address = try field(.address)
            residentNumber = try c.decodeIfPresent(String.self, forKey: .residentNumber)
        }
    }

    /// 환자 정보 수정: PATCH /patients/{id} with the `version` it read; a stale version is 409.
    @Sendable func correctPatient(_ req: Request) async throws -> PatientResponse {
        let id = try req.id(of: "patient")
        let patch = try req.body(Patch.self)
        guard let version = patch.version else {
            throw ValidationFailure([.init(field: "version", code: .required, message: "is required: the version you read")])
        }
        let now = context.now()
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "desk"), trace: req.trace)
        let patient = try await context.command { db in
            guard let patient = try await PatientModel.byID(id, on: db) else {
                throw AppError.notFound(resource: "patient", id: id.uuidString)
            }
            if patient.mergedInto != nil {
                throw AppError.conflict(
                    currentState: "MERGED", detail: "This patient was merged into another record; correct that one.")
            }
            guard patient.version == version else {
                throw AppError.conflict(
                    currentState: "VERSION_\(patient.version)",
                    detail: "The patient was changed since you read it (version \(version), now \(patient.version)); read it again.")
            }
            let before = patient.demographics
            let (after, resident, changed) = try before.corrected(
                name: patch.name, birthDate: patch.birthDate, sex: patch.sex, phone: patch.phone,
                address: patch.address, residentNumber: patch.residentNumber,
                storedResidentNumber: patient.residentNumberMasked, today: now)
            guard !changed.isEmpty else { return patient }
            patient.version = version + 1
            patient.copy(after)
            if let resident {
                let pii = try self.requirePII()
                let index = pii.index(resident.digits)
                // In line with registrations of that number, so the check below sees a patient
                // registered with it a moment ago.
                try await self.lineUp(residentIndex: index, name: nil, birthDate: nil, on: db)
                if let other = try await PatientModel.query(on: db).filter(\.$residentNumberIndex == index)
                    .filter(\.$id != id).first()
                {
                    throw DuplicatePatients(kind: .residentNumber, candidates: [self.candidate(other, today: self.today(now))])
                }
                patient.residentNumberSealed = try pii.seal(resident.digits)
                patient.residentNumberIndex = index
                patient.residentNumberMasked = resident.masked
            }
            patient.updatedAt = now
            // Provided nobody changed it since it was read, in the same statement. A correction
            // that lost the race is retried (`ServiceStore.write`) and then answers 409 above.
            // On PostgreSQL the row is locked after `lineUp`'s advisory lock, as a registration
            // takes that lock before writing; no path holds a patient's row while waiting for it.
            guard try await patient.saveChanges(on: db, onlyIf: "version", is: version) else {
                throw ConcurrentModification()
            }
            try await PatientChangeModel(
                patientId: id, version: patient.version, at: now, actor: stamp.actor, kind: "corrected", fields: changed
            ).insert(on: db)
            let shown = changed.filter { ["name", "sex", "birthDate"].contains($0) }
            if !shown.isEmpty {
                try await Outbox.append(
                    stamp.envelopes(
                        [.patientUpdated(PatientUpdated(patient: patient.facts, changed: shown))], receptionId: id,
                        at: now),
                    on: db)
            }
            return patient
        }
        req.auditChartNumbers = [patient.chartNumber]
        return PatientResponse(patient, role: .desk, today: today(now))
    }

    struct SearchPatientsBody: Decodable {
        var name: String?
        var birthDate: String?
        var phone: String?
        var chartNumber: String?
        var residentNumber: String?
        /// Merged-away records too (an administrator tracing a merge); false by default.
        var includeMerged: Bool?
    }

    /// 환자 검색: POST /patients/search with any of name (a prefix), birth date, phone, chart
    /// number and resident number in the body (never the URL); every one given must match.
    /// Newest first, paged like every list.
    @Sendable func searchPatients(_ req: Request) async throws -> ListResponse<PatientResponse> {
        var query = QueryReader(req)
        let page = query.page()
        try query.check()
        let body = try req.body(SearchPatientsBody.self)
        let now = context.now()
        var v = FieldValidation()
        let name = v.optional(body.name, "name", maxLength: 100)
        let birthDate = v.optional(body.birthDate, "birthDate", maxLength: 10)
        if let birthDate, !Demographics.isCalendarDate(birthDate) {
            v.fail("birthDate", .invalidFormat, "must be a date written as YYYY-MM-DD")
        }
        let phone = v.optional(body.phone, "phone", maxLength: 20)
        let chartNumber = ChartNumber.validated(body.chartNumber, into: &v)
        let resident = ResidentNumber.validated(body.residentNumber, today: now, into: &v)
        if name == nil, birthDate == nil, phone == nil, chartNumber == nil, body.residentNumber == nil {
            v.fail("name", .required, "give at least one of name, birthDate, phone, chartNumber, residentNumber")
        }
        try v.check()
        let q = PatientModel.query(on: context.store.database)
        if let name {
            // A prefix is a range of the byte-ordered index: from the prefix up to the prefix with
            // its last character's successor (UTF-8 keeps code point order).
            q.filter(\.$name >= name).filter(\.$name < Self.successor(of: name))
        }
        if let birthDate { q.filter(\.$birthDate == birthDate) }
        if let phone { q.filter(\.$phone == phone) }
        if let chartNumber { q.filter(\.$chartNumber == chartNumber) }
        if let resident { q.filter(\.$residentNumberIndex == (try requirePII()).index(resident.digits)) }
        if body.includeMerged != true { q.filter(\.$mergedInto == nil) }
        let (models, total, next) = try await q.page(page, sortedBy: \.$createdAt, descending: true, id: \.$id)
        let day = today(now)
        req.auditChartNumbers = models.map(\.chartNumber)
        return ListResponse(
            items: models.map { PatientResponse($0, role: .desk, today: day) }, total: total, page: page, next: next)
    }

    struct LookupBody: Decodable { var ids: [String]? }

    struct ChartNumberEntry: Content, Equatable {
        var id: UUID
        var chartNumber: String
    }

    struct ChartNumberList: Content, Equatable {
        var items: [ChartNumberEntry]
    }

    /// POST /patients/lookup `{ids}`: the chart numbers of up to 200 registered patients, for the
    /// lists that show a visit's patient by what their own service knows (name, age, sex) and
    /// the desk's number beside it. Nothing more of the patient; ids unknown are left out.
    @Sendable func lookupChartNumbers(_ req: Request) async throws -> ChartNumberList {
        let body = try req.body(LookupBody.self)
        let raw = body.ids ?? []
        var v = FieldValidation()
        if raw.isEmpty { v.fail("ids", .required, "give the patients' ids") }
        if raw.count > 200 { v.fail("ids", .tooMany, "at most 200") }
        let ids = raw.compactMap { UUID(uuidString: $0) }
        if ids.count != raw.count { v.fail("ids", .invalidFormat, "must be patients' ids") }
        try v.check()
        let found = try await PatientModel.query(on: context.store.database).filter(\.$id ~~ ids).all()
        req.auditChartNumbers = found.map(\.chartNumber)
        return ChartNumberList(items: found.map { ChartNumberEntry(id: $0.id!, chartNumber: $0.chartNumber) })
    }

    struct MergeBody: Decodable { var into: String? }

    /// 환자 병합: POST /patients/{id}/merge `{into}` (admin). Every visit of `id` moves to `into`
    /// in the same transaction; `id` then answers with where it went. A visit registered at
    /// the same moment either lands before (and moves) or finds the record merged (422).
    @Sendable func mergePatient(_ req: Request) async throws -> MergeResponse {
        let id = try req.id(of: "patient")
        let body = try req.body(MergeBody.self)
        guard let into = body.into.flatMap(UUID.init(uuidString:)) else {
            throw ValidationFailure([.init(field: "into", code: .invalidFormat, message: "must be a patient's id")])
        }
        guard into != id else {
            throw ValidationFailure([.init(field: "into", code: .invalidFormat, message: "must be another patient")])
        }
        let now = context.now()
        let stamp = EventStamp(producer: Self.name, actor: req.actor(default: "admin"), trace: req.trace)
        let result = try await context.command { db in
            let sql = try db.sql
            if self.context.store.engine.kind == .postgresql {
                // Both rows locked in one order, so two opposite merges at once wait for each
                // other rather than deadlock.
                let first = min(id.uuidString, into.uuidString) == id.uuidString ? id : into
                let second = first == id ? into : id
                for row in [first, second] {
                    try await sql.raw("SELECT id FROM patients WHERE id = \(bind: row) FOR UPDATE").run()
                }
            }
            // Claim both rows (a visit registration reads its patient's row FOR SHARE).
            guard
                let merged = try await sql.raw(
                    "UPDATE patients SET version = version + 1, merged_into = \(bind: into), updated_at = \(bind: now) WHERE id = \(bind: id) AND merged_into IS NULL RETURNING id"
                ).first()
            else {
                guard let existing = try await PatientModel.byID(id, on: db) else {
                    throw AppError.notFound(resource: "patient", id: id.uuidString)
                }
                throw AppError.conflict(
                    currentState: "MERGED",
                    detail: "This patient was already merged (into \(existing.mergedInto?.uuidString ?? "?")).")
            }
            _ = merged
            guard
                try await sql.raw(
                    "UPDATE patients SET version = version + 1, updated_at = \(bind: now) WHERE id = \(bind: into) AND merged_into IS NULL RETURNING id"
                ).first() != nil
            else {
                throw ValidationFailure([
                    .init(field: "into", code: .invalidFormat, message: "must be a registered patient that is not merged itself")
                ])
            }
            let from = try await PatientModel.byID(id, on: db)!
            let survivor = try await PatientModel.byID(into, on: db)!
            let moved = try await sql.raw(
                "UPDATE receptions SET patient_ref = \(bind: into) WHERE patient_ref = \(bind: id) RETURNING id"
            ).all().count
            // The resident number goes with the person: to the survivor if it has none. Two
            // different numbers are two people, or a mistake to correct first: nothing merges.
            if let index = from.residentNumberIndex, let other = survivor.residentNumberIndex, index != other {
                throw AppError.conflict(
                    currentState: "RESIDENT_NUMBERS_DIFFER",
                    detail: "The two records hold different resident registration numbers; correct one of them before merging.")
            }
            if let index = from.residentNumberIndex {
                from.residentNumberIndex = nil
                try await from.saveChanges(on: db)
                if survivor.residentNumberIndex == nil {
                    survivor.residentNumberIndex = index
                    survivor.residentNumberSealed = from.residentNumberSealed
                    survivor.residentNumberMasked = from.residentNumberMasked
                    try await survivor.saveChanges(on: db)
                }
            }
            try await PatientChangeModel(
                patientId: id, version: from.version, at: now, actor: stamp.actor, kind: "merged-into",
                fields: [survivor.chartNumber]
            ).insert(on: db)
            try await PatientChangeModel(
                patientId: into, version: survivor.version, at: now, actor: stamp.actor, kind: "merged-from",
                fields: [from.chartNumber]
            ).insert(on: db)
            try await Outbox.append(
                stamp.envelopes([.patientMerged(PatientMerged(patientId: id, into: into))], receptionId: id, at: now),
                on: db)
            return (from, survivor, moved)
        }
        req.auditChartNumbers = [result.0.chartNumber, result.1.chartNumber]
        let day = today(now)
        return MergeResponse(
            merged: PatientResponse(result.0, role: .desk, today: day),
            into: PatientResponse(result.1, role: .desk, today: day), visitsMoved: result.2)
    }

    /// Reads the patient for a visit in `db`'s transaction, in one statement, and holds it
    /// against a merge until the visit commits: on SQLite the transaction holds the write lock
    /// already; on PostgreSQL the row is read `FOR SHARE`, so a merge's update of it waits for
    /// this visit (and then moves it too), or went first (the row then says merged: 422).
    func claimPatient(_ id: UUID, on db: any Database) async throws -> PatientModel {
        let lock = context.store.engine.kind == .postgresql ? " FOR SHARE" : ""
        let row = try await db.sql.raw(
            """
            SELECT id, version, chart_number, name, birth_date, sex, phone, resident_number_masked, merged_into
            FROM patients WHERE id = \(bind: id)\(unsafeRaw: lock)
            """
        ).first()
        guard let row else {
            throw ValidationFailure([
                .init(field: "patientId", code: .invalidFormat, message: "names no registered patient")
            ])
        }
        if let into = try row.decode(column: "merged_into", as: UUID?.self) {
            let survivor = try await PatientModel.byID(into, on: db)
            throw ValidationFailure([
                .init(
                    field: "patientId", code: .invalidFormat,
                    message:
                        "names a patient merged into chart number \(survivor?.chartNumber ?? "?") (patientId \(into.uuidString)); register the visit there"
                )
            ])
        }
        // Only what a visit's answer and event use; never saved.
        let patient = PatientModel()
        patient.id = id
        patient.version = try row.decode(column: "version", as: Int.self)
        patient.chartNumber = try row.decode(column: "chart_number", as: String.self)
        patient.name = try row.decode(column: "name", as: String.self)
        patient.birthDate = try row.decode(column: "birth_date", as: String?.self)
        patient.sex = try row.decode(column: "sex", as: String.self)
        patient.phone = try row.decode(column: "phone", as: String?.self)
        patient.residentNumberMasked = try row.decode(column: "resident_number_masked", as: String?.self)
        return patient
    }

    func candidate(_ p: PatientModel, today: String) -> DuplicatePatients.Candidate {
        DuplicatePatients.Candidate(
            id: p.id!, chartNumber: p.chartNumber, name: p.name, birthDate: p.birthDate, sex: p.sex,
            age: p.birthDate.flatMap { Demographics.age(birthDate: $0, on: today) })
    }

    /// The day in the hospital's time zone, `YYYY-MM-DD`, for 만 나이.
    func today(_ now: Date) -> String { context.day(of: now) }

    /// The smallest string greater than every string that begins with `prefix`.
    static func successor(of prefix: String) -> String {
        var scalars = Array(prefix.unicodeScalars)
        while let last = scalars.popLast() {
            var next = last.value + 1
            if next == 0xD800 { next = 0xE000 }  // past the surrogates
            if next <= 0x10FFFF, let scalar = Unicode.Scalar(next) {
                scalars.append(scalar)
                return String(String.UnicodeScalarView(scalars))
            }
        }
        return "\u{10FFFF}\u{10FFFF}"
    }
}

extension PatientModel {
    /// What the events carry of it.
    var facts: PatientFacts {
        PatientFacts(patientId: id!, name: name, sex: sex, birthDate: birthDate, version: version)
    }
}

extension Request {
    private struct AuditChartNumbersKey: StorageKey {
        typealias Value = [String]
    }

    /// The chart numbers a handler says this request disclosed: its audit entry names them.
    var auditChartNumbers: [String] {
        get { storage[AuditChartNumbersKey.self] ?? [] }
        set {
            storage[AuditChartNumbersKey.self] = newValue
            auditPatients = newValue
        }
    }
}

/// A patient as the API shows it, as much as the caller's role may read.
public struct PatientResponse: Content, Equatable {
    enum View {
        case desk, doctor, examiner
        init(role: String?) {
            switch role {
            case "desk": self = .desk
            case "doctor": self = .doctor
            default: self = .examiner
            }
        }
    }

    public struct Change: Content, Equatable {
        public var at: Date
        public var by: String
        public var kind: String
        public var fields: String
    }

    public var id: UUID
    public var chartNumber: String
    public var name: String
    public var sex: String
    /// 만 나이 today, when the birth date is known.
    @Nullable public var age: Int?
    @Nullable public var birthDate: String?
    @Nullable public var phone: String?
    @Nullable public var address: String?
    /// 주민등록번호, masked: `850315-1******`.
    @Nullable public var residentNumber: String?
    public var createdAt: Date?
    public var version: Int
    /// Set when this record was merged into another: every visit is there now.
    @Nullable public var mergedInto: UUID?
    public var mergedIntoChartNumber: String?
    /// Present (true) when the caller may not read the contact details (phone, address).
    public var contactWithheld: Bool?
    /// Who changed what and when (the desk's view).
    public var changes: [Change]?

    init(_ p: PatientModel, role: View, today: String) {
        id = p.id!
        chartNumber = p.chartNumber
        name = p.name
        sex = p.sex
        age = p.birthDate.flatMap { Demographics.age(birthDate: $0, on: today) }
        version = p.version
        mergedInto = p.mergedInto
        switch role {
        case .desk:
            birthDate = p.birthDate
            phone = p.phone
            address = p.address
            residentNumber = p.residentNumberMasked
            createdAt = p.createdAt
        case .doctor:
            birthDate = p.birthDate
            contactWithheld = true
        case .examiner:
            break
        }
    }
}

public struct MergeResponse: Content, Equatable {
    public var merged: PatientResponse
    public var into: PatientResponse
    public var visitsMoved: Int
}

