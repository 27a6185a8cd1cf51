import Contracts
import FluentKit
import Foundation
import Messaging
import Prometheus
import ServiceKit
import Synchronization

/// The messaging values an operator watches, read when Prometheus scrapes: events waiting in
/// the outbox and the age of the oldest, dead letters waiting, and the consumer group's lag
/// (events behind the end of the log or topic).
struct MessagingGauges {
    let metrics: ServiceMetrics
    let relay: OutboxRelay
    let consumer: EventConsumer?
    let store: ServiceStore
    let transport: any EventTransport

    func install() {
        let waiting = metrics.gauge("hospital_outbox_waiting_events", help: "Events in the outbox not yet published.")
        let oldest = metrics.gauge(
            "hospital_outbox_oldest_age_seconds", help: "Age of the oldest event not yet published (0: none waits).")
        let group = consumer?.group
        let letters = group.map {
            metrics.gauge(
                "hospital_dead_letters_waiting", help: "Dead letters not yet replayed.", labels: [("consumer_group", $0)])
        }
        let lag = group.map { Self.lagGauge(metrics, group: $0) }
        // The other groups' lag as the broker knows it (Kafka's committed offsets): a group
        // whose processes are all gone is still seen falling behind, from every other process.
        let others = ServiceName.allCases.filter { $0 != .gateway }.map(\.rawValue).filter { $0 != group }
        let othersLag = Dictionary(
            uniqueKeysWithValues: others.map { other in (other, LazyGauge { [metrics] in Self.lagGauge(metrics, group: other) }) })
        let ends = transport as? any EventLogEnds
        metrics.onScrape { [relay, consumer, store] _ in
            if let count = try? await relay.backlog() { waiting.set(Double(count)) }
            if let first = try? await relay.oldestWaiting() as Date?? {
                oldest.set(first.map { max(0, Date().timeIntervalSince($0)) } ?? 0)
            }
            if let letters,
                let count = try? await DeadLetter.query(on: store.database).filter(\.$replayedAt == nil).count()
            {
                letters.set(Double(count))
            }
            guard let ends, let end = try? await ends.endOffsets(topic: Topics.visitEvents) else { return }
            if let consumer, let lag, let positions = try? await consumer.positions() {
                lag.set(Double(Self.behind(end, positions.reduce(into: [:]) { $0[$1.key.partition] = $1.value })))
            }
            for (other, gauge) in othersLag {
                let positions: [Int32: Int64]?
                do {
                    positions = try await ends.groupPositions(topic: Topics.visitEvents, group: other)
                } catch {
                    continue
                }
                guard let positions else { return }  // this transport keeps no group positions
                gauge.value.set(Double(Self.behind(end, positions)))
            }
        }
    }

    static func lagGauge(_ metrics: ServiceMetrics, group: String) -> Gauge {
        metrics.gauge(
            "hospital_consumer_lag_events", help: "Events on the topic the consumer group has not yet taken.",
            labels: [("consumer_group", group)])
    }

    /// Events between each partition's end and the group's position there.
    static func behind(_ end: [Int32: Int64], _ positions: [Int32: Int64]) -> Int64 {
        end.reduce(0) { $0 + max(0, $1.value - (positions[$1.key] ?? 0)) }
    }
}

/// A gauge registered on first use, so a transport without group positions exports none.
final class LazyGauge: Sendable {
    private let make: @Sendable () -> Gauge
    private let made = Mutex<Gauge?>(nil)

    init(_ make: @escaping @Sendable () -> Gauge) { self.make = make }

    var value: Gauge {
        made.withLock { made in
            if let made { return made }
            let gauge = make()
            made = gauge
            return gauge
        }
    }
}
