#if Kafka
import CRdKafka
import Foundation
import Logging
import Messaging
import Synchronization

/// The idempotent producer behind `KafkaTransport.publish`.
///
/// librdkafka's produce call only enqueues; the outcome of each message arrives later as a
/// delivery report, served by `rd_kafka_poll`. A dedicated thread does that polling, so no Swift
/// task ever blocks in librdkafka. Each message carries a retained pointer to its batch as its
/// per-message opaque; the delivery report callback takes it back and counts the batch down.
final class KafkaProducer: @unchecked Sendable {
    private let client: ClientHandle
    private let poller: PollingThread
    private let settings: KafkaSettings
    /// Whether `close` began. Produce calls run inside this lock, so none can race the destroy.
    private let closed = Mutex(false)

    init(settings: KafkaSettings, logger: Logger) throws(KafkaError) {
        self.settings = settings
        let properties =
            baseProperties(settings) + [
                // Exactly once and in order per partition, even across the producer's own retries.
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.timeout.ms", "\(settings.deliveryTimeout.wholeMilliseconds(minimum: 1))"),
                // Java's default partitioner: a key lands in the same partition whichever
                // client (Java, librdkafka with this setting) produced it.
                ("partitioner", "murmur2_random"),
            ] + settings.extraProperties(producer: true)
        client = try ClientHandle(
            kind: RD_KAFKA_PRODUCER, properties: properties, context: ClientContext(logger: logger),
            configure: { rd_kafka_conf_set_dr_msg_cb($0, deliveryReportCallback) })
        poller = PollingThread(client: client, interval: settings.pollInterval)
    }

    deinit {
        // The owner should have called close(); if not, release the handle without flushing.
        let wasOpen = closed.withLock { closed in
            defer { closed = true }
            return !closed
        }
        if wasOpen { shutDown(flushTimeout: .zero) }
    }

    /// Whether librdkafka raised a fatal error on this producer (e.g. the idempotent producer
    /// lost track of its sequence numbers): it will never deliver anything again.
    var hasFatalError: Bool {
        closed.withLock { closed in
            !closed && rd_kafka_fatal_error(client.pointer, nil, 0) != RD_KAFKA_RESP_ERR_NO_ERROR
        }
    }

    /// For tests: raises a fatal error the way an unrecoverable idempotence failure would.
    func raiseFatalErrorForTesting() {
        closed.withLock { closed in
            guard !closed else { return }
            _ = rd_kafka_test_fatal_error(client.pointer, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "injected")
        }
    }

    /// Enqueues every message, then waits until each has a delivery report. Throws the first
    /// failed report (or enqueue failure); messages before it may have been delivered.
    func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        let batch = DeliveryBatch(count: messages.count)
        for (index, message) in messages.enumerated() {
            do {
                try await enqueue(message, batch: batch)
            } catch {
                // These will never get a delivery report: count them off now.
                batch.abandon(messages.count - index, error: error)
                break
            }
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { batch.wait($0) }
        } onCancel: {
            // The messages stay in flight and may still be delivered; the caller only stops waiting.
            batch.cancel()
        }
    }

    /// Enqueues one message, waiting while librdkafka's local queue is full, at most the
    /// delivery timeout.
    private func enqueue(_ message: OutgoingMessage, batch: DeliveryBatch) async throws {
        let deadline = ContinuousClock.now + settings.deliveryTimeout
        while true {
            let opaque = Unmanaged.passRetained(batch).toOpaque()
            let error: KafkaError? = closed.withLock { closed in
                guard !closed else { return .client("the producer is closed") }
                return produce(message, opaque: opaque)
            }
            guard let error else { return }
            Unmanaged<DeliveryBatch>.fromOpaque(opaque).release()  // no report will come for it
            guard error.code == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue, ContinuousClock.now < deadline else {
                throw error
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// One `rd_kafka_produceva` call (`rd_kafka_producev` is variadic, which Swift cannot call).
    private func produce(_ message: OutgoingMessage, opaque: UnsafeMutableRawPointer) -> KafkaError? {
        let key = Array(message.key.utf8)
        return message.topic.withCString { topic in
            key.withUnsafeBytes { key in
                message.value.withUnsafeBytes { value in
                    var fields = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 5)
                    fields[0].vtype = RD_KAFKA_VTYPE_TOPIC
                    fields[0].u.cstr = topic
                    fields[1].vtype = RD_KAFKA_VTYPE_KEY
                    fields[1].u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
                    fields[1].u.mem.size = key.count
                    fields[2].vtype = RD_KAFKA_VTYPE_VALUE
                    fields[2].u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                    fields[2].u.mem.size = value.count
                    fields[3].vtype = RD_KAFKA_VTYPE_OPAQUE
                    fields[3].u.ptr = opaque
                    // librdkafka copies key and value: our buffers are gone when this returns.
                    fields[4].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                    fields[4].u.i = RD_KAFKA_MSG_F_COPY
                    guard let error = rd_kafka_produceva(client.pointer, fields, fields.count) else { return nil }
                    return KafkaError(consuming: error)
                }
            }
        }
    }

    /// Waits up to `flushTimeout` for outstanding messages, fails the rest (their publishers
    /// throw), then destroys the handle. Blocks: call it off the cooperative pool.
    func close(flushTimeout: Duration) async {
        let wasOpen = closed.withLock { closed in
            defer { closed = true }
            return !closed
        }
        guard wasOpen else { return }
        await runBlocking { self.shutDown(flushTimeout: flushTimeout) }
    }

    private func shutDown(flushTimeout: Duration) {
        poller.stop()
        let rk = client.pointer
        _ = rd_kafka_flush(rk, flushTimeout.wholeMilliseconds())
        // Whatever is left gets a failed delivery report, so no publisher waits forever.
        _ = rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        _ = rd_kafka_flush(rk, 100)
        _ = rd_kafka_poll(rk, 0)
        client.destroy()
    }
}

/// The delivery reports a `publish` call waits for.
final class DeliveryBatch: Sendable {
    private struct State {
        var remaining: Int
        var firstError: (any Error)?
        var canceled = false
        var waiter: CheckedContinuation<Void, any Error>?

        var isDone: Bool { remaining == 0 || canceled }
        var result: Result<Void, any Error> {
            if canceled { return .failure(CancellationError()) }
            return firstError.map { .failure($0) } ?? .success(())
        }
    }
    private let state: Mutex<State>

    init(count: Int) { state = Mutex(State(remaining: count)) }

    /// One message's delivery report (on the polling thread).
    func report(_ error: KafkaError?) { countDown(1, error: error) }

    /// `count` messages were never enqueued and so will never be reported.
    func abandon(_ count: Int, error: any Error) { countDown(count, error: error) }

    private func countDown(_ count: Int, error: (any Error)?) {
        let resume: (CheckedContinuation<Void, any Error>, Result<Void, any Error>)? = state.withLock { state in
            state.remaining -= count
            if state.firstError == nil, let error { state.firstError = error }
            guard state.isDone, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return (waiter, state.result)
        }
        if let (waiter, result) = resume { waiter.resume(with: result) }
    }

    /// Resumes `continuation` once every message was reported (or at once if they were).
    func wait(_ continuation: CheckedContinuation<Void, any Error>) {
        let resumeNow: Result<Void, any Error>? = state.withLock { state in
            guard !state.isDone else { return state.result }
            state.waiter = continuation
            return nil
        }
        if let resumeNow { continuation.resume(with: resumeNow) }
    }

    /// The caller's task was canceled: stop waiting (reports that still come are ignored).
    func cancel() {
        let waiter = state.withLock { state in
            state.canceled = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(throwing: CancellationError())
    }
}

/// Delivery reports arrive here, on the producer's polling thread.
private let deliveryReportCallback:
    @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, message, _ in
        guard let message, let opaque = message.pointee._private else { return }
        let batch = Unmanaged<DeliveryBatch>.fromOpaque(opaque).takeRetainedValue()
        let err = message.pointee.err
        batch.report(
            err == RD_KAFKA_RESP_ERR_NO_ERROR
                // Not rd_kafka_message_errstr: for a produced message it is the payload itself,
                // patient data that must not reach an error that gets logged.
                ? nil : KafkaError(err, detail: nil))
    }

/// A thread that serves a producer's delivery reports until stopped.
final class PollingThread: Sendable {
    private let stopRequested = Atomic(false)
    private let stopped = DispatchSemaphore(value: 0)

    init(client: ClientHandle, interval: Duration) {
        let timeout = interval.wholeMilliseconds(minimum: 1)
        let thread = Thread { [self] in
            while !stopRequested.load(ordering: .acquiring) {
                _ = rd_kafka_poll(client.pointer, timeout)
            }
            stopped.signal()
        }
        thread.name = "kafka-producer-poll"
        thread.start()
    }

    /// Blocks until the thread has left its loop (at most one poll interval).
    func stop() {
        stopRequested.store(true, ordering: .releasing)
        stopped.wait()
    }
}

/// Runs blocking librdkafka work on a GCD thread instead of a thread of Swift's cooperative pool.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: body()) }
    }
}

#endif
