import Contracts
import Foundation
import SharedKernel

// Shared fixtures for the domain tests: fixed clock, fixed identifiers, envelopes.

/// 2027-01-15T08:00:00Z, the fixed "now" of every test.
let t0 = Date(timeIntervalSince1970: 1_800_000_000)

/// `t0` plus `seconds`.
func at(_ seconds: TimeInterval) -> Date { t0.addingTimeInterval(seconds) }

/// A fixed, readable UUID: `id(7)` is 00000000-0000-0000-0000-000000000007.
func id(_ n: Int) -> UUID {
    let digits = String(n)
    return UUID(uuidString: "00000000-0000-0000-0000-" + String(repeating: "0", count: 12 - digits.count) + digits)!
}

let receptionId = id(1)
let diagnosisId = id(2)

/// An envelope of visit `receptionId` stamped `seconds` after `t0`.
func envelope(
    _ event: VisitEvent, at seconds: TimeInterval, eventId: UUID = UUID(), reception: UUID = receptionId,
    producer: String = "test", traceparent: String? = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    actor: String = "tester"
) -> EventEnvelope {
    EventEnvelope(
        eventId: eventId, occurredAt: at(seconds), receptionId: reception, producer: producer,
        traceparent: traceparent, actor: actor, event: event)
}

/// The field names of a validation failure, in the order they were reported.
func fieldNames(_ failure: ValidationFailure) -> [String] { failure.fields.map(\.field) }

/// A deterministic pseudo-random generator (SplitMix64), so shuffled histories are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Every ordering of `items` (n! of them; keep n small).
func permutations<T>(_ items: [T]) -> [[T]] {
    guard items.count > 1 else { return [items] }
    var result: [[T]] = []
    for index in items.indices {
        var rest = items
        let head = rest.remove(at: index)
        for tail in permutations(rest) { result.append([head] + tail) }
    }
    return result
}
