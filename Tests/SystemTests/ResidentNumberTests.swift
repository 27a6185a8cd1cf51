import Foundation
import Runtime
import TestSupport
import Testing

/// 주민등록번호: encrypted at rest, masked in every answer, found by a keyed hash, and in clear
/// nowhere: no database file, event, log line (at trace) or URL.
@Suite("Resident registration number")
struct ResidentNumberTests {
    static let clear = ["850315-1234567", "8503151234567"]

    @Test(
        "Masked in answers, found by its keyed hash, refused when malformed, in clear in no file or log line",
        .enabled(if: !TestSystem.onPostgres, "reads the SQLite files for the number in clear"))
    func protectedEverywhere() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.deletingLastPathComponent().appendingPathComponent("rrn-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let process = try await HospitalProcess.serve(
            [], dataDirectory: directory, environment: ["HOSPITAL_LOG_LEVEL": "trace"], errorLog: log)
        let gateway = try #require(process.url(.gateway))
        func post(_ path: String, _ json: [String: Any]) async throws -> HTTPResult {
            try await HTTPResult.send(.POST, gateway, path, body: try JSONSerialization.data(withJSONObject: json))
        }

        let registered = try await post(
            "/receptions", ["patientName": "홍길동", "residentNumber": "850315-1234567"])
        #expect(registered.status == 201, "\(registered.text)")
        #expect(registered.json["residentNumber"] as? String == "850315-1******")
        let id = try #require(registered.json["id"] as? String)
        let other = try await post("/receptions", ["patientName": "김영희", "residentNumber": "0102034123456"])
        #expect(other.status == 201 && other.json["residentNumber"] as? String == "010203-4******")

        let shown = try await HTTPResult.send(.GET, gateway, "/receptions/\(id)")
        #expect(shown.json["residentNumber"] as? String == "850315-1******")
        let found = try await post("/receptions/search", ["residentNumber": "8503151234567"])
        #expect((found.json["items"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [id])
        let notFound = try await post("/receptions/search", ["residentNumber": "850315-1234568"])
        #expect((notFound.json["items"] as? [Any])?.isEmpty == true)

        for bad in ["850230-1234567", "851315-1234567", "85031-51234567", "850315-123456", "99123141234567", "abc"] {
            let refused = try await post("/receptions", ["patientName": "홍길동", "residentNumber": bad])
            #expect(refused.status == 422, "\(bad)")
            #expect(!refused.text.contains(bad), "the refusal does not echo the number")
        }
        // Born tomorrow (2000s, seventh digit 3): refused as a date in the future.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let tomorrow = calendar.dateComponents([.year, .month, .day], from: Date().addingTimeInterval(86_400 * 2))
        let future = String(format: "%02d%02d%02d-3123456", tomorrow.year! % 100, tomorrow.month!, tomorrow.day!)
        #expect(try await post("/receptions", ["patientName": "미래", "residentNumber": future]).status == 422)

        _ = try await eventually("the visit reaches the doctor and the board") {
            let board = try await HTTPResult.send(.GET, gateway, "/patientManagements/\(id)")
            return board.status == 200 ? true : nil
        }
        #expect(process.terminate() == 0)

        // Every byte the system wrote: databases (with their WAL files), the event log, keys, logs.
        var files: [URL] = [log]
        let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)
        while let file = walker?.nextObject() as? URL { files.append(file) }
        #expect(files.count > 8)
        for file in files {
            guard let data = try? Data(contentsOf: file) else { continue }
            for clear in Self.clear {
                #expect(data.range(of: Data(clear.utf8)) == nil, "\(clear) in clear in \(file.lastPathComponent)")
            }
        }
        let logged = try String(contentsOf: log, encoding: .utf8)
        #expect(logged.contains("trace"), "the log was written at trace level")
    }
}
