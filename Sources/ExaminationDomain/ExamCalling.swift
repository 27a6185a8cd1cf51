import Contracts
import Foundation
import SharedKernel

/// The exam rooms' queue (검사실 호출): an examiner calls a visit waiting for an exam to a room
/// that performs it, calls again, begins the exam, marks the patient absent or takes their own
/// last step back, by the same rules as the doctor's queue.
extension Examination {
    private func refuse(_ attempted: String, _ reason: String) -> InvalidTransition {
        InvalidTransition(
            aggregate: "examination",
            currentState: calling.place.state == .waiting ? status.rawValue : calling.place.state.rawValue,
            attempted: attempted, reason: reason)
    }

    private func checkRequested(_ attempted: String) throws(InvalidTransition) {
        guard status == .requested else {
            throw InvalidTransition(
                aggregate: "examination", currentState: status.rawValue, attempted: attempted,
                reason: "the exam is \(status.rawValue.lowercased())")
        }
    }

    /// Why `room` cannot take this exam, or nil when it can.
    private static func wrongRoom(_ room: String, in layout: ClinicLayout, for code: String) -> String? {
        guard let examRoom = layout.examRoom(named: room) else { return "\(room) is not an exam room" }
        return examRoom.performs(code) ? nil : "\(room) does not perform \(code)"
    }

    /// The desk changed the visit's priority: the exam's place in the queue follows.
    public mutating func prioritize(_ priority: QueuePriority) {
        self.priority = priority
    }

    /// 호출 (and 재호출 when the same examiner calls again) to `room`.
    public mutating func call(room: String, in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkRequested("call")
        if let refusal = Self.wrongRoom(room, in: layout, for: code) { throw refuse("call", refusal) }
        return try step("call") { calling throws(Calling.Refusal) in try calling.call(room: room, by: actor, at: now, in: layout) }
    }

    /// 검사 시작: the patient is in `room` (the room they were called to when none is given).
    public mutating func start(room: String?, in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkRequested("start")
        let code = code
        return try step("start") { calling throws(Calling.Refusal) in
            try calling.start(room: room, as: .inExam, by: actor, at: now, in: layout) { room throws(Calling.Refusal) in
                if let refusal = Self.wrongRoom(room, in: layout, for: code) { throw Calling.Refusal(reason: refusal) }
            }
        }
    }

    /// 부재: the called patient did not come after the layout's number of calls.
    public mutating func markNoShow(in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkRequested("no-show")
        return try step("no-show") { calling throws(Calling.Refusal) in try calling.markNoShow(by: actor, at: now, in: layout) }
    }

    /// 되돌리기: the last call, start or absence, by whoever made it, within the layout's time.
    public mutating func undoCalling(in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkRequested("undo")
        return try step("undo") { calling throws(Calling.Refusal) in try calling.undo(by: actor, at: now, in: layout) }
    }

    private mutating func step(_ attempted: String, _ body: (inout Calling) throws(Calling.Refusal) -> String)
        throws(InvalidTransition) -> [VisitEvent]
    {
        var next = calling
        do {
            let transition = try body(&next)
            calling = next
            return [
                .queueUpdated(
                    QueueUpdated(
                        transition: transition, stage: "examination", entryId: id, orderId: orderId, department: department,
                        queueNumber: queueNumber, state: calling.place.state.rawValue, room: calling.place.room,
                        calls: calling.place.calls))
            ]
        } catch {
            throw refuse(attempted, error.reason)
        }
    }
}
