#if Kafka
import CRdKafka
import Foundation
import Logging
import Synchronization

/// Cluster administration: a short-lived handle of its own per call, so it can neither outlive
/// nor hold up the transport's producer.
struct KafkaAdmin {
    let settings: KafkaSettings
    let logger: Logger

    /// Creates `name` unless it exists (whatever its partition count then is).
    func ensureTopic(_ name: String, partitions: Int, replicationFactor: Int) async throws {
        let timeout = settings.requestTimeout.wholeMilliseconds(minimum: 1)
        let client = try ClientHandle(
            kind: RD_KAFKA_PRODUCER, properties: baseProperties(settings) + settings.extraProperties(producer: true),
            context: ClientContext(logger: logger))
        let result: Result<Void, any Error> = await runBlocking {
            defer { client.destroy() }
            return Result {
                // Looking first spares the admin request when the topic is there, and works
                // where the Admin API does not (librdkafka's mock cluster has no controller).
                guard try partitionCount(client.pointer, topic: name, timeout: timeout) == 0 else { return }
                try createTopic(
                    client.pointer, name: name, partitions: Int32(partitions),
                    replicationFactor: Int32(replicationFactor), timeout: timeout)
            }
        }
        try result.get()
    }
}

/// Watermarks and committed offsets, asked by every metrics scrape: one long-lived handle (a
/// handle per question would open connections to the brokers each time), serving one question
/// at a time on a queue of its own so its blocking calls never hold up a Swift thread.
final class KafkaInspector: @unchecked Sendable {
    private let client: ClientHandle
    private let queue = DispatchQueue(label: "kafka-inspector")
    private let timeout: Int32
    /// Touched on `queue` only.
    private var isClosed = false
    /// Questions queued or being answered. With the brokers away each can take its request
    /// timeout, so past `maxWaiting` a question is refused at once instead of queueing behind
    /// the others (and behind shutdown).
    private let waiting = Atomic<Int>(0)
    private let closing = Atomic<Bool>(false)
    static let maxWaiting = 4

    init(settings: KafkaSettings, logger: Logger) throws(KafkaError) {
        // A producer handle that never produces: the Admin API and watermark queries need no
        // group, and it joins none.
        client = try ClientHandle(
            kind: RD_KAFKA_PRODUCER, properties: baseProperties(settings) + settings.extraProperties(producer: true),
            context: ClientContext(logger: logger))
        timeout = settings.requestTimeout.wholeMilliseconds(minimum: 1)
    }

    deinit {
        if !isClosed { client.destroy() }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer, Int32) throws -> T) async throws -> T {
        guard !closing.load(ordering: .relaxed) else { throw KafkaError.client("the inspector is closed") }
        guard waiting.add(1, ordering: .relaxed).newValue <= Self.maxWaiting else {
            waiting.subtract(1, ordering: .relaxed)
            throw KafkaError.client("the brokers are slow to answer: \(Self.maxWaiting) questions already wait")
        }
        defer { waiting.subtract(1, ordering: .relaxed) }
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                guard !self.isClosed, !self.closing.load(ordering: .relaxed) else {
                    return continuation.resume(throwing: KafkaError.client("the inspector is closed"))
                }
                _ = rd_kafka_poll(self.client.pointer, 0)  // serves the error callbacks queued since
                continuation.resume(with: Result { try body(self.client.pointer, self.timeout) })
            }
        }
    }

    /// Destroys the handle once the question being asked (if any) is answered; those still
    /// queued are refused.
    func close() async {
        closing.store(true, ordering: .relaxed)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if !self.isClosed {
                    self.isClosed = true
                    self.client.destroy()
                }
                continuation.resume()
            }
        }
    }

    /// Each partition's high watermark (the offset its next message will get), asked of the
    /// partition leaders.
    func endOffsets(topic: String) async throws -> [Int32: Int64] {
        try await run { rk, timeout in
            var ends: [Int32: Int64] = [:]
            for partition in 0..<Int32(try partitionCount(rk, topic: topic, timeout: timeout)) {
                var low: Int64 = 0
                var high: Int64 = 0
                try rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, timeout)
                    .check("watermarks of \(topic)[\(partition)]")
                ends[partition] = high
            }
            return ends
        }
    }

    /// The offsets `group` has committed on `topic`, by partition: the next offset the group
    /// will read there. Partitions without a commit are left out.
    func committedOffsets(topic: String, group: String) async throws -> [Int32: Int64] {
        try await run { rk, timeout in
            let partitions = try partitionCount(rk, topic: topic, timeout: timeout)
            guard partitions > 0 else { return [:] }  // no topic yet: nothing committed
            return try withPartitionList((0..<Int32(partitions)).map { (topic, $0, LogicalOffset.invalid) }) {
                list throws(KafkaError) -> [Int32: Int64] in
                try listGroupOffsets(rk, group: group, partitions: list, timeout: timeout)
            }
        }
    }
}

/// One ListConsumerGroupOffsets request (an OffsetFetch to the group's coordinator).
private func listGroupOffsets(
    _ rk: OpaquePointer, group: String, partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>,
    timeout: Int32
) throws(KafkaError) -> [Int32: Int64] {
    var request: [OpaquePointer?] = [rd_kafka_ListConsumerGroupOffsets_new(group, partitions)]
    defer { rd_kafka_ListConsumerGroupOffsets_destroy_array(&request, 1) }
    return try adminRequest(
        rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout: timeout, what: "committed offsets of \(group)",
        send: { options, queue in rd_kafka_ListConsumerGroupOffsets(rk, &request, 1, options, queue) }
    ) { event throws(KafkaError) in
        var count = 0
        guard let result = rd_kafka_event_ListConsumerGroupOffsets_result(event),
            let groups = rd_kafka_ListConsumerGroupOffsets_result_groups(result, &count), count == 1,
            let answer = groups[0]
        else { throw .client("no answer for the committed offsets of \(group)") }
        if let error = rd_kafka_group_result_error(answer) {
            throw KafkaError(rd_kafka_error_code(error), detail: "committed offsets of \(group)")
        }
        var offsets: [Int32: Int64] = [:]
        for entry in entries(of: rd_kafka_group_result_partitions(answer)) {
            try entry.error.check("committed offset of \(group) on \(entry.topic)[\(entry.partition)]")
            if entry.offset >= 0 { offsets[entry.partition] = entry.offset }
        }
        return offsets
    }
}

/// One CreateTopics request through the Admin API.
private func createTopic(
    _ rk: OpaquePointer, name: String, partitions: Int32, replicationFactor: Int32, timeout: Int32
) throws(KafkaError) {
    var errstr = [CChar](repeating: 0, count: 512)
    guard let newTopic = rd_kafka_NewTopic_new(name, partitions, replicationFactor, &errstr, errstr.count) else {
        throw .client("topic \(name) refused: \(String(errorBuffer: errstr))")
    }
    defer { rd_kafka_NewTopic_destroy(newTopic) }
    // The topic is the event history the read model is rebuilt from: keep every event.
    guard rd_kafka_NewTopic_set_config(newTopic, "retention.ms", "-1") == RD_KAFKA_RESP_ERR_NO_ERROR else {
        throw .client("topic \(name): retention.ms refused")
    }
    var topics: [OpaquePointer?] = [newTopic]
    try adminRequest(
        rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout: timeout, what: "creating topic \(name)",
        // Wait for the topic to exist on the controller, so it can be used at once.
        configure: { options in
            var errstr = [CChar](repeating: 0, count: 512)
            _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeout, &errstr, errstr.count)
        },
        send: { options, queue in rd_kafka_CreateTopics(rk, &topics, 1, options, queue) }
    ) { event throws(KafkaError) in
        var count = 0
        guard let result = rd_kafka_event_CreateTopics_result(event) else {
            throw .client("unexpected answer to creating topic \(name)")
        }
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
        for index in 0..<count {
            let err = rd_kafka_topic_result_error(results[index])
            if err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS { continue }
            try err.check(rd_kafka_topic_result_error_string(results[index]).map { String(cString: $0) })
        }
    }
}

/// Sends one Admin API request (`send`, given its options and a private queue), waits for the
/// result event on that queue and hands it to `read`; the event is destroyed after.
private func adminRequest<T>(
    _ rk: OpaquePointer, _ operation: rd_kafka_admin_op_t, timeout: Int32, what: String,
    configure: (OpaquePointer) -> Void = { _ in },
    send: (_ options: OpaquePointer, _ queue: OpaquePointer) -> Void,
    read: (OpaquePointer) throws(KafkaError) -> T
) throws(KafkaError) -> T {
    var errstr = [CChar](repeating: 0, count: 512)
    let queue = rd_kafka_queue_new(rk)!
    defer { rd_kafka_queue_destroy(queue) }
    let options = rd_kafka_AdminOptions_new(rk, operation)!
    defer { rd_kafka_AdminOptions_destroy(options) }
    _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout, &errstr, errstr.count)
    configure(options)
    send(options, queue)
    guard let event = rd_kafka_queue_poll(queue, timeout + 1000) else {
        throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, detail: what)
    }
    defer { rd_kafka_event_destroy(event) }
    try rd_kafka_event_error(event).check(rd_kafka_event_error_string(event).map { String(cString: $0) })
    return try read(event)
}

#endif
