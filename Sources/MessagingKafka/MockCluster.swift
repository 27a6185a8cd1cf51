#if Kafka
import CRdKafka
import Foundation
import Logging
import Synchronization

/// librdkafka's mock cluster: in-process brokers that speak the real Kafka protocol on
/// loopback TCP, with consumer groups, idempotent producers and broker up/down for fault
/// injection. For tests and `hospital dev kafka`; it keeps everything in memory.
///
/// A mock cluster must be owned by a client handle; this one owns a bare producer handle that
/// is never used for anything else.
public final class KafkaMockCluster: Sendable {
    public let brokerCount: Int
    /// `host:port,…` of the mock brokers, for `bootstrap.servers`.
    public let bootstrapServers: String
    private let owner: ClientHandle
    /// The cluster pointer; guarded, since tests flip brokers from several tasks.
    private let cluster: Mutex<OpaquePointer?>

    public init(brokers brokerCount: Int = 1, logger: Logger = Logger(label: "kafka.mock")) throws {
        precondition(brokerCount > 0, "a cluster needs a broker")
        self.brokerCount = brokerCount
        owner = try ClientHandle(
            kind: RD_KAFKA_PRODUCER, properties: [("client.id", "mock-cluster-owner")],
            context: ClientContext(logger: logger))
        guard let cluster = rd_kafka_mock_cluster_new(owner.pointer, Int32(brokerCount)) else {
            owner.destroy()
            throw KafkaError.client("cannot start the mock cluster")
        }
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        self.cluster = Mutex(cluster)
    }

    deinit {
        cluster.withLock { cluster in
            if let cluster { rd_kafka_mock_cluster_destroy(cluster) }
            cluster = nil
        }
        owner.destroy()
    }

    /// Creates a topic (replication factor at most the broker count).
    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws {
        try withCluster {
            try rd_kafka_mock_topic_create($0, name, Int32(partitions), Int32(replicationFactor)).check()
        }
    }

    /// Every broker closes its connections and refuses new ones, as if the cluster were away.
    public func setBrokersDown() throws {
        try withCluster { cluster in
            for id in 1...Int32(brokerCount) { try rd_kafka_mock_broker_set_down(cluster, id).check("broker \(id)") }
        }
    }

    /// Every broker accepts connections again; clients reconnect by themselves.
    public func setBrokersUp() throws {
        try withCluster { cluster in
            for id in 1...Int32(brokerCount) { try rd_kafka_mock_broker_set_up(cluster, id).check("broker \(id)") }
        }
    }

    private func withCluster(_ body: (OpaquePointer) throws -> Void) throws {
        try cluster.withLock { cluster in
            guard let cluster else { throw KafkaError.client("the mock cluster is gone") }
            try body(cluster)
        }
    }
}

#endif
