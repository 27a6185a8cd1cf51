/// The one way a test waits for something another task or process does: poll a condition
/// against a deadline, never sleep a guessed time. The deadlines are generous (CI runs every
/// suite at once on two cores); a wait ends soon after its condition holds.

/// Waits for `probe` to return a value, polling first every `interval`, then less often the
/// longer it waits (up to every `slowest`), until `timeout`; then throws `TimedOut` naming
/// `what`. The widening keeps a long wait from being load of its own: fifty visits polled every
/// 25 ms are 2,000 requests a second on a two-core machine that is meant to be serving them.
@discardableResult
public func eventually<T>(
    _ what: String, timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(25),
    slowest: Duration = .milliseconds(250), _ probe: () async throws -> T?
) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    var wait = interval
    while true {
        if let value = try await probe() { return value }
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what, timeout: timeout) }
        try await Task.sleep(for: wait)
        wait = min(max(wait * 3 / 2, wait + .milliseconds(1)), max(interval, slowest))
    }
}

/// Waits until `condition` holds (see `eventually`).
public func waitUntil(
    _ what: String, timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async throws {
    _ = try await eventually(what, timeout: timeout, every: interval) { try await condition() ? true : nil }
}

public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public var timeout: Duration
    public var description: String { "timed out after \(timeout) waiting for \(what)" }
}
