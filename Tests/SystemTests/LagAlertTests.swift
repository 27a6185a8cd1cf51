import Foundation
import Runtime
import TestSupport
import Testing

/// Observability under a real failure, with the scale-out tests (serialized with them: one
/// process per service on PostgreSQL and Kafka).
extension ScaleOutTests {
    @Test(
        "Diagnosis killed under load: its lag, as the other services see it on Kafka, rises; the lag alert fires on those very series"
    )
    func diagnosisKilledUnderLoad() async throws {
        let system = try await ScaleOut.start()
        defer { system.stop() }
        // Everything caught up first: a visit goes through to the doctor's worklist.
        let first = try await system.post("/receptions", ["patientName": "지연환자", "department": "내과"])
        let firstId = try #require(first.json["id"] as? String)
        _ = try await eventually("the first visit on the worklist", timeout: .seconds(30)) {
            try await system.total("/diagnoses?receptionId=\(firstId)") == 1 ? true : nil
        }
        system.kill(.diagnosis)

        // The desk keeps registering; reception's /metrics is scraped after each burst.
        let reception = system.url(of: .reception)
        var diagnosisLag: [Int] = []
        var examinationLag: [Int] = []
        for round in 0..<12 {
            for i in 0..<12 {
                let answer = try await system.post(
                    "/receptions", ["patientName": "지연\(round)-\(i)", "department": "내과"])
                #expect(answer.status == 201)
            }
            // The burst's events on the topic (the relay publishes them after the answers).
            _ = try await eventually("reception's outbox published") {
                try await system.scalar(.reception, "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL") == 0
                    ? true : nil
            }
            let metrics = try await HTTPResult.send(.GET, reception, "/metrics").text
            diagnosisLag.append(try #require(Self.value(in: metrics, "hospital_consumer_lag_events", group: "diagnosis")))
            examinationLag.append(Self.value(in: metrics, "hospital_consumer_lag_events", group: "examination") ?? -1)
        }
        // Diagnosis, dead, falls further behind with every burst. Examination takes every event
        // too (skipping the ones it has no use for) and is alive: behind by what it has not yet
        // committed (every second) during the bursts, caught up once they stop.
        #expect(zip(diagnosisLag, diagnosisLag.dropFirst()).allSatisfy { $0 < $1 }, "\(diagnosisLag)")
        #expect(diagnosisLag.last! >= 12 * 12)
        _ = try await eventually("examination caught up with the topic") {
            let metrics = try await HTTPResult.send(.GET, reception, "/metrics").text
            return Self.value(in: metrics, "hospital_consumer_lag_events", group: "examination") == 0 ? true : nil
        }
        let stillBehind = try await HTTPResult.send(.GET, reception, "/metrics").text
        #expect(Self.value(in: stillBehind, "hospital_consumer_lag_events", group: "diagnosis")! >= diagnosisLag.last!)

        // Those series, one sample a minute, through the repository's own rules.
        let rules = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../deploy/prometheus/alerts.yml"
        ).standardized
        let last = diagnosisLag.count - 1
        let fixture = """
            rule_files: ["\(rules.path)"]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'hospital_consumer_lag_events{service="reception",consumer_group="diagnosis"}'
                    values: '\(diagnosisLag.map(String.init).joined(separator: " "))'
                  - series: 'hospital_consumer_lag_events{service="reception",consumer_group="examination"}'
                    values: '\(examinationLag.map(String.init).joined(separator: " "))'
                alert_rule_test:
                  - eval_time: \(last)m
                    alertname: HospitalConsumerLagGrowing
                    exp_alerts:
                      - exp_labels: { severity: page, consumer_group: diagnosis }
                        exp_annotations:
                          summary: "diagnosis is falling behind: \(diagnosisLag[last]) events and growing"
                          description: "Patients registered are not reaching the next step. Is the service running, ready, and not stuck on its database?"
            """
        let file = system.directory.appendingPathComponent("lag_alert_test.yml")
        try fixture.write(to: file, atomically: true, encoding: .utf8)
        let promtool = ChildProcess()
        promtool.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        promtool.arguments = ["promtool", "test", "rules", file.path]
        let output = Pipe()
        promtool.standardOutput = output
        promtool.standardError = output
        try promtool.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        promtool.waitUntilExit()
        #expect(promtool.terminationStatus == 0, "\(text)\n\(fixture)")
    }

    /// The value of `name{consumer_group="group"}` in a Prometheus exposition.
    static func value(in exposition: String, _ name: String, group: String) -> Int? {
        for line in exposition.split(separator: "\n") where line.hasPrefix(name + "{") {
            guard line.contains("consumer_group=\"\(group)\""), let value = line.split(separator: " ").last,
                let number = Double(value)
            else { continue }
            return Int(number)
        }
        return nil
    }
}
