import Contracts
import Foundation
import Testing

/// One event of every type, with distinct identifiers.
private let everyEvent: [VisitEvent] = [
    .treatmentReceived(TreatmentReceived(patientName: "김민수", department: "내과", symptom: "기침, 발열")),
    .treatmentReceived(TreatmentReceived(patientName: "Lee", department: nil, symptom: nil)),
    .treatmentCanceled(TreatmentCanceled(reason: "환자 귀가")),
    .prescribed(
        Prescribed(
            diagnosisId: id(2), patientName: "김민수",
            orders: [
                ExamOrder(orderId: id(11), code: "CBC", name: "일반혈액검사"),
                ExamOrder(orderId: id(12), code: "XR-CHEST", name: "흉부 X-ray"),
            ])),
    .examinationCompleted(
        ExaminationCompleted(examinationId: id(21), diagnosisId: id(2), orderId: id(11), result: "정상")),
    .examinationCanceled(
        ExaminationCanceled(examinationId: id(22), diagnosisId: id(2), orderId: id(12), reason: "장비 고장")),
    .diagnosisCompleted(DiagnosisCompleted(diagnosisId: id(2), note: "")),
    .diagnosisRejected(DiagnosisRejected(diagnosisId: id(2), reason: "타 병원 전원")),
    .diagnosisCanceled(DiagnosisCanceled(diagnosisId: id(2), reason: "환자 귀가")),
    .treatmentReceived(
        TreatmentReceived(
            patientName: "홍길동", department: "내과", symptom: nil,
            patient: PatientFacts(patientId: id(31), name: "홍길동", sex: "M", birthDate: "1985-03-15", version: 2))),
    .patientRegistered(
        PatientRegistered(patient: PatientFacts(patientId: id(31), name: "홍길동", sex: "M", birthDate: nil, version: 1))),
    .patientUpdated(
        PatientUpdated(
            patient: PatientFacts(patientId: id(31), name: "홍길순", sex: "F", birthDate: "1985-03-15", version: 3),
            changed: ["name", "sex"])),
    .patientMerged(PatientMerged(patientId: id(32), into: id(31))),
    .treatmentReceived(
        TreatmentReceived(
            patientName: "홍길동", department: "내과", symptom: nil, queueNumber: "A-012", priority: "EMERGENCY")),
    .queueUpdated(
        QueueUpdated(
            transition: "CALL", stage: "diagnosis", entryId: id(2), department: "내과", queueNumber: "A-012",
            state: "CALLED", room: "진료실 2", calls: 1)),
    .priorityChanged(PriorityChanged(priority: "CARE")),
]

/// The envelope's JSON as a dictionary.
private func jsonObject(_ envelope: EventEnvelope) throws -> [String: Any] {
    let data = try EventCoding.encode(envelope)
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// A hand-written envelope around `type`, `version` and `payload` JSON.
private func rawEnvelope(type: String, version: Int = 1, payload: String = "{}") -> Data {
    """
    {"eventId":"\(id(99).uuidString)","type":"\(type)","version":\(version),\
    "occurredAt":"2027-01-15T08:00:00.000Z","receptionId":"\(id(1).uuidString)",\
    "producer":"future-service","actor":"someone","payload":\(payload)}
    """.data(using: .utf8)!
}

@Suite("Contracts: the event envelope on the wire")
struct EventEnvelopeTests {
    @Test(
        "Every event type survives an encode/decode round trip, millisecond timestamp included", arguments: everyEvent)
    func roundTrip(event: VisitEvent) throws {
        let original = envelope(event, at: 12.345, eventId: id(77))

        let decoded = try EventCoding.decode(EventCoding.encode(original))

        #expect(decoded == original)
        #expect(decoded.occurredAt == original.occurredAt)
        #expect(decoded.event == event)
    }

    @Test("The JSON carries exactly the envelope fields of DOMAIN.md")
    func envelopeFields() throws {
        let original = envelope(.treatmentCanceled(TreatmentCanceled(reason: "환자 귀가")), at: 0.5, eventId: id(77))

        let json = try jsonObject(original)

        #expect(
            Set(json.keys) == [
                "eventId", "type", "version", "occurredAt", "receptionId", "producer", "traceparent", "actor",
                "payload",
            ])
        #expect(json["type"] as? String == "TreatmentCanceled")
        #expect(json["version"] as? Int == 1)
        #expect((json["eventId"] as? String).flatMap(UUID.init(uuidString:)) == id(77))
        #expect((json["receptionId"] as? String).flatMap(UUID.init(uuidString:)) == receptionId)
        #expect(json["producer"] as? String == "test")
        #expect(json["actor"] as? String == "tester")
        #expect(json["traceparent"] as? String == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        let payload = try #require(json["payload"] as? [String: Any])
        #expect(payload["reason"] as? String == "환자 귀가")
    }

    @Test("occurredAt is an ISO 8601 UTC string with milliseconds ending in Z")
    func occurredAtFormat() throws {
        let json = try jsonObject(envelope(.treatmentCanceled(TreatmentCanceled(reason: "x")), at: 0.25))

        let occurredAt = try #require(json["occurredAt"] as? String)
        #expect(occurredAt == "2027-01-15T08:00:00.250Z")
        #expect(occurredAt.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil)
        #expect(Timestamp.format(t0) == "2027-01-15T08:00:00.000Z")
    }

    @Test("Timestamps without fractional seconds are still read")
    func timestampWithoutFraction() {
        #expect(Timestamp.parse("2027-01-15T08:00:00Z") == t0)
        #expect(Timestamp.parse("2027-01-15T08:00:00.500Z") == at(0.5))
        #expect(Timestamp.parse("15/01/2027 08:00") == nil)
    }

    @Test("The Prescribed payload lists every order with its own orderId")
    func prescribedPayload() throws {
        let json = try jsonObject(envelope(everyEvent[3], at: 0))

        let payload = try #require(json["payload"] as? [String: Any])
        #expect((payload["diagnosisId"] as? String).flatMap(UUID.init(uuidString:)) == id(2))
        let orders = try #require(payload["orders"] as? [[String: Any]])
        #expect(orders.compactMap { ($0["orderId"] as? String).flatMap(UUID.init(uuidString:)) } == [id(11), id(12)])
        #expect(orders.compactMap { $0["code"] as? String } == ["CBC", "XR-CHEST"])
    }

    @Test("An envelope without traceparent omits it and decodes it as nil")
    func missingTraceparent() throws {
        let original = envelope(everyEvent[2], at: 0, traceparent: nil)

        let json = try jsonObject(original)
        let decoded = try EventCoding.decode(EventCoding.encode(original))

        #expect(json["traceparent"] == nil)
        #expect(decoded.traceparent == nil)
        #expect(decoded == original)
    }

    @Test("An unknown event type decodes as UnknownEvent, so the consumer can skip it")
    func unknownType() {
        let error = #expect(throws: UnknownEvent.self) {
            try EventCoding.decode(rawEnvelope(type: "PatientTeleported"))
        }
        #expect(error?.type == "PatientTeleported")
        #expect(error?.version == 1)
    }

    @Test("A known type at an unknown version decodes as UnknownEvent")
    func unknownVersion() {
        let error = #expect(throws: UnknownEvent.self) {
            try EventCoding.decode(rawEnvelope(type: "TreatmentCanceled", version: 2, payload: #"{"reason":"x"}"#))
        }
        #expect(error?.type == "TreatmentCanceled")
        #expect(error?.version == 2)
    }

    @Test("A hand-written envelope of a known type decodes")
    func handWrittenKnownType() throws {
        let decoded = try EventCoding.decode(rawEnvelope(type: "TreatmentCanceled", payload: #"{"reason":"환자 귀가"}"#))

        #expect(decoded.event == .treatmentCanceled(TreatmentCanceled(reason: "환자 귀가")))
        #expect(decoded.occurredAt == t0)
        #expect(decoded.traceparent == nil)
        #expect(decoded.producer == "future-service")
    }

    @Test(
        "Malformed input throws a decoding error, not UnknownEvent",
        arguments: [
            "not json at all",
            "{\"eventId\": 1}",
            String(decoding: rawEnvelope(type: "TreatmentCanceled", payload: "{}"), as: UTF8.self),
            String(decoding: rawEnvelope(type: "TreatmentCanceled"), as: UTF8.self)
                .replacingOccurrences(of: "2027-01-15T08:00:00.000Z", with: "yesterday"),
        ])
    func malformed(json: String) {
        let error = #expect(throws: (any Error).self) {
            try EventCoding.decode(Data(json.utf8))
        }
        #expect(error is DecodingError)
        #expect(!(error is UnknownEvent))
    }

    @Test("Every event case reports its own type name, and allTypes lists all twelve")
    func typeNames() {
        #expect(
            everyEvent.map(\.type) == [
                "TreatmentReceived", "TreatmentReceived", "TreatmentCanceled", "Prescribed", "ExaminationCompleted",
                "ExaminationCanceled", "DiagnosisCompleted", "DiagnosisRejected", "DiagnosisCanceled",
                "TreatmentReceived", "PatientRegistered", "PatientUpdated", "PatientMerged", "TreatmentReceived",
                "QueueUpdated", "PriorityChanged",
            ])
        #expect(Set(VisitEvent.allTypes) == Set(everyEvent.map(\.type)))
        #expect(VisitEvent.allTypes.count == 13)
        #expect(everyEvent.filter(\.isRegistryEvent).count == 3)
        #expect(everyEvent.allSatisfy { $0.version == 1 })
    }
}

@Suite("Contracts: W3C traceparent")
struct TraceParentTests {
    private let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test("A valid header is parsed into its parts, lowercased")
    func parsesValid() throws {
        let parsed = try #require(TraceParent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"))

        #expect(parsed.traceId == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(parsed.parentId == "00f067aa0ba902b7")
        #expect(parsed.flags == "01")
        #expect(parsed.description == valid)
    }

    @Test(
        "Malformed headers are refused",
        arguments: [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // trace id 31
            "00-4bf92f3577b34da6a3ce929d0e0e47360-00f067aa0ba902b7-01",  // trace id 33
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  // parent id 15
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7a-01",  // parent id 17
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // flags 1
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // three parts
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",  // five parts
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // non-hex trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",  // non-hex parent id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  // non-hex flags
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // all-zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // all-zero parent id
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version 01
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
        ])
    func refusesMalformed(header: String) {
        #expect(TraceParent(header) == nil)
    }

    @Test("A child keeps the trace id and flags and gets a new parent id")
    func child() throws {
        let parent = try #require(TraceParent(valid))

        let child = parent.child()

        #expect(child.traceId == parent.traceId)
        #expect(child.flags == parent.flags)
        #expect(child.parentId != parent.parentId)
        #expect(TraceParent(child.description) == child)
    }

    @Test("A root trace is valid, parseable and new every time")
    func root() throws {
        let root = TraceParent.root()

        let reparsed = try #require(TraceParent(root.description))
        #expect(reparsed == root)
        #expect(root.traceId.count == 32)
        #expect(root.parentId.count == 16)
        #expect(root.flags == "01")
        #expect(TraceParent.root().traceId != root.traceId)
    }

    @Test("continuing() continues a valid trace and starts a new one otherwise")
    func continuing() throws {
        let parent = try #require(TraceParent(valid))

        let continued = TraceParent.continuing(valid)
        let fromGarbage = TraceParent.continuing("garbage")
        let fromNothing = TraceParent.continuing(nil)

        #expect(continued.traceId == parent.traceId)
        #expect(continued.parentId != parent.parentId)
        #expect(fromGarbage.traceId != parent.traceId)
        #expect(TraceParent(fromGarbage.description) != nil)
        #expect(TraceParent(fromNothing.description) != nil)
    }
}
