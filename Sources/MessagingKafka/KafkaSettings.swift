#if Kafka
/// How the Kafka transport connects and behaves.
///
/// The transport fixes the properties its guarantees rest on (idempotent producer, `acks=all`,
/// offsets stored only after a handler succeeded); the property dictionaries are applied after
/// them, so they can change anything, including those. Keep them to tuning.
public struct KafkaSettings: Sendable {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    public var brokers: String
    /// `client.id`, seen in broker logs and quotas.
    public var clientId: String
    /// Further librdkafka properties for every client (see librdkafka's CONFIGURATION.md).
    public var properties: [String: String]
    /// Further properties for the producer only (e.g. `linger.ms`), applied after `properties`.
    /// librdkafka warns about a producer property given to a consumer, hence the split.
    public var producerProperties: [String: String]
    /// Further properties for consumers only (e.g. `fetch.wait.max.ms`, `session.timeout.ms`).
    public var consumerProperties: [String: String]
    /// How long one blocking librdkafka poll may wait for something to happen (it returns at once
    /// when something does). It bounds how quickly a canceled consumer or a closing producer
    /// notices.
    public var pollInterval: Duration
    /// `message.timeout.ms`: how long a message may wait for a successful delivery (retries
    /// included) before `publish` throws. While the brokers are away, `publish` waits this long.
    public var deliveryTimeout: Duration
    /// The timeout of one metadata, watermark, commit or admin request.
    public var requestTimeout: Duration
    /// `auto.commit.interval.ms`: how often the offsets stored after successful handlers are
    /// committed. They are also committed when partitions are revoked and when a consumer stops.
    public var commitInterval: Duration
    /// The first pause before a message whose handler threw is delivered again; it doubles on
    /// each further failure of that message up to `maxRetryBackoff`.
    public var retryBackoff: Duration
    public var maxRetryBackoff: Duration
    /// The most messages a consumer hands its handler at once.
    public var batchSize: Int
    /// `session.timeout.ms`: how long the group waits for a silent member before giving its
    /// partitions to the others.
    public var sessionTimeout: Duration
    /// `group.instance.id` (static membership): a stable name of this member, e.g. the pod's
    /// name. A member that restarts under the same name gets its partitions back at once,
    /// without a rebalance; without one, a killed member's partitions wait `sessionTimeout`.
    /// Must differ between the replicas of a service.
    public var instanceId: String?

    public init(
        brokers: String, clientId: String = "hospital", properties: [String: String] = [:],
        producerProperties: [String: String] = [:], consumerProperties: [String: String] = [:],
        pollInterval: Duration = .milliseconds(100), deliveryTimeout: Duration = .seconds(30),
        requestTimeout: Duration = .seconds(10), commitInterval: Duration = .seconds(1),
        retryBackoff: Duration = .milliseconds(100), maxRetryBackoff: Duration = .seconds(5), batchSize: Int = 100,
        sessionTimeout: Duration = .seconds(6), instanceId: String? = nil
    ) {
        self.brokers = brokers
        self.clientId = clientId
        self.properties = properties
        self.producerProperties = producerProperties
        self.consumerProperties = consumerProperties
        self.pollInterval = pollInterval
        self.deliveryTimeout = deliveryTimeout
        self.requestTimeout = requestTimeout
        self.commitInterval = commitInterval
        self.retryBackoff = retryBackoff
        self.maxRetryBackoff = maxRetryBackoff
        self.batchSize = batchSize
        self.sessionTimeout = sessionTimeout
        self.instanceId = instanceId
    }

    /// Settings for librdkafka's mock cluster (`KafkaMockCluster`), whose brokers answer at
    /// once: the defaults are tuned for real brokers and make the mock wait up to 500 ms per
    /// fetch and seconds per reconnect (measured with these: round trip p50 1.4 ms).
    public static func mockCluster(brokers: String, clientId: String = "hospital") -> KafkaSettings {
        KafkaSettings(
            brokers: brokers, clientId: clientId,
            properties: [
                "reconnect.backoff.ms": "10",
                "reconnect.backoff.max.ms": "200",
                "topic.metadata.refresh.interval.ms": "1000",
            ],
            producerProperties: ["linger.ms": "1"],
            consumerProperties: [
                "fetch.wait.max.ms": "1",
                "heartbeat.interval.ms": "500",
            ],
            // The mock waits session.timeout.ms - 1 s for members to rejoin a rebalance.
            sessionTimeout: .seconds(6))
    }

    /// The properties of one kind of client, in the order they are applied.
    func extraProperties(producer: Bool) -> [(String, String)] {
        properties.sorted { $0.key < $1.key }
            + (producer ? producerProperties : consumerProperties).sorted { $0.key < $1.key }
    }
}

extension Duration {
    /// Whole milliseconds for librdkafka, at least `minimum`, at most Int32.max.
    func wholeMilliseconds(minimum: Int64 = 0) -> Int32 {
        let (seconds, attoseconds) = components
        let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(ms, minimum))
    }
}

#endif
