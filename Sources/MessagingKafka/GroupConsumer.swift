#if Kafka
import CRdKafka
import Foundation
import Logging
import Messaging
import Synchronization

/// A topic and one of its partitions (the transport-neutral type, under the name the Kafka
/// API used first).
public typealias KafkaTopicPartition = TopicPartition

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
    /// - Parameter positions: where to start each assigned partition (see `EventSubscriber`);
    ///   nil to start at the group's committed offsets.
    static func open(
        topics: [String], group: String, settings: KafkaSettings, logger: Logger, positions: StartPositions?,
        onRebalance: (@Sendable (RebalanceEvent) -> Void)?
    ) async throws -> GroupConsumer {
        let consumer = try GroupConsumer(
            group: group, settings: settings, logger: logger, positions: positions, onRebalance: onRebalance)
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
        group: String, settings: KafkaSettings, logger: Logger, positions: StartPositions?,
        onRebalance: (@Sendable (RebalanceEvent) -> Void)?
    ) throws(KafkaError) {
        var logger = logger
        logger[metadataKey: "kafka.group"] = "\(group)"
        self.logger = logger
        self.settings = settings
        let properties = Self.properties(group: group, settings: settings)
        client = try SerialClient(
            name: group, properties: properties,
            context: ClientContext(logger: logger, positions: positions, onRebalance: onRebalance),
            configure: { rd_kafka_conf_set_rebalance_cb($0, rebalanceCallback) })
    }

    /// The librdkafka configuration of a group member, in the order it is applied.
    static func properties(group: String, settings: KafkaSettings) -> [(String, String)] {
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
            // A member that dies is noticed after this long; one that restarts with the same
            // instance id (static membership) takes its partitions back at once.
            ("session.timeout.ms", "\(settings.sessionTimeout.wholeMilliseconds(minimum: 1))"),
            ("heartbeat.interval.ms", "\(max(settings.sessionTimeout.wholeMilliseconds(minimum: 3) / 3, 1))"),
            // A rebalance moves only the partitions that change owner; the others keep flowing.
            ("partition.assignment.strategy", "cooperative-sticky"),
        ] + (settings.instanceId.map { [("group.instance.id", $0)] } ?? [])
        + settings.extraProperties(producer: false)
    }

    /// Delivers messages to `handler` until the task is canceled, then leaves the group.
    func run(_ handler: @escaping @Sendable ([IncomingMessage]) async throws -> Void) async throws {
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

    private func loop(_ handler: @escaping @Sendable ([IncomingMessage]) async throws -> Void) async throws {
        let timeout = settings.pollInterval.wholeMilliseconds(minimum: 1)
        let batchSize = max(1, settings.batchSize)
        var backoff = settings.retryBackoff
        var uncommitted = false
        while !Task.isCancelled {
            let polled = try await client.run { pollBatch($0, timeout: timeout, max: batchSize) }
            // A fatal error reaches us through the error callback, not as a polled message.
            if let fatal = client.client.fatalError { throw fatal }
            // Partitions were assigned but where to start them is unknown: handling anything now
            // could skip what the consumer has not applied. Start over.
            if let failure = client.client.context.takeAssignmentFailure() { throw failure }
            for error in polled.errors {
                if error.isFatal { throw error }
                // E.g. a topic that does not exist yet, or a broker that went away: librdkafka
                // keeps trying by itself.
                logger.warning("consumer error", metadata: ["error": "\(error)"])
            }
            guard !polled.messages.isEmpty else {
                // Caught up: commit now rather than at the next timer tick, so a rebalance or a
                // crash that follows repeats as little as possible.
                if uncommitted {
                    uncommitted = false
                    await commitStoredOffsets(async: true)
                }
                continue
            }
            do {
                try await handler(polled.messages)
            } catch {
                if Task.isCancelled { return }
                logger.warning(
                    "handler failed; the messages will be delivered again",
                    metadata: ["count": "\(polled.messages.count)", "error": "\(loggable(error))"])
                try await seek(toFirstOf: polled.messages)
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, settings.maxRetryBackoff)
                continue
            }
            backoff = settings.retryBackoff
            try await store(polled.messages)
            uncommitted = true
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

    /// Marks `messages` handled: each partition's next offset becomes its next commit. Kafka's
    /// committed offsets are only a hint (where a consumer without positions of its own starts).
    private func store(_ messages: [IncomingMessage]) async throws {
        let next = Dictionary(messages.map { ($0.topicPartition, $0.offset + 1) }, uniquingKeysWith: max)
        let failed = try await client.run { rk in
            withPartitionList(next.map { ($0.key.topic, $0.key.partition, $0.value) }) { list in
                let err = rd_kafka_offsets_store(rk, list)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { return [err] }
                return entries(of: list).map(\.error).filter { $0 != RD_KAFKA_RESP_ERR_NO_ERROR }
            }
        }
        if let err = failed.first {
            // Only if a partition was taken from us meanwhile (e.g. this member was too slow
            // and left the group): its new owner starts from its own recorded position.
            logger.notice("could not store the offsets of handled messages", metadata: ["error": "\(KafkaError(err))"])
        }
    }

    /// Rewinds each partition of `messages` to its first one there, discarding what was
    /// prefetched after it, so the next polls return them again.
    private func seek(toFirstOf messages: [IncomingMessage]) async throws {
        let first = Dictionary(messages.map { ($0.topicPartition, $0.offset) }, uniquingKeysWith: min)
        let timeout = settings.requestTimeout.wholeMilliseconds(minimum: 1)
        try await client.run { rk in
            try withPartitionList(first.map { ($0.key.topic, $0.key.partition, $0.value) }) { list in
                if let error = rd_kafka_seek_partitions(rk, list, timeout) { throw KafkaError(consuming: error) }
                for entry in entries(of: list) { try entry.error.check("seeking back to \(entry.offset)") }
            }
        }
        // If the seek failed, this throws and the consumer closes: whoever consumes next starts
        // from the recorded position, at or before these messages.
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
            if let positions = context.positions, let partitions {
                // Start each partition where the consumer's own records say, not where the group's
                // committed offset does: they differ after a restore from a backup, and the
                // consumer's records are the ones that commit with its effects.
                switch resolve(positions, changed) {
                case .success(let known):
                    for index in 0..<Int(partitions.pointee.cnt) {
                        let element = partitions.pointee.elems[index]
                        let partition = TopicPartition(topic: String(cString: element.topic), partition: element.partition)
                        partitions.pointee.elems[index].offset = known[partition] ?? LogicalOffset.beginning
                    }
                case .failure(let error):
                    context.recordAssignmentFailure(
                        .client("reading the consumer's positions failed: \(loggable(error))"))
                }
            }
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

/// Asks `positions` from librdkafka's callback thread, which must wait for the answer: the
/// assignment has to carry its start offsets before the callback returns. The wait blocks only
/// the consumer's own serial queue, never Swift's cooperative pool, and `positions` reads the
/// service's database, which never needs that queue.
private func resolve(
    _ positions: @escaping StartPositions, _ partitions: [TopicPartition]
) -> Result<[TopicPartition: Int64], any Error> {
    let answer = Mutex<Result<[TopicPartition: Int64], any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let result: Result<[TopicPartition: Int64], any Error>
        do { result = .success(try await positions(partitions)) } catch { result = .failure(error) }
        answer.withLock { $0 = result }
        done.signal()
    }
    done.wait()
    return answer.withLock { $0! }
}

#endif
