@testable import DiagnosisService
@testable import ExaminationService
import FluentKit
import Foundation
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
        ("PatientManagementModel", PatientManagementModel()), ("AttachmentModel", AttachmentModel()),
        ("PatientModel", PatientModel()), ("PatientChangeModel", PatientChangeModel()),
    ]

    @Test("Each hand-written list holds exactly the model's property wrappers, each once")
    func listsMatchReflection() {
        for (name, model) in models { check(name, model) }
    }

    /// Swift cannot list a protocol's conformers at run time: the sources are read instead, so a
    /// model added anywhere fails here until it is checked above.
    @Test("Every model class in Sources is among those checked")
    func everyModelIsChecked() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources")
            .standardizedFileURL
        let pattern = try NSRegularExpression(pattern: #"final class (\w+): (Model|AggregateRecord)\b"#)
        var found: Set<String> = []
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            guard file.pathExtension == "swift", let text = try? String(contentsOf: file, encoding: .utf8) else {
                continue
            }
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 1), in: text) { found.insert(String(text[range])) }
            }
        }
        #expect(found.count >= 9, "the sources were found and read: \(found)")
        #expect(found == Set(models.map(\.0)), "models not checked: \(found.subtracting(models.map(\.0)))")
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
