import Foundation
import ReceptionDomain
import SharedKernel
import Testing

@Suite("Registry: demographics, 만 나이 and chart numbers")
struct RegisteredPatientTests {
    let today = Date(timeIntervalSince1970: 1_800_000_000)  // 2027-01-15

    @Test("만 나이 turns on the birthday, not before; a leap-day birth turns on 1 March in other years")
    func age() {
        #expect(Age.years(born: "1985-03-15", on: "2026-03-14") == 40)
        #expect(Age.years(born: "1985-03-15", on: "2026-03-15") == 41)
        #expect(Age.years(born: "2000-02-29", on: "2027-02-28") == 26)
        #expect(Age.years(born: "2000-02-29", on: "2027-03-01") == 27)
        #expect(Age.years(born: "not a date", on: "2027-03-01") == nil)
        #expect(Age.years(born: "2027-+1-01", on: "2027-03-01") == nil)
    }

    @Test("Issued chart numbers are eight digits whose check digit catches one wrong digit and two swapped")
    func chartNumbers() {
        let number = ChartNumber.issue(1_234_567)
        #expect(number.count == 8 && ChartNumber.isIssued(number))
        #expect(ChartNumber.issue(ChartNumber.first) == "10000008")
        var wrongDigit = Array(number)
        wrongDigit[3] = wrongDigit[3] == "9" ? "0" : Character(String(wrongDigit[3].wholeNumberValue! + 1))
        #expect(!ChartNumber.isIssued(String(wrongDigit)))
        var swapped = Array(number)
        swapped.swapAt(1, 2)  // 2 and 3 differ
        #expect(!ChartNumber.isIssued(String(swapped)))
    }

    @Test("A resident number must agree with the birth date and the sex; a walk-in's is read for both")
    func residentAgreement() throws {
        let ok = try Demographics.validated(
            name: "홍길동", birthDate: "1985-03-15", sex: "M", phone: nil, address: nil,
            residentNumber: "850315-1234567", today: today)
        #expect(ok.1?.masked == "850315-1******")
        for (birth, sex) in [("1985-03-16", "M"), ("1985-03-15", "F")] {
            #expect(throws: ValidationFailure.self) {
                try Demographics.validated(
                    name: "홍길동", birthDate: birth, sex: sex, phone: nil, address: nil,
                    residentNumber: "850315-1234567", today: today)
            }
        }
        let walkIn = try Demographics.validatedWalkIn(
            name: "무명", birthDate: nil, sex: nil, phone: nil, residentNumber: "0102034123456", today: today)
        #expect(walkIn.0.birthDate == "2001-02-03" && walkIn.0.sex == .female)
        let unknown = try Demographics.validatedWalkIn(
            name: "무명", birthDate: nil, sex: nil, phone: nil, residentNumber: nil, today: today)
        #expect(unknown.0.sex == .unknown && unknown.0.birthDate == nil)
    }

    @Test("A correction names the fields it changed; a null clears an optional one")
    func correction() throws {
        let before = Demographics(name: "홍길동", birthDate: "1985-03-15", sex: .male, phone: "010-1", address: "서울")
        let (after, _, changed) = try before.corrected(
            name: "홍길동", birthDate: nil, sex: .some("F"), phone: .some(nil), address: nil, residentNumber: nil,
            today: today)
        #expect(changed == ["sex", "phone"])
        #expect(after.phone == nil && after.address == "서울" && after.sex == .female)
    }
}
