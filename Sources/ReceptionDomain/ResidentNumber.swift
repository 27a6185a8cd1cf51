import Foundation
import SharedKernel

/// 주민등록번호: `YYMMDD-GNNNNNN`. The seventh digit gives the century (1, 2, 5, 6: 1900s; 3, 4,
/// 7, 8: 2000s; 9, 0: 1800s), so the date part can be checked. Held in clear only in memory,
/// between the request and its encryption; shown masked (`850315-1******`).
public struct ResidentNumber: Sendable, Equatable {
    /// The thirteen digits, without the hyphen.
    public let digits: String

    /// As the desk reads it back: the birth date and the first digit after it, the rest hidden.
    public var masked: String { String(digits.prefix(6)) + "-" + String(digits.dropFirst(6).prefix(1)) + "******" }

    /// Checks `raw` (`YYMMDD-NNNNNNN`, the hyphen optional, spaces trimmed) into `v` under `field`.
    public static func validated(
        _ raw: String?, field: String = "residentNumber", today: Date, into v: inout FieldValidation
    )
        -> ResidentNumber?
    {
        guard let text = v.optional(raw, field, maxLength: 14) else { return nil }
        let digits = text.replacingOccurrences(of: "-", with: "")
        let hyphens = text.filter { $0 == "-" }.count
        guard digits.count == 13, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
            hyphens == 0 || (hyphens == 1 && text.count == 14 && text[text.index(text.startIndex, offsetBy: 6)] == "-")
        else {
            v.fail(field, .invalidFormat, "must be 13 digits written as YYMMDD-NNNNNNN")
            return nil
        }
        let d = digits.compactMap(\.wholeNumberValue)
        let century: Int
        switch d[6] {
        case 1, 2, 5, 6: century = 1900
        case 3, 4, 7, 8: century = 2000
        default: century = 1800
        }
        let year = century + d[0] * 10 + d[1]
        let date = CalendarDate.parse(String(format: "%04d-%d%d-%d%d", year, d[2], d[3], d[4], d[5]))
        guard let date else {
            v.fail(field, .invalidFormat, "must begin with a real birth date (YYMMDD)")
            return nil
        }
        if CalendarDate.utcDay(of: today).lexicographicallyPrecedes(date) {
            v.fail(field, .inFuture, "must not begin with a birth date in the future")
            return nil
        }
        return ResidentNumber(digits: digits)
    }

    public static func validated(_ raw: String?, today: Date) throws(ValidationFailure) -> ResidentNumber {
        var v = FieldValidation()
        let number = validated(raw, today: today, into: &v)
        if raw.map({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) ?? true {
            v.fail("residentNumber", .required, "is required")
        }
        try v.check()
        return number!
    }
}
