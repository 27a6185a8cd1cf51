#if Kafka
import CRdKafka
import Foundation
import Logging
import Messaging

/// A topic and one of its partitions.
public struct KafkaTopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A change of the partitions a group consumer owns.
public enum RebalanceEvent: Sendable, Equatable {
    case assigned([KafkaTopicPartition])
    case revoked([KafkaTopicPartition])
}

/// One member of a consumer group: the machinery behind `KafkaTransport.consume`.
///
/// The handler runs in the caller's task; the handle's blocking calls run on its serial queue.
/// Because the consumer is polled only after the previous handler returned and its offset was
/// stored, a rebalance (which librdkafka runs inside the poll) never happens in the middle of
/// a handler: the revoke callback commits every handled offset before another member can
/// take the partition, so nothing is lost and, as long as that commit succeeds, nothing is
/// handled twice. (Apache Kafka accepts such commits while a rebalance is being prepared;
/// librdkafka's mock cluster refuses every commit from the moment another member asks to join,
/// so there a rebalance repeats what was handled since the last commit.)
final class GroupConsumer: Sendable {
    private let client: SerialClient
    private let settings: KafkaSettings
    private let logger: Logger

    /// Creates the member and subscribes it to `topics`; it joins the group on its first poll.
    static func open(
        topics: [String], group: String, settings: KafkaSettings, logger: Logger,
        onRebalance: (@Sendable (RebalanceEvent) -> Void)?
    ) async throws -> GroupConsumer {
        let consumer = try GroupConsumer(group: group, settings: settings, logger: logger, onRebalance: onRebalance)
        do {
            try await consumer.client.run { rk in
                try withPartitionList(topics.map { ($0, -1, LogicalOffset.invalid) }) { list in
                    try rd_kafka_subscribe(rk, list).check("subscribing to \(topics)")
                }
            }
        } catch {
            await consumer.client.close()
            throw error
        }
        return consumer
    }

    private init(
        group: String, settings: KafkaSettings, logger: Logger, onRebalance: (@Sendable (RebalanceEvent) -> Void)?
    ) throws(KafkaError) {
        var logger = logger
        logger[metadataKey: "kafka.group"] = "\(group)"
        self.logger = logger
        self.settings = settings
        let properties =
            baseProperties(settings) + [
                ("group.id", group),
                // Offsets are stored by us after a handler succeeded, never by librdkafka when it
                // hands out a message; the stored ones are committed by the timer, whenever the
                // consumer has caught up, on revoke and on close.
                ("enable.auto.offset.store", "false"),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "\(settings.commitInterval.wholeMilliseconds(minimum: 1))"),
                // A new group starts with the oldest retained message, not only new ones.
                ("auto.offset.reset", "earliest"),
            ] + settings.extraProperties(producer: false)
        client = try SerialClient(
            name: group, properties: properties, context: ClientContext(logger: logger, onRebalance: onRebalance),
            configure: { rd_kafka_conf_set_rebalance_cb($0, rebalanceCallback) })
    }

    /// Delivers messages to `handler` until the task is canceled, then leaves the group.
    func run(_ handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        var failure: (any Error)?
        do {
            try await loop(handler)
        } catch  where Task.isCancelled || error is CancellationError {
            // Stopping: a message whose handler was interrupted was not stored and comes again.
        } catch {
            failure = error
        }
        // Commit while still a member in good standing: once this member leaves, the group
        // rebalances, and a broker may refuse commits until that is over.
        await commitStoredOffsets()
        await client.close()
        if let failure { throw failure }
    }

    private func loop(_ handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        let timeout = settings.pollInterval.wholeMilliseconds(minimum: 1)
        var backoff = settings.retryBackoff
        var uncommitted = false
        while !Task.isCancelled {
            let outcome = try await client.run { pollOnce($0, timeout: timeout) }
            // A fatal error reaches us through the error callback, not as a polled message.
            if let fatal = client.client.fatalError { throw fatal }
            switch outcome {
            case .idle, .endOfPartition:
                // Caught up: commit now rather than at the next timer tick, so a rebalance or a
                // crash that follows repeats as little as possible.
                if uncommitted {
                    uncommitted = false
                    await commitStoredOffsets(async: true)
                }
            case .failed(let error):
                if error.isFatal { throw error }
                // E.g. a topic that does not exist yet, or a broker that went away: librdkafka
                // keeps trying by itself.
                logger.warning("consumer error", metadata: ["error": "\(error)"])
            case .message(let message):
                do {
                    try await handler(message)
                } catch {
                    if Task.isCancelled { return }
                    logger.warning(
                        "handler failed; the message will be delivered again",
                        metadata: [
                            "topic": "\(message.topic)", "partition": "\(message.partition)",
                            "offset": "\(message.offset)", "error": "\(loggable(error))",
                        ])
                    try await seek(to: message)
                    try await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, settings.maxRetryBackoff)
                    continue
                }
                backoff = settings.retryBackoff
                try await store(message)
                uncommitted = true
            }
        }
    }

    /// Commits the offsets stored so far (all of this member's partitions). A failure is only
    /// logged: the offsets stay stored and the next commit (timer, revoke, close) carries them.
    private func commitStoredOffsets(async: Bool = false) async {
        let err = try? await client.run { rk in rd_kafka_commit(rk, nil, async ? 1 : 0) }
        if let err, err != RD_KAFKA_RESP_ERR_NO_ERROR, err != RD_KAFKA_RESP_ERR__NO_OFFSET {
            logger.notice("committing offsets failed", metadata: ["error": "\(KafkaError(err))"])
        }
    }

    /// Marks `message` handled: its successor's offset becomes the partition's next commit.
    private func store(_ message: IncomingMessage) async throws {
        let err = try await client.run { rk in
            withPartitionList([(message.topic, message.partition, message.offset + 1)]) { list in
                let err = rd_kafka_offsets_store(rk, list)
                return err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : entries(of: list).first?.error ?? err
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Only if the partition was taken from us meanwhile (e.g. this member was too slow
            // and left the group): its new owner handles the message again, which the inbox drops.
            logger.warning(
                "could not store the offset of a handled message",
                metadata: [
                    "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
                    "error": "\(KafkaError(err))",
                ])
        }
    }

    /// Rewinds the partition to `message`, discarding what was prefetched after it, so the next
    /// poll of that partition returns it again.
    private func seek(to message: IncomingMessage) async throws {
        let timeout = settings.requestTimeout.wholeMilliseconds(minimum: 1)
        try await client.run { rk in
            try withPartitionList([(message.topic, message.partition, message.offset)]) { list in
                if let error = rd_kafka_seek_partitions(rk, list, timeout) { throw KafkaError(consuming: error) }
                if let err = entries(of: list).first?.error { try err.check("seeking back to \(message.offset)") }
            }
        }
        // If the seek failed, this throws and the consumer closes: the group's committed offset
        // is still at or before this message, so whoever consumes next gets it again.
    }
}

/// Group rebalances, run by librdkafka inside `rd_kafka_consumer_poll` on the consumer's
/// serial queue, so never while a handler of this consumer is running.
private let rebalanceCallback:
    @convention(c) (
        OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
        UnsafeMutableRawPointer?
    ) -> Void = { rk, reason, partitions, _ in
        guard let rk, let context = ClientContext.of(rk) else { return }
        let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
        let changed = entries(of: partitions).map { KafkaTopicPartition(topic: $0.topic, partition: $0.partition) }
        var failure: KafkaError?
        switch reason {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                failure = rd_kafka_incremental_assign(rk, partitions).map { KafkaError(consuming: $0) }
            } else {
                let err = rd_kafka_assign(rk, partitions)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { failure = KafkaError(err) }
            }
            context.logger.info("partitions assigned", metadata: ["partitions": "\(changed)"])
            context.onRebalance?(.assigned(changed))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            // Commit what was handled before another member takes over, so it starts right
            // after it. (If the partitions were lost, the commit fails and they come again.)
            let err = rd_kafka_commit(rk, nil, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                context.logger.warning(
                    "commit on revoke failed; the new owner may handle some messages again",
                    metadata: ["error": "\(KafkaError(err))"])
            }
            if cooperative {
                failure = rd_kafka_incremental_unassign(rk, partitions).map { KafkaError(consuming: $0) }
            } else {
                let err = rd_kafka_assign(rk, nil)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { failure = KafkaError(err) }
            }
            context.logger.info("partitions revoked", metadata: ["partitions": "\(changed)"])
            context.onRebalance?(.revoked(changed))
        default:
            // A failed rebalance: drop everything; the group assigns again.
            context.logger.warning("rebalance failed", metadata: ["error": "\(KafkaError(reason))"])
            _ = rd_kafka_assign(rk, nil)
            context.onRebalance?(.revoked(changed))
        }
        if let failure {
            context.logger.error("applying a rebalance failed", metadata: ["error": "\(failure)"])
        }
    }

#endif
