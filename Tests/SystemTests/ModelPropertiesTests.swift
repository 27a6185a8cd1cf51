@testable import DiagnosisService
@testable import ExaminationService
import FluentKit
import Messaging
@testable import PatientManagementService
@testable import ReceptionService
import Testing

/// Every model lists its columns by hand (FluentKit's default finds them by reflection on every
/// query). A column added to a model but not to its list would silently never be saved or read:
/// this compares each list with what reflection finds.
@Suite("Model property lists")
struct ModelPropertiesTests {
    let models: [(String, any Fields)] = [
        ("OutboxMessage", OutboxMessage()), ("InboxEntry", InboxEntry()), ("DeadLetter", DeadLetter()),
        ("ReceptionModel", ReceptionModel()), ("IdempotencyRecord", IdempotencyRecord()),
        ("DiagnosisModel", DiagnosisModel()), ("ExaminationModel", ExaminationModel()),
        ("PatientManagementModel", PatientManagementModel()),
    ]

    @Test("Each hand-written list holds exactly the model's property wrappers, each once")
    func listsMatchReflection() {
        for (name, model) in models { check(name, model) }
    }

    func check(_ name: String, _ model: any Fields) {
        let listed = model.properties.map { ObjectIdentifier($0 as AnyObject) }
        let reflected = Mirror(reflecting: model).children.compactMap { $0.value as? any AnyProperty }
            .map { ObjectIdentifier($0 as AnyObject) }
        #expect(!reflected.isEmpty, "\(name)")
        #expect(Set(listed).count == listed.count, "\(name) lists a property twice")
        #expect(Set(listed) == Set(reflected), "\(name): the list and the model's wrappers differ")
    }
}
