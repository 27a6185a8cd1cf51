import Foundation
import Runtime
import Synchronization
import TestSupport
import Testing

/// A real `hospital` process, as an operator would start it.
final class HospitalProcess: Sendable {
    private let process: ChildProcess
    private let output: OutputBuffer

    private init(process: ChildProcess, output: OutputBuffer) {
        self.process = process
        self.output = output
    }

    /// The `hospital` executable built next to the test bundle.
    static var executable: URL {
        if let path = ProcessInfo.processInfo.environment["HOSPITAL_BINARY"] { return URL(fileURLWithPath: path) }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = me.deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("hospital")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return me.deletingLastPathComponent().appendingPathComponent("hospital")
    }

    /// Starts `hospital serve SERVICES` and waits until it reports where it listens.
    static func serve(
        _ services: [ServiceName], dataDirectory: URL, ports: [ServiceName: Int] = [:],
        environment: [String: String] = [:], errorLog: URL? = nil
    ) async throws -> HospitalProcess {
        let process = ChildProcess()
        process.executableURL = executable
        var arguments = ["serve"] + services.map(\.rawValue) + ["--data-dir", dataDirectory.path]
        for service in ServiceName.allCases {
            arguments += ["--\(service.rawValue)-port", String(ports[service] ?? 0)]
        }
        process.arguments = arguments
        // The test run's signing key, where the process looks for it: its data directory. (Not
        // in the environment: a multi-line value there coincided with Process.run segfaulting.)
        try FileManager.default.createDirectory(
            at: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let keyFile = dataDirectory.appendingPathComponent("signing-key.pem")
        if !FileManager.default.fileExists(atPath: keyFile.path) {
            try Data(TestKeys.pem.utf8).write(to: keyFile, options: .atomic)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile.path)
        }
        var env = ProcessInfo.processInfo.environment
        env["HOSPITAL_LOG_LEVEL"] = "warning"
        env["HOSPITAL_RELAY_POLL_MS"] = "50"
        env["HOSPITAL_LOG_POLL_MS"] = "50"
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        if let errorLog {
            _ = FileManager.default.createFile(atPath: errorLog.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: errorLog)
        } else {
            process.standardError = FileHandle.standardError
        }
        let output = OutputBuffer()
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            output.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        try HospitalProcess.launch(process)
        let started = HospitalProcess(process: process, output: output)
        _ = try await eventually("hospital serve \(services.map(\.rawValue)) to start", timeout: .seconds(30)) {
            if !process.isRunning { throw ProcessFailed(output: started.output.text.withLock { $0 }) }
            return started.output.text.withLock { $0.contains("data directory:") } ? true : nil as Bool?
        }
        return started
    }

    /// Where `service` of this process listens, as it printed.
    func url(_ service: ServiceName) -> URL? {
        output.text.withLock { text in
            text.split(separator: "\n").first { $0.hasPrefix("\(service.rawValue) listening on ") }
                .flatMap { URL(string: String($0.dropFirst("\(service.rawValue) listening on ".count))) }
        }
    }

    func port(_ service: ServiceName) -> Int? { url(service)?.port }

    /// Starts `process`, one launch at a time across the test run.
    static func launch(_ process: ChildProcess) throws {
        launching.lock()
        defer { launching.unlock() }
        try process.run()
    }

    private static let launching = NSLock()

    /// SIGKILL: no cleanup, no flush, no goodbye.
    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM, then waits for a graceful exit.
    func terminate() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct ProcessFailed: Error, CustomStringConvertible {
    var output: String
    var description: String { "hospital exited early; it printed: \(output)" }
}

final class OutputBuffer: Sendable {
    let text = Mutex("")
}
