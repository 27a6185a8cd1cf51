import FluentKit
import Foundation
import SQLKit
import Storage

/// A consumer's progress through each partition, kept in the consumer's own database and moved
/// in the same transaction as the effects of the messages it passed. So the service's database
/// and its position can never disagree: restored from a backup, or replaced by an empty file,
/// the service resumes from where its data says it stopped, and catches up.
public enum ConsumerPositions {
    static let table = "consumer_positions"

    /// The next offset to read of each of `partitions` that `consumer` has a record of.
    public static func read(
        consumer: String, partitions: [TopicPartition], on db: any Database
    ) async throws -> [TopicPartition: Int64] {
        guard !partitions.isEmpty else { return [:] }
        let rows = try await db.sql.raw(
            """
            SELECT topic, partition_id, next_offset FROM consumer_positions
            WHERE consumer = \(bind: consumer) AND topic IN \(list: Array(Set(partitions.map(\.topic))))
            """
        ).all()
        let wanted = Set(partitions)
        var positions: [TopicPartition: Int64] = [:]
        for row in rows {
            let partition = TopicPartition(
                topic: try row.decode(column: "topic", as: String.self),
                partition: Int32(try row.decode(column: "partition_id", as: Int.self)))
            if wanted.contains(partition) {
                positions[partition] = Int64(try row.decode(column: "next_offset", as: Int.self))
            }
        }
        return positions
    }

    /// Every position `consumer` has recorded.
    public static func all(consumer: String, on db: any Database) async throws -> [TopicPartition: Int64] {
        let rows = try await db.sql.select().columns("topic", "partition_id", "next_offset").from(table)
            .where("consumer", .equal, consumer).all()
        var positions: [TopicPartition: Int64] = [:]
        for row in rows {
            positions[
                TopicPartition(
                    topic: try row.decode(column: "topic", as: String.self),
                    partition: Int32(try row.decode(column: "partition_id", as: Int.self)))] = Int64(
                    try row.decode(column: "next_offset", as: Int.self))
        }
        return positions
    }

    /// Moves the positions forward (never back: two replicas that briefly both handled a
    /// partition during a rebalance cannot undo each other's progress).
    public static func advance(
        consumer: String, to positions: [TopicPartition: Int64], on db: any Database
    ) async throws {
        let sql = try db.sql
        for (partition, next) in positions.sorted(by: { ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition) }) {
            try await sql.raw(
                """
                INSERT INTO consumer_positions (consumer, topic, partition_id, next_offset)
                VALUES (\(bind: consumer), \(bind: partition.topic), \(bind: Int(partition.partition)), \(bind: next))
                ON CONFLICT (consumer, topic, partition_id) DO UPDATE SET next_offset =
                    CASE WHEN excluded.next_offset > consumer_positions.next_offset
                    THEN excluded.next_offset ELSE consumer_positions.next_offset END
                """
            ).run()
        }
    }


    struct CreateTable: AsyncMigration {
        var name: String { "M005_CreateConsumerPositions" }

        func prepare(on database: any Database) async throws {
            try await database.sql.raw(
                """
                CREATE TABLE consumer_positions (
                    consumer TEXT NOT NULL,
                    topic TEXT NOT NULL,
                    partition_id INTEGER NOT NULL,
                    next_offset BIGINT NOT NULL,
                    PRIMARY KEY (consumer, topic, partition_id)
                )
                """
            ).run()
        }

        func revert(on database: any Database) async throws {
            try await database.sql.raw("DROP TABLE consumer_positions").run()
        }
    }
}
