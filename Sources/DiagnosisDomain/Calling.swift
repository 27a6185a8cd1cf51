import Contracts
import Foundation
import SharedKernel

/// Where a consultation stands in its department's queue (호출), beside its clinical status:
/// waiting, called to a room (and called again), in consultation, or absent (부재). The last
/// step is kept so that whoever made it can take it back for a short while (a wrong click).
public struct Calling: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable, CaseIterable {
        case waiting = "WAITING"
        case called = "CALLED"
        case inConsultation = "IN_CONSULTATION"
        case noShow = "NO_SHOW"
    }

    /// The queue's side of a visit at one moment.
    public struct Place: Sendable, Equatable, Codable {
        public var state: State
        /// Where the patient was called to, or is seen.
        public var room: String?
        /// Who called, began or marked the absence.
        public var by: String?
        /// Calls since the visit last waited.
        public var calls: Int
        /// When it came to this state (nil: when the visit began waiting).
        public var since: Date?

        public static let waiting = Place(state: .waiting, room: nil, by: nil, calls: 0, since: nil)
    }

    /// A step that can be taken back: what it was, who made it, when, and the place before it.
    public struct Step: Sendable, Equatable, Codable {
        public var transition: String
        public var by: String
        public var at: Date
        public var before: Place
    }

    public private(set) var place: Place
    public private(set) var last: Step?

    public init(place: Place = .waiting, last: Step? = nil) {
        self.place = place
        self.last = last
    }

    /// The place as the queue sees it at `now`: an absent patient is back among the waiting
    /// once the layout's return time has passed (never, with 0: held until called by hand).
    public func current(at now: Date, returnMinutes: Int) -> Place {
        guard place.state == .noShow, returnMinutes > 0, let since = place.since,
            now.timeIntervalSince(since) >= Double(returnMinutes * 60)
        else { return place }
        return Place(state: .waiting, room: nil, by: nil, calls: 0, since: since.addingTimeInterval(Double(returnMinutes * 60)))
    }

    mutating func move(to next: Place, transition: String, by actor: String, at now: Date) {
        last = Step(transition: transition, by: actor, at: now, before: place)
        place = next
    }

    /// Back to waiting, with nothing to take back (the patient went to their exams).
    mutating func reset() {
        place = .waiting
        last = nil
    }

    mutating func restore() {
        guard let last else { return }
        place = last.before
        self.last = nil
    }
}

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
        let owner = layout.department(ofRoom: room)?.name
        guard owner == department else {
            throw refuse(
                attempted, "\(room) is \(owner ?? "no department")'s room; this visit is \(department ?? "without a department")'s")
        }
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
        let place = calling.current(at: now, returnMinutes: layout.noShowReturnMinutes)
        switch place.state {
        case .called where place.by == actor:
            var next = place
            next.calls += 1
            next.room = room
            next.since = now
            calling.move(to: next, transition: "RECALL", by: actor, at: now)
            return [queueEvent("RECALL")]
        case .called:
            throw refuse("call", "already called by \(place.by ?? "someone") to \(place.room ?? "a room")")
        case .inConsultation:
            throw refuse("call", "in consultation with \(place.by ?? "someone") in \(place.room ?? "a room")")
        case .waiting, .noShow:
            let next = Calling.Place(state: .called, room: room, by: actor, calls: 1, since: now)
            calling.move(to: next, transition: "CALL", by: actor, at: now)
            return [queueEvent("CALL")]
        }
    }

    /// 진료 시작: the patient is in `room` (the room they were called to when none is given).
    public mutating func start(room: String?, in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkWaitsForDoctor("start")
        let place = calling.current(at: now, returnMinutes: layout.noShowReturnMinutes)
        if place.state == .called, place.by != actor {
            throw refuse("start", "called by \(place.by ?? "someone") to \(place.room ?? "a room")")
        }
        if place.state == .inConsultation {
            throw refuse("start", "already in consultation with \(place.by ?? "someone") in \(place.room ?? "a room")")
        }
        guard let room = room ?? (place.state == .called ? place.room : nil) else {
            throw refuse("start", "say which room: the patient was not called to one")
        }
        try checkRoom(room, in: layout, "start")
        let next = Calling.Place(state: .inConsultation, room: room, by: actor, calls: place.calls, since: now)
        calling.move(to: next, transition: "START", by: actor, at: now)
        return [queueEvent("START")]
    }

    /// 부재: the called patient did not come after the layout's number of calls.
    public mutating func markNoShow(in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        try checkWaitsForDoctor("no-show")
        let place = calling.current(at: now, returnMinutes: layout.noShowReturnMinutes)
        guard place.state == .called else { throw refuse("no-show", "only a called patient can be absent") }
        guard place.calls >= layout.callsBeforeNoShow else {
            throw refuse("no-show", "called \(place.calls) of \(layout.callsBeforeNoShow) times: call again first")
        }
        let next = Calling.Place(state: .noShow, room: nil, by: actor, calls: place.calls, since: now)
        calling.move(to: next, transition: "NO_SHOW", by: actor, at: now)
        return [queueEvent("NO_SHOW")]
    }

    /// 되돌리기: takes back the last call, start or absence, by whoever made it, within the
    /// layout's `undoSeconds`.
    public mutating func undoCalling(in layout: ClinicLayout, by actor: String, at now: Date)
        throws(InvalidTransition) -> [VisitEvent]
    {
        if status.isClosed { try checkWaitsForDoctor("undo") }
        guard let last = calling.last else { throw refuse("undo", "there is nothing to take back") }
        guard last.by == actor else { throw refuse("undo", "only \(last.by) can take back their \(last.transition)") }
        guard now.timeIntervalSince(last.at) <= Double(layout.undoSeconds) else {
            throw refuse("undo", "a step can be taken back within \(layout.undoSeconds) seconds")
        }
        calling.restore()
        return [queueEvent("UNDO")]
    }

    func queueEvent(_ transition: String) -> VisitEvent {
        .queueUpdated(
            QueueUpdated(
                transition: transition, stage: "diagnosis", entryId: id, department: department, queueNumber: queueNumber,
                state: calling.place.state.rawValue, room: calling.place.room, calls: calling.place.calls))
    }
}
