import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, for the tests: the subset of Foundation's
/// `Process` they use. Foundation's `Process.run` on Linux crashed in CI (a segfault in memcpy
/// inside `run`, three times, with the launches already serialized) when the test process held
/// many open files; this one hands the child only its standard streams (every other descriptor
/// is closed in the child by `posix_spawn_file_actions_addclosefrom_np`).
final class ChildProcess: @unchecked Sendable {
    var executableURL: URL?
    var arguments: [String] = []
    var environment: [String: String]?
    var standardInput: Pipe?
    /// A `Pipe` or a `FileHandle`; nil inherits the test process's.
    var standardOutput: Any?
    var standardError: Any?
    private(set) var processIdentifier: pid_t = 0
    private let status = Mutex<Int32?>(nil)

    func run() throws {
        guard let executableURL else { throw SpawnFailed(reason: "no executable") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let input = standardInput {
            posix_spawn_file_actions_adddup2(&actions, input.fileHandleForReading.fileDescriptor, 0)
        }
        for (target, stream) in [(Int32(1), standardOutput), (Int32(2), standardError)] {
            if let pipe = stream as? Pipe {
                posix_spawn_file_actions_adddup2(&actions, pipe.fileHandleForWriting.fileDescriptor, target)
            } else if let handle = stream as? FileHandle {
                if handle === FileHandle.nullDevice {
                    posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
                } else {
                    posix_spawn_file_actions_adddup2(&actions, handle.fileDescriptor, target)
                }
            }
        }
        // glibc 2.34+; not in Swift's Glibc module, so looked up by name.
        guard let closeFrom = Self.addCloseFrom else { throw SpawnFailed(reason: "no posix_spawn_file_actions_addclosefrom_np") }
        _ = closeFrom(&actions, 3)
        let argv = ([executableURL.path] + arguments).map { strdup($0) } + [nil]
        let envp = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executableURL.path, &actions, nil, argv, envp)
        guard result == 0 else { throw SpawnFailed(reason: "posix_spawn \(executableURL.path): \(result)") }
        processIdentifier = pid
        // The child's ends belong to the child: without closing ours, a reader never sees EOF.
        if let input = standardInput { try? input.fileHandleForReading.close() }
        for stream in [standardOutput, standardError] {
            if let pipe = stream as? Pipe { try? pipe.fileHandleForWriting.close() }
        }
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    private static let addCloseFrom: AddCloseFrom? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    var isRunning: Bool {
        if status.withLock({ $0 }) != nil { return false }
        var raw: Int32 = 0
        let reaped = waitpid(processIdentifier, &raw, WNOHANG)
        guard reaped == processIdentifier else { return reaped == 0 }
        record(raw)
        return false
    }

    func terminate() { kill(processIdentifier, SIGTERM) }

    func waitUntilExit() {
        while status.withLock({ $0 }) == nil {
            var raw: Int32 = 0
            let reaped = waitpid(processIdentifier, &raw, 0)
            if reaped == processIdentifier {
                record(raw)
            } else if reaped < 0, errno != EINTR {
                status.withLock { $0 = $0 ?? -1 }
            }
        }
    }

    /// The exit status, or 128 + the signal that ended it.
    var terminationStatus: Int32 { status.withLock { $0 } ?? -1 }

    private func record(_ raw: Int32) {
        let signal = raw & 0x7F
        status.withLock { $0 = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal }
    }
}

struct SpawnFailed: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}
