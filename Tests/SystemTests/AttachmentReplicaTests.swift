import Crypto
import Foundation
import Runtime
import Testing

/// Result files on a directory shared by examination replicas (a ReadWriteMany volume), each a
/// process of its own on PostgreSQL and Kafka.
extension ScaleOutTests {
    @Test("Two examination processes share the attachments directory: each serves a file uploaded through the other")
    func attachmentsAcrossReplicas() async throws {
        let system = try await ScaleOut.start()
        defer { system.stop() }
        try await system.start(.examination, replica: 1)
        let reception = try await Load.register(system, "첨부")
        let diagnosis = try await Load.diagnosis(system, of: reception)
        #expect(
            try await system.post(
                "/diagnoses/\(diagnosis)/prescriptions", ["examinations": [["code": "XR", "name": "흉부 X선"]]]
            ).status == 200)
        let exam = try await Load.eventuallyItem(system, "/examinations?diagnosisId=\(diagnosis)")

        var uploaded: [(replica: Int, id: String, bytes: Data)] = []
        for replica in [0, 1] {
            var bytes = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            bytes.append(Data((0..<100_000).map { _ in UInt8.random(in: 0...255) }))
            let answer = try await HTTPResult.send(
                .POST, system.url(of: .examination, replica: replica), "/examinations/\(exam)/attachments",
                body: bytes, headers: [("Content-Type", "image/png"), ("Content-Disposition", "attachment; filename=\"r\(replica).png\"")])
            #expect(answer.status == 201, "\(answer.text)")
            let sha = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            #expect(answer.json["sha256"] as? String == sha)
            uploaded.append((replica, try #require(answer.json["id"] as? String), bytes))
        }
        // Each file, from the replica it was not uploaded through.
        for file in uploaded {
            let other = 1 - file.replica
            let answer = try await HTTPResult.send(
                .GET, system.url(of: .examination, replica: other), "/examinations/\(exam)/attachments/\(file.id)")
            #expect(answer.status == 200)
            #expect(answer.body == file.bytes, "replica \(other) served another file than replica \(file.replica) took")
        }
    }
}
