import Foundation
import Testing

/// docs/configuration.md is the reference of every setting: a setting the code reads but the page
/// does not list fails here (regenerate it: scripts/settings-reference.py).
@Suite("Configuration reference")
struct ConfigurationReferenceTests {
    @Test("Every HOSPITAL_* variable the sources read is in docs/configuration.md")
    func everySettingIsDocumented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
            .standardizedFileURL
        let page = try String(contentsOf: root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        let pattern = try NSRegularExpression(pattern: #""(HOSPITAL_[A-Z0-9_]+)""#)
        var read: Set<String> = []
        let files = FileManager.default.enumerator(at: root.appendingPathComponent("Sources"), includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            guard file.pathExtension == "swift", let text = try? String(contentsOf: file, encoding: .utf8) else {
                continue
            }
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 1), in: text) { read.insert(String(text[range])) }
            }
        }
        #expect(read.count > 50, "the sources were read: \(read.count) settings")
        let missing = read.filter { !page.contains("| `\($0)` |") }.sorted()
        #expect(missing.isEmpty, "not in docs/configuration.md (run scripts/settings-reference.py): \(missing)")
    }
}
