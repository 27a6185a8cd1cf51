import Contracts
import Foundation
import SharedKernel

extension Diagnosis {
    /// Whether the visit waits for the doctor: registered, or back from every exam.
    public var waitsForDoctor: Bool { status == .waiting || status == .examDone }

    private func refuse(_ attempted: String, _ reason: String) -> InvalidTransition {
        InvalidTransition(
            aggregate: "diagnosis", currentState: calling.place.state == .waiting ? status.rawValue : calling.place.state.rawValue,
            attempted: attempted, reason: reason)
    }

    private func checkWaitsForDoctor(_ attempted: String) throws(InvalidTransition) {
        guard waitsForDoctor else {
            let reason =
                status == .examOrdered
                ? "the patient's examinations are still pending" : "the consultation is \(status.rawValue.lowercased())"
            throw InvalidTransition(aggregate: "diagnosis", currentState: status.rawValue, attempted: attempted, reason: reason)
        }
    }

    private func checkRoom(_ room: String, in layout: ClinicLayout, _ attempted: String) throws(InvalidTransition) {
        if let refusal = Self.wrongRoom(room, in: layout, for: department) { throw refuse(attempted, refusal) }
    }

    /// Why `room` is not one a doctor of `department` calls to, or nil when it is.
    private static func wrongRoom(_ room: String, in layout: ClinicLayout, for department: String?) -> String? {
        let owner = layout.department(ofRoom: room)?.name
        guard owner != department else { return nil }
        return "\(room) is \(owner ?? "no department")'s room; this visit is \(department ?? "without a department")'s"
    }

    /// The desk changed the visit's priority: its place in the queue follows. Kept whatever the
    /// visit's state (the board and a later wait show it); it orders only those waiting.
    public mutating func prioritize(_ priority: QueuePriority) {
        self.priority = priority
    }

    /// 호출 (and 재호출 when the same doctor calls again): the patient is asked to `room`.
    public mutating func call(room: String, in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkWaitsForDoctor("call")
        try checkRoom(room, in: layout, "call")
        return try step("call") { calling throws(Calling.Refusal) in try calling.call(room: room, by: actor, at: now, in: layout) }
    }

    /// 진료 시작: the patient is in `room` (the room they were called to when none is given).
    public mutating func start(room: String?, in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkWaitsForDoctor("start")
        let department = department
        return try step("start") { calling throws(Calling.Refusal) in
            try calling.start(room: room, as: .inConsultation, by: actor, at: now, in: layout) { room throws(Calling.Refusal) in
                if let refusal = Self.wrongRoom(room, in: layout, for: department) { throw Calling.Refusal(reason: refusal) }
            }
        }
    }

    /// 부재: the called patient did not come after the layout's number of calls.
    public mutating func markNoShow(in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkWaitsForDoctor("no-show")
        return try step("no-show") { calling throws(Calling.Refusal) in try calling.markNoShow(by: actor, at: now, in: layout) }
    }

    /// 되돌리기: takes back the last call, start or absence, by whoever made it, within the
    /// layout's `undoSeconds`.
    public mutating func undoCalling(in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        if status.isClosed { try checkWaitsForDoctor("undo") }
        return try step("undo") { calling throws(Calling.Refusal) in try calling.undo(by: actor, at: now, in: layout) }
    }

    /// One step of the queue, refused in the consultation's terms.
    private mutating func step(_ attempted: String, _ body: (inout Calling) throws(Calling.Refusal) -> String)
        throws(InvalidTransition) -> [VisitEvent]
    {
        var next = calling
        do {
            let transition = try body(&next)
            calling = next
            return [queueEvent(transition)]
        } catch {
            throw refuse(attempted, error.reason)
        }
    }

    func queueEvent(_ transition: String) -> VisitEvent {
        .queueUpdated(
            QueueUpdated(
                transition: transition, stage: "diagnosis", entryId: id, department: department, queueNumber: queueNumber,
                state: calling.place.state.rawValue, room: calling.place.room, calls: calling.place.calls))
    }
}
