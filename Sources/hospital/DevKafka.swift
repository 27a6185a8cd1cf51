import ArgumentParser
import Foundation
import Runtime
import Logging
import ServiceLifecycle

#if Kafka
import MessagingKafka
#endif

/// Tools for development and tests.
struct Dev: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Development tools.", subcommands: [DevKafka.self])
}

/// `hospital dev kafka`: librdkafka's mock cluster on loopback, standing in for Apache Kafka in
/// development and tests. Its first line of output is the bootstrap address.
struct DevKafka: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Host librdkafka's mock Kafka cluster on loopback (development and tests only).",
        discussion: """
            Prints the bootstrap address on its first line. Type `down` or `up` on standard input to \
            take every broker down or bring them back (fault injection). Ctrl-C stops it.
            """)

    @Option(help: "Number of brokers.") var brokers = 3
    @Option(help: "Partitions of the visit-events topic.") var partitions = 6
    @Option(help: "The visit-events topic (HOSPITAL_KAFKA_TOPIC).") var topic = "hospital.visit-events"

    func run() async throws {
        #if Kafka
        var logger = Logger(label: "hospital.dev.kafka")
        logger.logLevel = .notice
        let cluster = try KafkaMockCluster(brokers: brokers, logger: logger)
        try cluster.createTopic(topic, partitions: partitions, replicationFactor: min(3, brokers))
        // The audit trails' checkpoints (a KafkaTopic of its own in production).
        try cluster.createTopic(HospitalSystem.auditCheckpointTopic, partitions: 1, replicationFactor: min(3, brokers))
        let banner = "mock cluster: \(brokers) brokers, topic \(topic) with \(partitions) partitions; `down`/`up` on stdin"
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: MockClusterService(cluster: cluster, banner: banner))],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        #else
        throw ValidationError(
            "this hospital binary was built without Kafka: build it with `swift build --traits Kafka`")
        #endif
    }
}

#if Kafka
/// Keeps the mock cluster up until shutdown, taking `down`/`up` commands from standard input.
struct MockClusterService: Service {
    let cluster: KafkaMockCluster
    let banner: String

    func run() async throws {
        // The address only once the group's signal handlers are in place: a caller that stops
        // the process as soon as it has read it is heard (as a container's PID 1, a SIGTERM with
        // no handler yet would be ignored).
        FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
        FileHandle.standardError.write(Data((banner + "\n").utf8))
        let cluster = cluster
        // Standard input blocks: read it on a thread of its own.
        Thread.detachNewThread {
            while let line = readLine() {
                switch line.trimmingCharacters(in: .whitespaces) {
                case "down": try? cluster.setBrokersDown()
                case "up": try? cluster.setBrokersUp()
                default: continue
                }
                FileHandle.standardError.write(Data("brokers \(line)\n".utf8))
            }
        }
        try? await gracefulShutdown()
    }
}
#endif
