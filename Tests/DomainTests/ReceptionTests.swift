import Contracts
import Foundation
import ReceptionDomain
import SharedKernel
import Testing

private let patient = Patient(
    name: "김민수", patientId: "P-0001", birthDate: "1985-03-02", phone: "010-1234-5678", department: "내과",
    symptom: "기침")

private func received() -> Reception {
    Reception.register(id: receptionId, patient: patient, at: t0).0
}

private func completed() -> Reception {
    var reception = received()
    reception.diagnosisCompleted(at: at(600))
    return reception
}

private func canceled() -> Reception {
    var reception = received()
    _ = try! reception.cancel(reason: CancelReason.validated("환자 귀가"), at: at(300))
    return reception
}

/// Validates a patient with only the given fields set (name defaults to a valid one).
private func validate(
    name: String? = "김민수", patientId: String? = nil, birthDate: String? = nil, phone: String? = nil,
    department: String? = nil, symptom: String? = nil, today: Date = t0
) throws(ValidationFailure) -> Patient {
    try Patient.validated(
        name: name, patientId: patientId, birthDate: birthDate, phone: phone, department: department,
        symptom: symptom, today: today)
}

/// The failures of validating these fields, or [] if valid.
private func failures(
    name: String? = "김민수", patientId: String? = nil, birthDate: String? = nil, phone: String? = nil,
    department: String? = nil, symptom: String? = nil
) -> [ValidationFailure.Field] {
    do {
        _ = try validate(
            name: name, patientId: patientId, birthDate: birthDate, phone: phone, department: department,
            symptom: symptom)
        return []
    } catch {
        return error.fields
    }
}

@Suite("Reception: the visit's lifecycle")
struct ReceptionLifecycleTests {
    @Test("Registering opens a RECEIVED visit and emits TreatmentReceived with name, department and symptom")
    func register() {
        let (reception, events) = Reception.register(id: receptionId, patient: patient, at: t0)

        #expect(reception.status == .received)
        #expect(reception.id == receptionId)
        #expect(reception.receivedAt == t0)
        #expect(reception.completedAt == nil && reception.canceledAt == nil && reception.cancelReason == nil)
        #expect(events == [.treatmentReceived(TreatmentReceived(patientName: "김민수", department: "내과", symptom: "기침"))])
    }

    @Test("TreatmentReceived never carries the chart number, birth date or phone")
    func noPersonalDataInEvent() throws {
        let (_, events) = Reception.register(id: receptionId, patient: patient, at: t0)
        let event = try #require(events.first)

        let data = try EventCoding.encode(envelope(event, at: 0))
        let text = String(decoding: data, as: UTF8.self)
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let payload = try #require(json["payload"] as? [String: Any])

        #expect(Set(payload.keys) == ["patientName", "department", "symptom"])
        #expect(!text.contains("P-0001"))
        #expect(!text.contains("1985-03-02"))
        #expect(!text.contains("010-1234-5678"))
    }

    @Test("Canceling a RECEIVED visit emits TreatmentCanceled with the reason")
    func cancelReceived() throws {
        var reception = received()

        let events = try reception.cancel(reason: CancelReason.validated("환자 귀가"), at: at(300))

        #expect(events == [.treatmentCanceled(TreatmentCanceled(reason: "환자 귀가"))])
        #expect(reception.status == .canceled)
        #expect(reception.canceledAt == at(300))
        #expect(reception.cancelReason == "환자 귀가")
    }

    @Test("Canceling a closed visit is refused with an InvalidTransition naming its state")
    func cancelClosed() throws {
        for (closed, state) in [(completed(), "COMPLETED"), (canceled(), "CANCELED")] {
            var reception = closed

            #expect(throws: InvalidTransition(aggregate: "reception", currentState: state, attempted: "cancel")) {
                try reception.cancel(reason: CancelReason.validated("again"), at: at(900))
            }
            #expect(reception == closed)
        }
    }

    @Test("The doctor's completion completes a RECEIVED visit")
    func diagnosisCompleted() {
        var reception = received()

        reception.diagnosisCompleted(at: at(600))

        #expect(reception.status == .completed)
        #expect(reception.completedAt == at(600))
        #expect(reception.canceledAt == nil)
    }

    @Test("The doctor's rejection cancels a RECEIVED visit with the rejection reason")
    func diagnosisRejected() {
        var reception = received()

        reception.diagnosisRejected(reason: "타 병원 전원", at: at(600))

        #expect(reception.status == .canceled)
        #expect(reception.canceledAt == at(600))
        #expect(reception.cancelReason == "타 병원 전원")
    }

    @Test("The doctor's completion overrules a desk cancellation it crossed: the diagnosis decides")
    func completionAfterCancel() {
        var reception = canceled()

        reception.diagnosisCompleted(at: at(600))

        #expect(reception.status == .completed)
        #expect(reception.completedAt == at(600))
        #expect(reception.canceledAt == nil)
        #expect(reception.cancelReason == nil)
    }

    @Test("A rejection that crossed the desk's cancellation keeps the visit canceled, with the doctor's reason")
    func rejectionAfterCancel() {
        var reception = canceled()
        let canceledAt = reception.canceledAt

        reception.diagnosisRejected(reason: "타 병원 전원", at: at(900))

        #expect(reception.status == .canceled)
        #expect(reception.canceledAt == canceledAt)
        #expect(reception.cancelReason == "타 병원 전원")
    }

    @Test("A rejection arriving on a completed visit changes nothing, and a completion is applied once")
    func closedByTheDoctor() {
        var reception = completed()
        let before = reception

        reception.diagnosisRejected(reason: "late", at: at(900))
        reception.diagnosisCompleted(at: at(950))

        #expect(reception == before)
    }
}

@Suite("Reception: validating what the desk typed")
struct PatientValidationTests {
    @Test("Valid input is trimmed, and empty optional fields count as absent")
    func validInput() throws {
        let valid = try validate(
            name: "  김민수 ", patientId: " P-0001 ", birthDate: "1985-03-02", phone: "+82 10-1234-5678",
            department: "   ", symptom: "")

        #expect(valid.name == "김민수")
        #expect(valid.patientId == "P-0001")
        #expect(valid.birthDate == "1985-03-02")
        #expect(valid.phone == "+82 10-1234-5678")
        #expect(valid.department == nil)
        #expect(valid.symptom == nil)
    }

    @Test(
        "The patient name is required, non-blank and at most 100 characters",
        arguments: [
            (String?.none, "is required"),
            ("", "must not be empty"),
            ("  \t\n\u{3000}", "must not be empty"),
            (String(repeating: "김", count: 101), "must be at most 100 characters"),
        ])
    func nameRules(name: String?, message: String) {
        let code: ValidationFailure.Field.Code = message.hasPrefix("must be at most") ? .tooLong : .required
        #expect(failures(name: name) == [.init(field: "patientName", code: code, message: message)])
    }

    @Test("A name of exactly 100 characters is accepted")
    func nameAtLimit() {
        #expect(failures(name: String(repeating: "김", count: 100)).isEmpty)
    }

    @Test("The chart number accepts ASCII letters, digits and '-'", arguments: ["P-0001", "abc123", "2024-77"])
    func patientIdValid(patientId: String) {
        #expect(failures(patientId: patientId).isEmpty)
    }

    @Test(
        "The chart number refuses other characters",
        arguments: ["P 0001", "P_0001", "환자1", "P/1", "P.1", "１２３"])
    func patientIdInvalid(patientId: String) {
        #expect(fieldNames(ValidationFailure(failures(patientId: patientId))) == ["patientId"])
    }

    @Test("The chart number is at most 20 characters")
    func patientIdTooLong() {
        #expect(failures(patientId: String(repeating: "1", count: 20)).isEmpty)
        #expect(
            failures(patientId: String(repeating: "1", count: 21)) == [
                .init(field: "patientId", code: .tooLong, message: "must be at most 20 characters")
            ])
    }

    @Test(
        "A birth date not written as a real YYYY-MM-DD is refused",
        arguments: [
            "1990/01/01", "19900101", "1990-1-01", "90-01-01", "1990-13-01", "1990-00-10", "1990-04-31",
            "1990-01-32", "1899-12-31", "abcd-ef-gh", "1990-01-1 ",
        ])
    func birthDateFormat(birthDate: String) {
        let reported = failures(birthDate: birthDate)
        #expect(fieldNames(ValidationFailure(reported)).allSatisfy { $0 == "birthDate" })
        #expect(
            reported.contains(
                .init(field: "birthDate", code: .invalidFormat, message: "must be a date written as YYYY-MM-DD")))
    }

    @Test("A birth date with a signed month or day is refused", arguments: ["2000-+1-01", "2000-01-+1"])
    func birthDateSigned(birthDate: String) {
        #expect(
            failures(birthDate: birthDate) == [
                .init(field: "birthDate", code: .invalidFormat, message: "must be a date written as YYYY-MM-DD")
            ])
    }

    @Test(
        "February 29 exists only in leap years",
        arguments: [
            ("2024-02-29", true), ("2000-02-29", true), ("2023-02-29", false), ("1900-02-29", false),
            ("2024-02-30", false),
        ])
    func leapDay(birthDate: String, valid: Bool) {
        #expect(failures(birthDate: birthDate).isEmpty == valid)
    }

    @Test("A birth date after today (UTC) is refused; today itself is accepted")
    func futureBirthDate() {
        // t0 is 2027-01-15T08:00:00Z
        #expect(failures(birthDate: "2027-01-15").isEmpty)
        #expect(
            failures(birthDate: "2027-01-16") == [
                .init(field: "birthDate", code: .inFuture, message: "must not be in the future")
            ])
        #expect(
            failures(birthDate: "2028-01-01") == [
                .init(field: "birthDate", code: .inFuture, message: "must not be in the future")
            ])
    }

    @Test(
        "The phone accepts digits, spaces, '+' and '-' only",
        arguments: [
            ("010-1234-5678", true), ("+82 10 1234 5678", true), ("0212345678", true),
            ("010.1234.5678", false), ("(02) 123-4567", false), ("010-1234-567８", false), ("call me", false),
        ])
    func phone(phone: String, valid: Bool) {
        let reported = failures(phone: phone)
        #expect(reported.isEmpty == valid)
        #expect(fieldNames(ValidationFailure(reported)).allSatisfy { $0 == "phone" })
    }

    @Test("Every broken rule is reported at once, field by field")
    func allAtOnce() {
        let reported = failures(
            name: " ", patientId: "P_1", birthDate: "1990-02-30", phone: "010.1234",
            department: String(repeating: "과", count: 51), symptom: String(repeating: "x", count: 1001))

        #expect(
            fieldNames(ValidationFailure(reported)) == [
                "patientName", "patientId", "birthDate", "phone", "department", "symptom",
            ])
    }

    @Test("A cancel reason is required and trimmed")
    func cancelReason() throws {
        #expect(throws: ValidationFailure([.init(field: "reason", code: .required, message: "is required")])) {
            try CancelReason.validated(nil)
        }
        #expect(throws: ValidationFailure([.init(field: "reason", code: .required, message: "must not be empty")])) {
            try CancelReason.validated("   ")
        }
        #expect(try CancelReason.validated("  환자 귀가 ").text == "환자 귀가")
    }
}
