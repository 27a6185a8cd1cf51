import AsyncHTTPClient
import Foundation
import NIOCore

/// The hops as the services themselves saw them: `hospital_event_handling_delay_seconds`, from
/// an event's `occurredAt` (stamped in the command's transaction) to its handling committed by
/// the next service, read from every service's `/metrics` before and after the visits.
///
/// The client's hops are measured by asking (`--poll-ms`): each includes up to one poll
/// interval, and in an open loop near capacity the polls themselves load the server. These
/// come from the services' own clocks, with no client in them. A histogram gives counts within
/// bounds (5, 10, 25, 50, 100, 250 ms, …), so the report gives the share within some of them and
/// the bound a percentile falls under.
enum EventDelays {
    struct Key: Hashable, Comparable {
        var group: String
        var type: String
        static func < (a: Key, b: Key) -> Bool { (a.type, a.group) < (b.type, b.group) }
    }

    /// Cumulative counts by upper bound (seconds; +Inf last), per consumer group and event type.
    typealias Snapshot = [Key: [Double: Double]]

    static let metric = "hospital_event_handling_delay_seconds_bucket"

    /// Every port's histogram buckets; a port that does not answer adds nothing.
    static func scrape(ports: [Int]) async -> Snapshot {
        var snapshot: Snapshot = [:]
        for port in ports {
            let request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics")
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(10)),
                response.status == .ok,
                let body = try? await response.body.collect(upTo: 32 << 20)
            else { continue }
            for line in String(buffer: body).split(separator: "\n") where line.hasPrefix(metric + "{") {
                guard let (labels, value) = parse(line), let group = labels["consumer_group"],
                    let type = labels["event_type"], let le = labels["le"]
                else { continue }
                let bound = le == "+Inf" ? Double.infinity : Double(le) ?? .nan
                snapshot[Key(group: group, type: type), default: [:]][bound, default: 0] += value
            }
        }
        return snapshot
    }

    /// `name{a="x",b="y"} 12` → the labels and the value. Label values here are code-made
    /// names (services, event types, bounds), without quotes or commas in them.
    static func parse(_ line: Substring) -> ([String: String], Double)? {
        guard let open = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}"),
            let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
        else { return nil }
        var labels: [String: String] = [:]
        for pair in line[line.index(after: open)..<close].split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            labels[String(parts[0])] = String(parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
        }
        return (labels, value)
    }

    /// Handlings between the two snapshots, by consumer group and event type, for those handled
    /// at least `minimum` times: how many, the share within 10, 25 and 50 ms, and the bucket
    /// bound p50 and p99 fall under.
    static func report(from before: Snapshot, to after: Snapshot, minimum: Int) -> [String] {
        var lines: [String] = []
        for key in after.keys.sorted() {
            let buckets = after[key]!.map { bound, count in (bound, count - (before[key]?[bound] ?? 0)) }
                .sorted { $0.0 < $1.0 }
            guard let total = buckets.last?.1, total >= Double(max(1, minimum)) else { continue }
            func within(_ seconds: Double) -> Double {
                (buckets.last { $0.0 <= seconds + 1e-9 }?.1 ?? 0) * 100 / total
            }
            func under(_ p: Double) -> String {
                guard let bound = buckets.first(where: { $0.1 >= total * p / 100 })?.0 else { return "-" }
                guard bound.isInfinite else { return "≤ \(Int(bound * 1000)) ms" }
                return buckets.count > 1 ? "> \(Int(buckets[buckets.count - 2].0 * 1000)) ms" : "-"
            }
            lines.append(
                "\(key.type) → \(key.group)".padding(toLength: 44, withPad: " ", startingAt: 0)
                    + String(
                        format: "%5.0f handled; within 10 ms %5.1f %%, 25 ms %5.1f %%, 50 ms %5.1f %%; ", total,
                        within(0.01), within(0.025), within(0.05))
                    + "p50 \(under(50)), p99 \(under(99))")
        }
        return lines
    }
}
