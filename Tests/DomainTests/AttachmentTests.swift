import ExaminationDomain
import Foundation
import Testing

@Suite("Attachments")
struct AttachmentTests {
    @Test("A file's type is what its first bytes say")
    func sniffing() {
        #expect(AttachmentKind.sniff([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0]) == .png)
        #expect(AttachmentKind.sniff([0xFF, 0xD8, 0xFF, 0xE0]) == .jpeg)
        #expect(AttachmentKind.sniff(Array("%PDF-1.7".utf8)) == .pdf)
        #expect(AttachmentKind.sniff(Array(repeating: 0, count: 128) + Array("DICM".utf8)) == .dicom)
        // An executable, a script, a PNG signature cut short, DICM in the wrong place.
        #expect(AttachmentKind.sniff([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1]) == nil)
        #expect(AttachmentKind.sniff(Array("#!/bin/sh".utf8)) == nil)
        #expect(AttachmentKind.sniff([0x89, 0x50, 0x4E, 0x47]) == nil)
        #expect(AttachmentKind.sniff(Array("DICM".utf8) + Array(repeating: 0, count: 128)) == nil)
    }

    @Test("A claimed type is read without its parameters; unknown types are none")
    func mediaTypes() {
        #expect(AttachmentKind(mediaType: "image/PNG; charset=binary") == .png)
        #expect(AttachmentKind(mediaType: "image/jpg") == .jpeg)
        #expect(AttachmentKind(mediaType: "application/x-msdownload") == nil)
    }

    @Test("A file name is a name: the last path component, no control characters, bounded")
    func fileNames() throws {
        #expect(try AttachmentFileName("../../etc/passwd").text == "passwd")
        #expect(try AttachmentFileName("C:\\\\scans\\\\흉부.png").text == "흉부.png")
        #expect(try AttachmentFileName(nil).text == "attachment")
        #expect(try AttachmentFileName("\u{FFFD}\u{FFFD}.png").text == "attachment")
        #expect(throws: AttachmentRefusal.badFileName) { try AttachmentFileName("bell\u{07}.png") }
        #expect(throws: AttachmentRefusal.badFileName) { try AttachmentFileName("evil\u{202E}gnp.exe") }
        #expect(throws: AttachmentRefusal.badFileName) { try AttachmentFileName("..") }
        #expect(throws: AttachmentRefusal.badFileName) { try AttachmentFileName(String(repeating: "가", count: 70)) }
    }
}
