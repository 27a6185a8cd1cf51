import Foundation

/// Where a visit stands in a calling queue (호출), beside its clinical status: waiting, called
/// to a room (and called again), with the doctor or examiner, or absent (부재). The last step is
/// kept so that whoever made it can take it back for a short while (a wrong click). The doctor's
/// consultations and the examiner's exams queue alike; each checks its own rooms and statuses.
public struct Calling: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable, CaseIterable {
        case waiting = "WAITING"
        case called = "CALLED"
        /// With the doctor (진료 중).
        case inConsultation = "IN_CONSULTATION"
        /// With the examiner (검사 중).
        case inExam = "IN_EXAM"
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

        public init(state: State, room: String?, by: String?, calls: Int, since: Date?) {
            self.state = state
            self.room = room
            self.by = by
            self.calls = calls
            self.since = since
        }

        public static let waiting = Place(state: .waiting, room: nil, by: nil, calls: 0, since: nil)

        /// "with kim in 진료실 2", in words for a refusal.
        var whereAbouts: String {
            let what = state == .inExam ? "in an exam with" : "in consultation with"
            return "\(what) \(by ?? "someone") in \(room ?? "a room")"
        }
    }

    /// A step that can be taken back: what it was, who made it, when, and the place before it.
    public struct Step: Sendable, Equatable, Codable {
        public var transition: String
        public var by: String
        public var at: Date
        public var before: Place
    }

    /// Why a step does not fit the place (the aggregate answers it as 409 in its own terms).
    public struct Refusal: Error, Sendable, Equatable {
        public var reason: String

        public init(reason: String) { self.reason = reason }
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

    private mutating func move(to next: Place, transition: String, by actor: String, at now: Date) {
        last = Step(transition: transition, by: actor, at: now, before: place)
        place = next
    }

    /// Back to waiting, with nothing to take back (the patient went to their exams).
    public mutating func reset() {
        place = .waiting
        last = nil
    }

    /// 호출, or 재호출 when the same person calls again: the patient is asked to `room` (already
    /// checked as one the caller may call to). Answers `CALL` or `RECALL`.
    public mutating func call(room: String, by actor: String, at now: Date, in layout: ClinicLayout)
        throws(Refusal) -> String
    {
        let place = current(at: now, returnMinutes: layout.noShowReturnMinutes)
        switch place.state {
        case .called where place.by == actor:
            var next = place
            next.calls += 1
            next.room = room
            next.since = now
            move(to: next, transition: "RECALL", by: actor, at: now)
            return "RECALL"
        case .called:
            throw Refusal(reason: "already called by \(place.by ?? "someone") to \(place.room ?? "a room")")
        case .inConsultation, .inExam:
            throw Refusal(reason: place.whereAbouts)
        case .waiting, .noShow:
            move(to: Place(state: .called, room: room, by: actor, calls: 1, since: now), transition: "CALL", by: actor, at: now)
            return "CALL"
        }
    }

    /// 시작: the patient is in `room` (the room they were called to when none is given), now
    /// `state` (with the doctor or the examiner). `check` refuses a room the caller may not use.
    public mutating func start(
        room: String?, as state: State, by actor: String, at now: Date, in layout: ClinicLayout,
        check: (String) throws(Refusal) -> Void
    ) throws(Refusal) -> String {
        let place = current(at: now, returnMinutes: layout.noShowReturnMinutes)
        if place.state == .called, place.by != actor {
            throw Refusal(reason: "called by \(place.by ?? "someone") to \(place.room ?? "a room")")
        }
        if place.state == .inConsultation || place.state == .inExam {
            throw Refusal(reason: "already \(place.whereAbouts)")
        }
        guard let room = room ?? (place.state == .called ? place.room : nil) else {
            throw Refusal(reason: "say which room: the patient was not called to one")
        }
        try check(room)
        move(to: Place(state: state, room: room, by: actor, calls: place.calls, since: now), transition: "START", by: actor, at: now)
        return "START"
    }

    /// 부재: the called patient did not come after the layout's number of calls.
    public mutating func markNoShow(by actor: String, at now: Date, in layout: ClinicLayout) throws(Refusal) -> String {
        let place = current(at: now, returnMinutes: layout.noShowReturnMinutes)
        guard place.state == .called else { throw Refusal(reason: "only a called patient can be absent") }
        guard place.calls >= layout.callsBeforeNoShow else {
            throw Refusal(reason: "called \(place.calls) of \(layout.callsBeforeNoShow) times: call again first")
        }
        move(
            to: Place(state: .noShow, room: nil, by: actor, calls: place.calls, since: now), transition: "NO_SHOW", by: actor,
            at: now)
        return "NO_SHOW"
    }

    /// 되돌리기: takes back the last call, start or absence, by whoever made it, within the
    /// layout's `undoSeconds`.
    public mutating func undo(by actor: String, at now: Date, in layout: ClinicLayout) throws(Refusal) -> String {
        guard let last else { throw Refusal(reason: "there is nothing to take back") }
        guard last.by == actor else { throw Refusal(reason: "only \(last.by) can take back their \(last.transition)") }
        guard now.timeIntervalSince(last.at) <= Double(layout.undoSeconds) else {
            throw Refusal(reason: "a step can be taken back within \(layout.undoSeconds) seconds")
        }
        place = last.before
        self.last = nil
        return "UNDO"
    }
}
