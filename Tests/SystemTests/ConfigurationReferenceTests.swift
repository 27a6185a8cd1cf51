import Foundation
import Runtime
import Testing

/// docs/configuration.md is the print of the one table of settings, and the table holds every
/// setting the sources read.
@Suite("Configuration reference")
struct ConfigurationReferenceTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
        .standardizedFileURL

    @Test("docs/configuration.md is what `hospital settings` prints from the table")
    func pageIsTheTable() throws {
        let page = try String(contentsOf: Self.root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        #expect(page == Settings.markdown(), "docs/configuration.md is stale: hospital settings > docs/configuration.md")
    }

    @Test("Every HOSPITAL_* variable the sources name is a row of the table, and no row is named twice")
    func everySettingIsInTheTable() throws {
        let pattern = try NSRegularExpression(pattern: #""(HOSPITAL_[A-Z0-9_]+)""#)
        var read: Set<String> = []
        let files = FileManager.default.enumerator(
            at: Self.root.appendingPathComponent("Sources"), includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            guard file.pathExtension == "swift", let text = try? String(contentsOf: file, encoding: .utf8) else {
                continue
            }
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 1), in: text) { read.insert(String(text[range])) }
            }
        }
        #expect(read.count > 30, "the sources were read: \(read.count) settings")
        let rows = Settings.table.map(\.variable)
        #expect(Set(rows).count == rows.count, "a variable in two rows")
        let missing = read.subtracting(rows).sorted()
        #expect(missing.isEmpty, "read by the sources but not in Settings.table: \(missing)")
    }

    @Test("A row's value reaches the configuration, and a bad one is refused naming the variable")
    func rowsApply() throws {
        let config = try HospitalConfiguration.from(environment: [
            "HOSPITAL_CONSUMER_BATCH_SIZE": "7", "HOSPITAL_RECEPTION_PORT": "9001",
            "HOSPITAL_OIDC_ISSUER": "https://id.example.org", "HOSPITAL_OIDC_CLIENT_ID": "hospital",
            "HOSPITAL_OIDC_ROLES_CLAIM": "realm_access.roles", "POD_NAME": "diagnosis-0",
        ])
        #expect(config.consumerBatchSize == 7)
        #expect(config.port(of: .reception) == 9001)
        #expect(config.auth.oidc?.rolesClaim == ["realm_access", "roles"])
        #expect(config.auth.oidc?.audience == "hospital")
        #expect(config.kafkaInstanceId == "diagnosis-0")
        #expect(throws: ConfigurationError.self) {
            try HospitalConfiguration.from(environment: ["HOSPITAL_CONSUMER_BATCH_SIZE": "0"])
        }
        #expect(throws: ConfigurationError.self) {
            try HospitalConfiguration.from(environment: ["HOSPITAL_OIDC_ISSUER": "https://id.example.org"])
        }
        do {
            _ = try HospitalConfiguration.from(environment: ["HOSPITAL_AUDIT_RETENTION_DAYS": "30"])
            Issue.record("a retention under two years was accepted")
        } catch let error as ConfigurationError {
            #expect(error.description.hasPrefix("HOSPITAL_AUDIT_RETENTION_DAYS:"))
        }
    }
}
