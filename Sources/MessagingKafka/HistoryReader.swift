#if Kafka
import CRdKafka
import Foundation
import Logging
import Messaging

/// Reads a topic from the beginning of every partition up to where it ended when the read
/// began: the machinery behind `KafkaTransport.replay`.
///
/// It assigns partitions itself instead of joining a group, so it commits nothing, disturbs no
/// group and gets every partition. The end of each partition is its high watermark queried at
/// the start; messages published later are not part of this replay.
struct HistoryReader {
    let settings: KafkaSettings
    let logger: Logger

    func replay(topic: String, handler: @escaping @Sendable (IncomingMessage) async throws -> Void) async throws {
        let properties =
            baseProperties(settings) + [
                // assign() and consumer_poll need a group handle; this group never joins or commits.
                ("group.id", "\(settings.clientId).replay.\(UUID().uuidString)"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                // Tells us when a partition has nothing more, even if its last offsets are gaps.
                ("enable.partition.eof", "true"),
            ] + settings.extraProperties(producer: false)
        let client = try SerialClient(
            name: "replay.\(topic)", properties: properties, context: ClientContext(logger: logger))
        do {
            try await read(topic: topic, client: client, handler: handler)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }

    private func read(
        topic: String, client: SerialClient, handler: @escaping @Sendable (IncomingMessage) async throws -> Void
    ) async throws {
        let requestTimeout = settings.requestTimeout.wholeMilliseconds(minimum: 1)
        // Where each non-empty partition ends now.
        let ends: [Int32: Int64] = try await client.run { rk in
            var ends: [Int32: Int64] = [:]
            for partition in 0..<Int32(try partitionCount(rk, topic: topic, timeout: requestTimeout)) {
                var low: Int64 = 0
                var high: Int64 = 0
                try rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, requestTimeout)
                    .check("watermarks of \(topic)[\(partition)]")
                // Retention has deleted the partition's beginning: a history without it would
                // rebuild a read model that silently lacks the oldest visits. Refuse instead.
                guard low == 0 else {
                    throw KafkaError.client(
                        "\(topic)[\(partition)] no longer holds its whole history (it starts at \(low))")
                }
                if high > low { ends[partition] = high }
            }
            return ends
        }
        guard !ends.isEmpty else { return }
        try await client.run { rk in
            try withPartitionList(ends.keys.sorted().map { (topic, $0, LogicalOffset.beginning) }) {
                list in
                try rd_kafka_assign(rk, list).check("assigning \(topic)")
            }
        }

        var unfinished = Set(ends.keys)
        let pollTimeout = settings.pollInterval.wholeMilliseconds(minimum: 1)
        // Without progress for this long (brokers away), give up rather than hold a rebuild open.
        let patience = settings.requestTimeout * 3
        var lastProgress = ContinuousClock.now
        while !unfinished.isEmpty {
            try Task.checkCancellation()
            guard ContinuousClock.now - lastProgress < patience else {
                throw KafkaError.client("replaying \(topic) made no progress for \(patience)", isRetriable: true)
            }
            switch try await client.run({ pollOnce($0, timeout: pollTimeout) }) {
            case .idle:
                continue
            case .endOfPartition(let partition, let offset):
                if let end = ends[partition], offset >= end { unfinished.remove(partition) }
            case .failed(let error):
                if let fatal = client.client.fatalError ?? (error.isFatal ? error : nil) { throw fatal }
                logger.warning("error while replaying", metadata: ["topic": "\(topic)", "error": "\(error)"])
            case .message(let message):
                lastProgress = .now
                guard let end = ends[message.partition], unfinished.contains(message.partition) else { continue }
                if message.offset < end { try await handler(message) }
                if message.offset + 1 >= end { unfinished.remove(message.partition) }
            }
        }
    }
}

#endif
