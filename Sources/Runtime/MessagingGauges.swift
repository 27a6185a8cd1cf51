import Contracts
import FluentKit
import Foundation
import Messaging
import ServiceKit

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
        let lag = group.map {
            metrics.gauge(
                "hospital_consumer_lag_events", help: "Events on the topic the consumer group has not yet taken.",
                labels: [("consumer_group", $0)])
        }
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
            if let consumer, let lag, let ends,
                let positions = try? await consumer.positions(),
                let end = try? await ends.endOffsets(topic: Topics.visitEvents)
            {
                var behind: Int64 = 0
                for (partition, next) in end {
                    let at = positions[TopicPartition(topic: Topics.visitEvents, partition: partition)] ?? 0
                    behind += max(0, next - at)
                }
                lag.set(Double(behind))
            }
        }
    }
}
