import Foundation
import ServiceKit
import Synchronization
import Testing

@Suite("Live views share one frame per view and change")
struct LiveFrameTests {
    /// Counts the reads of each view; a read takes a while, as a query does.
    final class Reads: Sendable {
        let counts = Mutex<[String: Int]>([:])
        let failing = Mutex(false)

        func make(_ view: String) -> @Sendable () async throws -> LiveStream.Snapshot {
            { [self] in
                counts.withLock { $0[view, default: 0] += 1 }
                try await Task.sleep(for: .milliseconds(200))
                if failing.withLock({ $0 }) { throw CancellationError() }
                return .init(body: Data("{\"view\":\"\(view)\"}".utf8), visits: [])
            }
        }

        func count(_ view: String) -> Int { counts.withLock { $0[view, default: 0] } }
    }

    @Test func oneReadPerViewAndChange() async throws {
        let streams = LiveStreams()
        let reads = Reads()
        // A hundred streams looking at once: one read each view, the same frame for all of them.
        let frames = try await withThrowingTaskGroup(of: LiveStream.Frame.self) { group in
            for index in 0..<100 {
                let view = index % 4 == 0 ? "외과" : "내과"
                group.addTask { try await streams.frame(of: view, event: "queue", make: reads.make(view)) }
            }
            return try await group.reduce(into: [LiveStream.Frame]()) { $0.append($1) }
        }
        #expect(reads.count("내과") == 1)
        #expect(reads.count("외과") == 1)
        #expect(Set(frames.map(\.id)).count == 2)

        // The same view under another event is another frame.
        _ = try await streams.frame(of: "내과", event: "display", make: reads.make("내과"))
        #expect(reads.count("내과") == 2)

        // A change: the next look reads again, once.
        streams.changed()
        async let a = streams.frame(of: "내과", event: "queue", make: reads.make("내과"))
        async let b = streams.frame(of: "내과", event: "queue", make: reads.make("내과"))
        _ = try await (a, b)
        #expect(reads.count("내과") == 3)

        // A failed read is not kept: the next look asks again.
        streams.changed()
        reads.failing.withLock { $0 = true }
        await #expect(throws: CancellationError.self) {
            try await streams.frame(of: "외과", event: "queue", make: reads.make("외과"))
        }
        reads.failing.withLock { $0 = false }
        _ = try await streams.frame(of: "외과", event: "queue", make: reads.make("외과"))
        #expect(reads.count("외과") == 3)
    }
}
