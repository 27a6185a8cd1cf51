import Foundation
import Logging
import ServiceKit
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

@testable import Runtime

/// The process's long-running work under swift-service-lifecycle: supervised loops, and a stop
/// that drains in order and says when it lost something.
@Suite("Lifecycle")
struct LifecycleTests {
    struct Ended: Error {}

    @Test("A loop that ends by itself is started again after a growing pause, the process unready meanwhile")
    func supervisedLoopRestarts() async throws {
        let readiness = Readiness()
        let starts = Mutex<[ContinuousClock.Instant]>([])
        let loop = Loop("test: flaky loop") {
            let run = starts.withLock {
                $0.append(.now)
                return $0.count
            }
            // The first run throws, the second returns (both unexpected), the third runs on.
            if run == 1 { throw Ended() }
            if run == 2 { return }
            try await Task.sleep(for: .seconds(3600))
        }
        let supervised = SupervisedLoop(
            loop: loop, readiness: readiness, logger: Logger(label: "test"),
            backoff: Backoff(initial: .milliseconds(300), maximum: .seconds(5), stable: .seconds(60)))
        let task = Task { await supervised.supervise() }
        defer { task.cancel() }
        let refusal = try await eventually("unready while the loop is down", timeout: .seconds(5), every: .milliseconds(5)) {
            do {
                try readiness.check()
                return nil as String?
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal.contains("test: flaky loop stopped"))
        try await eventually("the third run", timeout: .seconds(10)) { starts.withLock { $0.count } == 3 ? true : nil }
        #expect(throws: Never.self) { try readiness.check() }
        let times = starts.withLock { $0 }
        #expect(times[1] - times[0] >= .milliseconds(300))
        #expect(times[2] - times[1] >= .milliseconds(600), "the pause doubles after each end")
        task.cancel()
        await task.value
        #expect(starts.withLock { $0.count } == 3, "a canceled loop is not started again")
    }

    @Test("A stop ends the members in reverse order, and a finish that fails makes the stop fail")
    func stopOrderAndFailure() async throws {
        final class Record: Sendable {
            let names = Mutex<[String]>([])
            func append(_ name: String) { names.withLock { $0.append(name) } }
        }
        struct Member: Service {
            let name: String
            let record: Record
            func run() async throws {
                try? await gracefulShutdown()
                record.append(name)
            }
        }
        let readiness = Readiness()
        let logger = Logger(label: "test")
        let record = Record()
        let writer = SupervisedLoop(
            loop: Loop("test: audit writer", finish: {
                record.append("audit finish")
                throw Ended()
            }) { try await Task.sleep(for: .seconds(3600)) },
            readiness: readiness, logger: logger)
        let relay = SupervisedLoop(
            loop: Loop("test: relay", finish: { record.append("relay") }) { try await Task.sleep(for: .seconds(3600)) },
            readiness: readiness, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: ([relay, writer, Member(name: "server", record: record)] as [any Service]).map { .member($0) }, logger: logger))
        let running = Task { try await group.run() }
        await group.triggerGracefulShutdown()
        await #expect(throws: Ended.self) { try await running.value }
        #expect(record.names.withLock { $0 } == ["server", "audit finish", "relay"])
    }

    @Test("A service that keeps its outbox and inbox for good runs no sweep, and stays ready")
    func noRetentionNoLoop() async throws {
        try await withTestSystem(
            [.reception],
            configure: {
                $0.retention.outbox = nil
                $0.retention.inbox = nil
            }
        ) { system in
            // A sweep loop that returned at once would be restarted again and again, the service
            // unready while it waits.
            for _ in 0..<20 {
                let ready = try await system.get("/health/ready", via: .reception)
                #expect(ready.status == 200, "\(ready.text)")
            }
        }
    }

    @Test("Reads answered up to SIGTERM are all in the audit trail after the stop", .timeLimit(.minutes(2)))
    func auditedReadsSurviveSigterm() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // A second of draining: requests go on being answered (and audited) after the signal.
        let process = try await HospitalProcess.serve(
            [], dataDirectory: directory, environment: ["HOSPITAL_SHUTDOWN_DELAY_SECONDS": "1"])
        let gateway = try #require(process.url(.gateway))
        let created = try await HTTPResult.send(.POST, gateway, "/receptions", body: Data(#"{"patientName": "홍길동"}"#.utf8))
        let id = try #require(created.json["id"] as? String)
        let answered = Atomic<Int>(0)
        let stopping = Atomic<Bool>(false)
        // Reads without a pause until the server refuses them, across the signal.
        let reader = Task {
            while true {
                guard let response = try? await HTTPResult.send(.GET, gateway, "/receptions/\(id)") else { return }
                if response.status == 200 {
                    answered.add(1, ordering: .relaxed)
                } else if stopping.load(ordering: .relaxed) {
                    return
                }
            }
        }
        try await eventually("some reads", timeout: .seconds(20)) { answered.load(ordering: .relaxed) >= 20 ? true : nil }
        stopping.store(true, ordering: .relaxed)
        #expect(process.terminate() == 0)
        // The process is gone: a request still in flight cannot be answered any more (the client
        // may take its time to notice).
        reader.cancel()
        await reader.value
        let reads = answered.load(ordering: .relaxed)
        let audited = try await TestSystem.count(
            "audit_log", in: directory.appendingPathComponent("audit-reception.sqlite"),
            where: "action LIKE 'GET /receptions/%' AND reception_ids LIKE '%\(id)%' AND outcome = 200")
        // Every read answered is audited; one more may have been answered as the reader was
        // canceled.
        #expect(audited >= reads && audited <= reads + 1, "\(reads) reads answered, \(audited) audited")
    }

    @Test("A stop that cannot write the audit trail's last entries fails, and says so", .timeLimit(.minutes(2)))
    func stopFailsWhenTheTrailCannotBeWritten() async throws {
        let directory = TestSystem.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let errors = directory.appendingPathExtension("stderr")
        defer { try? FileManager.default.removeItem(at: errors) }
        let process = try await HospitalProcess.serve(
            [.reception, .gateway], dataDirectory: directory,
            environment: ["HOSPITAL_LOG_LEVEL": "error"], errorLog: errors)
        let gateway = try #require(process.url(.gateway))
        let created = try await HTTPResult.send(.POST, gateway, "/receptions", body: Data(#"{"patientName": "홍길동"}"#.utf8))
        let id = try #require(created.json["id"] as? String)
        // The trail's file goes away under the running service: reads are still answered, their
        // entries wait in memory, and nothing can write them.
        try FileManager.default.removeItem(at: directory.appendingPathComponent("audit-reception.sqlite"))
        for _ in 0..<5 {
            #expect(try await HTTPResult.send(.GET, gateway, "/receptions/\(id)").status == 200)
        }
        #expect(process.terminate() != 0)
        let log = try String(contentsOf: errors, encoding: .utf8)
        #expect(log.contains("the audit trail could not be written at shutdown: entries lost"))
        #expect(log.contains("reception: audit writer did not finish its work at shutdown"))
    }
}
