import Contracts
import Foundation
import SharedKernel

/// 성별 as the registry records it: `M` (남), `F` (여), or `U` when it is not known (an
/// unconscious walk-in, a record migrated from visits that never asked). FHIR's
/// `administrativeGender`: male, female, unknown.
public enum Sex: String, Sendable, Codable, CaseIterable {
    case male = "M"
    case female = "F"
    case unknown = "U"
}

/// A patient's demographics as the desk (원무과) records them once, in the registry.
///
/// The phone and address stay in the registry; the name, sex and birth date travel in events,
/// because every screen that shows a visit shows whose it is (만 나이, 성별). The resident
/// registration number is held beside it, sealed, never here.
public struct Demographics: Sendable, Equatable {
    public var name: String
    /// `YYYY-MM-DD`; nil only for a walk-in whose birth date is not known yet, or a record
    /// migrated from visits that had none.
    public var birthDate: String?
    public var sex: Sex
    public var phone: String?
    public var address: String?

    public init(name: String, birthDate: String?, sex: Sex, phone: String?, address: String?) {
        self.name = name
        self.birthDate = birthDate
        self.sex = sex
        self.phone = phone
        self.address = address
    }

    /// Validates a new patient (신환 등록): name, birth date and sex required; every broken rule
    /// at once. A resident number, when given, must agree with the birth date and the sex.
    public static func validated(
        name: String?, birthDate: String?, sex: String?, phone: String?, address: String?, residentNumber: String?,
        today: Date
    ) throws(ValidationFailure) -> (Demographics, ResidentNumber?) {
        var v = FieldValidation()
        let name = v.required(name, "name", maxLength: 100)
        let birthDate = checkBirthDate(v.required(birthDate, "birthDate", maxLength: 10), today: today, &v)
        let sex = checkSex(sex, required: true, &v) ?? .unknown
        let phone = checkPhone(phone, &v)
        let address = v.optional(address, "address", maxLength: 200)
        let resident = ResidentNumber.validated(residentNumber, today: today, into: &v)
        if let resident { checkAgreement(resident, birthDate: birthDate, sex: sex, &v) }
        try v.check()
        return (Demographics(name: name, birthDate: birthDate, sex: sex, phone: phone, address: address), resident)
    }

    /// A walk-in registered with the visit (접수 without a registered patient): the name is
    /// required; birth date and sex when known (sex `U` otherwise), so an unconscious or
    /// unidentified patient can be seen at once and corrected or merged later.
    public static func validatedWalkIn(
        name: String?, birthDate: String?, sex: String?, phone: String?, residentNumber: String?, today: Date
    ) throws(ValidationFailure) -> (Demographics, ResidentNumber?) {
        var v = FieldValidation()
        let name = v.required(name, "patientName", maxLength: 100)
        let birthDate = checkBirthDate(v.optional(birthDate, "birthDate", maxLength: 10) ?? "", today: today, &v)
        let sex = checkSex(sex, required: false, &v) ?? .unknown
        let phone = checkPhone(phone, &v)
        let resident = ResidentNumber.validated(residentNumber, today: today, into: &v)
        if let resident { checkAgreement(resident, birthDate: birthDate, sex: sex, &v) }
        try v.check()
        // A resident number says the birth date and the sex when the desk did not.
        let demographics = Demographics(
            name: name, birthDate: birthDate ?? resident?.birthDate, sex: sex == .unknown ? (resident?.sex ?? .unknown) : sex,
            phone: phone, address: nil)
        return (demographics, resident)
    }

    /// A correction (환자 정보 수정): only the fields present change; a present empty optional
    /// field (`phone: ""`) clears it. The result must still be a valid patient.
    public func corrected(
        name: String??, birthDate: String??, sex: String??, phone: String??, address: String??,
        residentNumber: String?, storedResidentNumber masked: String? = nil, today: Date
    ) throws(ValidationFailure) -> (Demographics, ResidentNumber?, changed: [String]) {
        var v = FieldValidation()
        var next = self
        var changed: [String] = []
        if let name {
            next.name = v.required(name, "name", maxLength: 100)
        }
        if let birthDate {
            next.birthDate = Self.checkBirthDate(v.required(birthDate, "birthDate", maxLength: 10), today: today, &v)
        }
        if let sex { next.sex = Self.checkSex(sex, required: true, &v) ?? next.sex }
        if let phone { next.phone = Self.checkPhone(phone, &v) }
        if let address { next.address = v.optional(address, "address", maxLength: 200) }
        let resident = ResidentNumber.validated(residentNumber, today: today, into: &v)
        if let resident {
            Self.checkAgreement(resident, birthDate: next.birthDate, sex: next.sex, &v)
        } else if let masked, masked.count >= 8 {
            // The number on record, known by its masked form (`850315-1******`): its date and
            // its seventh digit still have to agree with what the correction leaves.
            let known = ResidentNumber(digits: String(masked.prefix(6)) + String(masked.dropFirst(7).prefix(1)) + "000000")
            var check = FieldValidation()
            Self.checkAgreement(known, birthDate: next.birthDate, sex: next.sex, &check)
            for failure in check.failures {
                v.fail(
                    failure.field == "residentNumber" && birthDate != nil ? "birthDate" : (sex != nil ? "sex" : "birthDate"),
                    .invalidFormat, "must agree with the resident registration number on record")
            }
        }
        try v.check()
        if next.name != self.name { changed.append("name") }
        if next.birthDate != self.birthDate { changed.append("birthDate") }
        if next.sex != self.sex { changed.append("sex") }
        if next.phone != self.phone { changed.append("phone") }
        if next.address != self.address { changed.append("address") }
        if resident != nil { changed.append("residentNumber") }
        return (next, resident, changed)
    }

    /// Whether `text` is a real date written `YYYY-MM-DD`.
    public static func isCalendarDate(_ text: String) -> Bool { CalendarDate.parse(text) != nil }

    /// 만 나이 on `day` (`YYYY-MM-DD` in the hospital's time zone): whole years since the birth date.
    public func age(on day: String) -> Int? { birthDate.flatMap { Self.age(birthDate: $0, on: day) } }

    public static func age(birthDate: String, on day: String) -> Int? { Age.years(born: birthDate, on: day) }

    static func checkBirthDate(_ text: String, today: Date, _ v: inout FieldValidation) -> String? {
        guard !text.isEmpty else { return nil }
        guard let date = CalendarDate.parse(text) else {
            v.fail("birthDate", .invalidFormat, "must be a real date written as YYYY-MM-DD")
            return nil
        }
        if CalendarDate.utcDay(of: today).lexicographicallyPrecedes(date) {
            v.fail("birthDate", .inFuture, "must not be in the future")
        }
        return text
    }

    static func checkSex(_ raw: String?, required: Bool, _ v: inout FieldValidation) -> Sex? {
        guard let raw else {
            if required { v.fail("sex", .required, "is required: M, F or U (unknown)") }
            return nil
        }
        guard let sex = Sex(rawValue: raw.trimmingCharacters(in: .whitespaces)) else {
            v.fail("sex", .invalidFormat, "must be M, F or U (unknown)")
            return nil
        }
        return sex
    }

    static func checkPhone(_ raw: String?, _ v: inout FieldValidation) -> String? {
        let phone = v.optional(raw, "phone", maxLength: 20)
        if let phone, !phone.allSatisfy({ $0.isASCII && ($0.isNumber || "+- ".contains($0)) }) {
            v.fail("phone", .invalidCharacters, "may contain only digits, spaces, '+' and '-'")
        }
        return phone
    }

    /// The resident number's first six digits are the birth date, and its seventh the century
    /// and the sex (odd: male, even: female).
    static func checkAgreement(_ number: ResidentNumber, birthDate: String?, sex: Sex, _ v: inout FieldValidation) {
        if let birthDate, number.birthDate != birthDate {
            v.fail("residentNumber", .invalidFormat, "must begin with the birth date (YYMMDD of birthDate)")
        }
        if sex != .unknown, number.sex != sex {
            v.fail("residentNumber", .invalidFormat, "its seventh digit must agree with sex (odd: M, even: F)")
        }
    }
}

extension ResidentNumber {
    /// The birth date its first seven digits give, `YYYY-MM-DD`.
    public var birthDate: String {
        let d = digits.compactMap(\.wholeNumberValue)
        let century: Int
        switch d[6] {
        case 1, 2, 5, 6: century = 1900
        case 3, 4, 7, 8: century = 2000
        default: century = 1800
        }
        return String(format: "%04d-%d%d-%d%d", century + d[0] * 10 + d[1], d[2], d[3], d[4], d[5])
    }

    /// The sex its seventh digit gives: odd male, even female.
    public var sex: Sex { (digits.compactMap(\.wholeNumberValue)[6] % 2 == 1) ? .male : .female }
}

/// 환자번호 as the system issues it: eight digits, a running number of seven and a check digit
/// (Luhn), so a mistyped digit or two swapped neighbours are caught at the desk. Numbers
/// carried over from before the registry keep whatever the desk typed then.
public enum ChartNumber {
    /// The first running number: issued numbers start at 1000000 so they are always eight digits.
    public static let first = 1_000_000
    public static let last = 9_999_999

    public static func issue(_ running: Int) -> String {
        let body = String(running)
        return body + String(luhnDigit(body))
    }

    /// Whether `text` is a well-formed issued number (its check digit agrees).
    public static func isIssued(_ text: String) -> Bool {
        guard text.count == 8, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        return luhnDigit(String(text.prefix(7))) == text.last!.wholeNumberValue!
    }

    static func luhnDigit(_ body: String) -> Int {
        var sum = 0
        for (i, c) in body.reversed().enumerated() {
            var d = c.wholeNumberValue!
            if i % 2 == 0 {
                d *= 2
                if d > 9 { d -= 9 }
            }
            sum += d
        }
        return (10 - sum % 10) % 10
    }

    /// A chart number to search by: an issued one, or one carried over (letters, digits, '-').
    public static func validated(_ raw: String?, field: String = "chartNumber", into v: inout FieldValidation)
        -> String?
    {
        guard let text = v.optional(raw, field, maxLength: 20) else { return nil }
        if !text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
            v.fail(field, .invalidCharacters, "may contain only letters, digits and '-'")
        }
        return text
    }
}
