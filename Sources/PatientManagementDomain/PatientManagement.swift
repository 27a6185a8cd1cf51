import Contracts
import Foundation

/// The desk's view of one visit (CQRS read model): its current status and the time of every step.
///
/// Built only from events, and built so that it converges to the same value whatever order the
/// events arrive in: it records facts (when each step happened, what became of each order) and
/// derives the status from them. Applying an event twice records the same facts again.
public struct PatientManagement: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        case received = "RECEIVED"
        case examOrdered = "EXAM_ORDERED"
        case examDone = "EXAM_DONE"
        case completed = "COMPLETED"
        case rejected = "REJECTED"
        case canceled = "CANCELED"
    }

    public struct OrderProgress: Sendable, Equatable, Codable {
        public enum Status: String, Sendable, Codable {
            case requested = "REQUESTED"
            case completed = "COMPLETED"
            case canceled = "CANCELED"
        }

        public var orderId: UUID
        public var code: String?
        public var name: String?
        public var status: Status
        public var orderedAt: Date?
        public var resolvedAt: Date?
        /// Where the exam stands in the exam rooms' queue (검사실 호출), as its last
        /// `QueueUpdated` said.
        public var place: QueuePlace?
    }

    /// Where the visit (or one of its exams) stands in a calling queue, as the last
    /// `QueueUpdated` said.
    public struct QueuePlace: Sendable, Equatable, Codable {
        /// `diagnosis` (진료실) or `examination` (검사실).
        public var stage: String
        /// `WAITING`, `CALLED`, `IN_CONSULTATION`, `IN_EXAM` or `NO_SHOW`.
        public var state: String
        public var room: String?
        public var calls: Int
        /// When it came to this (the event's time).
        public var since: Date
    }

    public let receptionId: UUID
    public private(set) var patientName: String?
    /// 대기 번호 (`A-012`) and the desk's priority.
    public private(set) var queueNumber: String?
    public private(set) var priority: String?
    public private(set) var queue: QueuePlace?
    /// When a doctor first called the patient (or began without a call): the end of the wait
    /// the clinic measures.
    public private(set) var firstCalledAt: Date?
    /// The registry's patient (absent for a visit from before the registry).
    public private(set) var patientId: UUID?
    public private(set) var department: String?
    public private(set) var diagnosisId: UUID?
    public private(set) var receivedAt: Date?
    public private(set) var examOrderedAt: Date?
    public private(set) var completedAt: Date?
    public private(set) var rejectedAt: Date?
    public private(set) var canceledAt: Date?
    public private(set) var rejectReason: String?
    public private(set) var cancelReason: String?
    public private(set) var orders: [OrderProgress]
    /// When the newest event this row reflects happened.
    public private(set) var lastEventAt: Date

    public init(receptionId: UUID, firstEventAt: Date) {
        self.receptionId = receptionId
        self.orders = []
        self.lastEventAt = firstEventAt
    }

    /// The visit's current status, derived from the recorded facts.
    public var status: Status {
        if let (status, _) = closing { return status }
        if orders.isEmpty { return .received }
        return orders.contains { $0.status == .requested } ? .examOrdered : .examDone
    }

    /// When every ordered exam had been performed or canceled (while none is pending).
    public var examDoneAt: Date? {
        guard !orders.isEmpty, !orders.contains(where: { $0.status == .requested }) else { return nil }
        return orders.compactMap(\.resolvedAt).max()
    }

    /// When the visit entered its current status.
    public var statusSince: Date? {
        switch status {
        case .received: receivedAt
        case .examOrdered: orders.compactMap(\.orderedAt).max() ?? examOrderedAt
        case .examDone: examDoneAt
        case .completed, .rejected, .canceled: closing?.at
        }
    }

    /// Why the visit was rejected or canceled, if it was.
    public var closingReason: String? {
        switch status {
        case .rejected: rejectReason
        case .canceled: cancelReason
        default: nil
        }
    }

    /// The diagnosis decides the outcome: it applies the desk's cancellation and the doctor's
    /// commands one after another and closes once, so a completion or rejection means the doctor
    /// acted before the cancellation reached the consultation. The desk's cancellation shows
    /// CANCELED (at the desk's time) unless the doctor's service overrules it. Facts, not arrival
    /// order, decide, so the outcome never depends on delivery order.
    private var closing: (Status, at: Date)? {
        if let completedAt { return (.completed, completedAt) }
        if let rejectedAt { return (.rejected, rejectedAt) }
        return canceledAt.map { (.canceled, $0) }
    }

    /// Records what `envelope` says about this visit.
    public mutating func apply(_ envelope: EventEnvelope) {
        precondition(envelope.receptionId == receptionId, "event of another visit")
        let at = envelope.occurredAt
        lastEventAt = max(lastEventAt, at)
        switch envelope.event {
        case .treatmentReceived(let e):
            receivedAt = earliest(receivedAt, at)
            patientName = e.patientName
            patientId = e.patient?.patientId
            department = e.department
            queueNumber = e.queueNumber ?? queueNumber
            priority = e.priority ?? priority
        case .treatmentCanceled(let e):
            recordCancellation(at: at, reason: e.reason)
        case .priorityChanged(let e):
            priority = e.priority
        case .prescribed(let e):
            diagnosisId = e.diagnosisId
            patientName = patientName ?? e.patientName
            examOrderedAt = earliest(examOrderedAt, at)
            for order in e.orders {
                if let i = orders.firstIndex(where: { $0.orderId == order.orderId }) {
                    orders[i].code = order.code
                    orders[i].name = order.name
                    orders[i].orderedAt = earliest(orders[i].orderedAt, at)
                } else {
                    orders.append(
                        OrderProgress(
                            orderId: order.orderId, code: order.code, name: order.name, status: .requested,
                            orderedAt: at, resolvedAt: nil))
                }
            }
        case .examinationCompleted(let e):
            diagnosisId = e.diagnosisId
            resolve(order: e.orderId, as: .completed, at: at)
        case .examinationCanceled(let e):
            diagnosisId = e.diagnosisId
            resolve(order: e.orderId, as: .canceled, at: at)
        case .diagnosisCompleted(let e):
            diagnosisId = e.diagnosisId
            completedAt = earliest(completedAt, at)
        case .diagnosisRejected(let e):
            diagnosisId = e.diagnosisId
            rejectedAt = earliest(rejectedAt, at)
            rejectReason = e.reason
        case .diagnosisCanceled(let e):
            diagnosisId = e.diagnosisId
            // The doctor's service confirms the desk's cancellation (which happened earlier).
            recordCancellation(at: at, reason: e.reason)
        case .queueUpdated(let e) where e.stage == "examination":
            // An exam's own place: kept on its order, the newest transition standing.
            queueNumber = queueNumber ?? e.queueNumber
            guard let orderId = e.orderId else { break }
            let place = QueuePlace(stage: e.stage, state: e.state, room: e.room, calls: e.calls, since: at)
            if let i = orders.firstIndex(where: { $0.orderId == orderId }) {
                if orders[i].place.map({ $0.since <= at }) ?? true { orders[i].place = place }
            } else {
                // Called before its prescription arrived here: the order fills in later.
                orders.append(
                    OrderProgress(
                        orderId: orderId, code: nil, name: nil, status: .requested, orderedAt: nil, resolvedAt: nil,
                        place: place))
            }
        case .queueUpdated(let e):
            if e.stage == "diagnosis" { diagnosisId = e.entryId }
            queueNumber = queueNumber ?? e.queueNumber
            // The newest transition stands (on a tie, the one applied last).
            if queue.map({ $0.since <= at }) ?? true {
                queue = QueuePlace(stage: e.stage, state: e.state, room: e.room, calls: e.calls, since: at)
                if e.stage == "diagnosis", e.transition == "UNDO", e.state == "WAITING", e.calls == 0 {
                    firstCalledAt = nil  // the first call was a wrong click, taken back
                }
            }
            if e.stage == "diagnosis", e.transition == "CALL" || e.transition == "START",
                firstCalledAt.map({ at < $0 }) ?? true
            {
                firstCalledAt = at
            }
        case .patientRegistered, .patientUpdated, .patientMerged:
            break  // the registry's: they name a patient, not a visit
        }
        orders.sort {
            ($0.orderedAt ?? .distantFuture, $0.orderId.uuidString) < (
                $1.orderedAt ?? .distantFuture, $1.orderId.uuidString
            )
        }
    }

    private mutating func recordCancellation(at: Date, reason: String) {
        if let canceledAt, canceledAt <= at { return }
        canceledAt = at
        cancelReason = reason
    }

    private mutating func resolve(order orderId: UUID, as status: OrderProgress.Status, at: Date) {
        if let i = orders.firstIndex(where: { $0.orderId == orderId }) {
            // An order is performed or canceled once. Should two resolutions ever arrive, the
            // earlier one stands (on a tie, the completion), whatever order they are delivered in.
            if let resolvedAt = orders[i].resolvedAt,
                resolvedAt < at || (resolvedAt == at && orders[i].status == .completed)
            {
                return
            }
            orders[i].status = status
            orders[i].resolvedAt = at
        } else {
            // Resolved before its prescription arrived: keep the fact, the order fills in later.
            orders.append(
                OrderProgress(orderId: orderId, code: nil, name: nil, status: status, orderedAt: nil, resolvedAt: at))
        }
    }

    private func earliest(_ current: Date?, _ candidate: Date) -> Date {
        current.map { min($0, candidate) } ?? candidate
    }
}
