import Foundation
import ReceptionDomain
import SharedKernel
import Testing

/// Hostile text in every field: what a person cannot see or that would read differently on the
/// screen from what is stored is refused; lengths are counted as people count.
@Suite("Text rules")
struct TextRulesTests {
    func codes(name: String? = "홍길동", symptom: String? = nil, patientId: String? = nil) -> [String: String] {
        do {
            _ = try Patient.validated(
                name: name, patientId: patientId, birthDate: nil, phone: nil, department: nil, symptom: symptom,
                today: Date())
            return [:]
        } catch {
            return Dictionary(error.fields.map { ($0.field, $0.code.rawValue) }) { first, _ in first }
        }
    }

    @Test("NUL, control characters and direction overrides are refused in a name")
    func controlCharacters() {
        for hostile in [
            "홍\u{0}길동", "홍길동\u{7}", "홍\u{1B}[31m길동", "\u{202E}동길홍", "홍\u{2066}길동\u{2069}", "홍\n길동", "홍\u{FFFF}",
        ] {
            #expect(codes(name: hostile) == ["patientName": "invalidCharacters"], "\(hostile.debugDescription)")
        }
    }

    @Test("Line and paragraph separators, byte order marks, direction marks and tag characters are refused, in multi-line texts too; a doctor emoji's joiner is not")
    func hiddenCharacters() {
        for hostile in [
            "홍\u{2028}길동", "홍길\u{2029}동", "\u{FEFF}홍길동", "홍\u{200E}길동", "홍\u{200F}길동", "홍\u{061C}길동",
            "홍길동\u{E0041}\u{E0042}", "홍\u{2060}길동",
        ] {
            #expect(codes(name: hostile) == ["patientName": "invalidCharacters"], "\(hostile.debugDescription)")
            #expect(codes(symptom: "기침 " + hostile) == ["symptom": "invalidCharacters"], "\(hostile.debugDescription)")
        }
        #expect(codes(name: "김👩\u{200D}⚕️") == [:])
        #expect(codes(symptom: "기침\n발열") == [:])
    }

    @Test("A name made only of invisible characters is no name")
    func invisibleNames() {
        for invisible in [
            "\u{200B}", "\u{200B}\u{200D}\u{2060}", "\u{3164}\u{3164}", "\u{FEFF}", "\u{115F}\u{1160}", "\u{301}",
        ] {
            #expect(codes(name: invisible) == ["patientName": "required"], "\(invisible.debugDescription)")
            #expect(codes(symptom: invisible) == ["symptom": "invalidCharacters"], "\(invisible.debugDescription)")
        }
    }

    @Test("Lengths are grapheme clusters, and bytes are bounded too")
    func lengths() {
        #expect(codes(name: String(repeating: "한", count: 100)).isEmpty)
        #expect(codes(name: String(repeating: "👩‍⚕️", count: 100)).isEmpty, "a family emoji is one character")
        #expect(codes(name: String(repeating: "한", count: 101)) == ["patientName": "tooLong"])
        let zalgo = "김" + String(repeating: "\u{301}", count: 1000)
        #expect(zalgo.count == 1)
        #expect(codes(name: zalgo) == ["patientName": "tooLong"], "one character of 2,000 bytes")
    }

    @Test("Line breaks and tabs are fine in multi-line texts, not in names; ordinary names pass")
    func multiline() {
        #expect(codes(symptom: "기침\n발열\t3일").isEmpty)
        #expect(codes(symptom: "기침\u{0}").isEmpty == false)
        for name in ["홍길동", "Anne-Marie O'Neil", "김 민수", "José", "李小龍"] {
            #expect(codes(name: name).isEmpty, "\(name)")
        }
    }
}
