#if Kafka
import CRdKafka
import Foundation
import Messaging

/// A consumer handle that is only ever touched from its own serial queue.
///
/// librdkafka's consumer calls block (poll, commit, seek, close), and its callbacks (rebalance,
/// errors) run inside them. Running each call as one job on a private serial queue keeps the
/// blocking off Swift's cooperative pool and makes that queue the handle's single owner, so
/// there is never a second caller, not even a callback, in the middle of one.
final class SerialClient: @unchecked Sendable {
    let client: ClientHandle
    private let queue: DispatchQueue
    /// Touched on `queue` only.
    private var isClosed = false

    init(
        name: String, properties: [(String, String)], context: ClientContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        client = try ClientHandle(
            kind: RD_KAFKA_CONSUMER, properties: properties, context: context, configure: configure)
        queue = DispatchQueue(label: "kafka-consumer.\(name)")
        // Errors and logs queued on the main queue are then served by consumer_poll as well.
        _ = rd_kafka_poll_set_consumer(client.pointer)
    }

    deinit {
        // The owner should have awaited close(); if not, do it now, blocking this thread.
        if !isClosed { Self.shutDown(client) }
    }

    /// Runs `body` with the handle on the serial queue.
    func run<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                guard !self.isClosed else {
                    return continuation.resume(throwing: KafkaError.client("the consumer is closed"))
                }
                continuation.resume(with: Result { try body(self.client.pointer) })
            }
        }
    }

    /// Leaves the group (committing stored offsets through the revoke callback) and destroys
    /// the handle.
    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if !self.isClosed {
                    self.isClosed = true
                    Self.shutDown(self.client)
                }
                continuation.resume()
            }
        }
    }

    private static func shutDown(_ client: ClientHandle) {
        let err = rd_kafka_consumer_close(client.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            client.context.logger.warning("closing the consumer failed", metadata: ["error": "\(KafkaError(err))"])
        }
        client.destroy()
    }
}

/// What one consumer poll returned.
enum PollOutcome: Sendable {
    case message(IncomingMessage)
    /// Nothing arrived within the poll timeout.
    case idle
    /// The consumer reached the end of a partition (only with `enable.partition.eof`).
    case endOfPartition(partition: Int32, offset: Int64)
    case failed(KafkaError)
}

/// Polls once for at most `timeout` milliseconds; the message is copied out and destroyed.
func pollOnce(_ rk: OpaquePointer, timeout: Int32) -> PollOutcome {
    guard let message = rd_kafka_consumer_poll(rk, timeout) else { return .idle }
    defer { rd_kafka_message_destroy(message) }
    let m = message.pointee
    switch m.err {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        let key = m.key.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: m.key_len), as: UTF8.self) }
        let value = m.payload.map { Data(bytes: $0, count: m.len) } ?? Data()
        return .message(
            IncomingMessage(
                topic: String(cString: rd_kafka_topic_name(m.rkt)), partition: m.partition, offset: m.offset, key: key,
                value: value))
    case RD_KAFKA_RESP_ERR__PARTITION_EOF:
        return .endOfPartition(partition: m.partition, offset: m.offset)
    default:
        return .failed(KafkaError(m.err, detail: String(cString: rd_kafka_message_errstr(message))))
    }
}

/// What one batch of polls returned.
struct PolledBatch: Sendable {
    var messages: [IncomingMessage] = []
    var errors: [KafkaError] = []
}

/// Waits up to `timeout` milliseconds for a first message, then takes what is already fetched
/// without waiting, up to `max` messages.
func pollBatch(_ rk: OpaquePointer, timeout: Int32, max: Int) -> PolledBatch {
    var batch = PolledBatch()
    var wait = timeout
    while batch.messages.count < max {
        switch pollOnce(rk, timeout: wait) {
        case .idle: return batch
        case .endOfPartition: break
        case .failed(let error):
            batch.errors.append(error)
            if error.isFatal { return batch }
        case .message(let message): batch.messages.append(message)
        }
        wait = 0
    }
    return batch
}

/// The offsets librdkafka uses as "where to start".
enum LogicalOffset {
    static let beginning: Int64 = -2  // RD_KAFKA_OFFSET_BEGINNING
    static let invalid: Int64 = -1001  // RD_KAFKA_OFFSET_INVALID: nothing committed
}

/// Builds an `rd_kafka_topic_partition_list_t`, hands it to `body`, and destroys it after.
func withPartitionList<T>(
    _ entries: [(topic: String, partition: Int32, offset: Int64)],
    _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws -> T
) rethrows -> T {
    let list = rd_kafka_topic_partition_list_new(Int32(entries.count))!
    defer { rd_kafka_topic_partition_list_destroy(list) }
    for entry in entries {
        rd_kafka_topic_partition_list_add(list, entry.topic, entry.partition).pointee.offset = entry.offset
    }
    return try body(list)
}

/// The entries of a partition list librdkafka handed us.
func entries(
    of list: UnsafePointer<rd_kafka_topic_partition_list_t>?
) -> [(topic: String, partition: Int32, offset: Int64, error: rd_kafka_resp_err_t)] {
    guard let list, let elements = list.pointee.elems else { return [] }
    return (0..<Int(list.pointee.cnt)).map { index in
        let element = elements[index]
        return (String(cString: element.topic), element.partition, element.offset, element.err)
    }
}

/// The number of partitions of `topic`, or 0 if the cluster does not know it.
///
/// It asks for the metadata of all topics: a request naming the topic would make a broker
/// that auto-creates topics (librdkafka's mock cluster always does) create it with defaults.
func partitionCount(_ rk: OpaquePointer, topic: String, timeout: Int32) throws(KafkaError) -> Int {
    var metadata: UnsafePointer<rd_kafka_metadata>?
    try rd_kafka_metadata(rk, 1, nil, &metadata, timeout).check("metadata of \(topic)")
    defer { rd_kafka_metadata_destroy(metadata) }
    guard let metadata, let topics = metadata.pointee.topics else { return 0 }
    for described in UnsafeBufferPointer(start: topics, count: Int(metadata.pointee.topic_cnt))
    where String(cString: described.topic) == topic {
        switch described.err {
        case RD_KAFKA_RESP_ERR_NO_ERROR: return Int(described.partition_cnt)
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: return 0
        case let err: throw KafkaError(err, detail: "metadata of \(topic)")
        }
    }
    return 0
}

#endif
