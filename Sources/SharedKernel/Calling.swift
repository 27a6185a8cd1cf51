import Foundation

/// How the desk ranks a visit in its department's queue (대기 순서): 응급 first, then those the
/// desk marked for consideration (고령/장애 배려), then everyone else; within a rank, by arrival.
public enum QueuePriority: String, Sendable, Codable, CaseIterable {
    case emergency = "EMERGENCY"
    case care = "CARE"
    case normal = "NORMAL"

    /// Lower goes first.
    public var rank: Int {
        switch self {
        case .emergency: 0
        case .care: 1
        case .normal: 2
        }
    }
}

/// 대기 번호: what staff call out and the waiting-room display shows, e.g. `A-012` (내과's
/// twelfth visit today). Numbers run per department and day; a department without a letter in
/// the clinic layout gets the number alone (`012`).
public enum QueueNumber {
    public static func format(prefix: String?, number: Int) -> String {
        let digits = number < 1000 ? String(format: "%03d", number) : String(number)
        guard let prefix, !prefix.isEmpty else { return digits }
        return "\(prefix)-\(digits)"
    }
}

/// A name as a waiting room may see it: the first and last letters, the rest starred
/// (홍길동 → 홍*동, 남궁민수 → 남**수, 김철 → 김*, 이 → *). Spaces are kept where they are.
public enum NameMask {
    public static func masked(_ name: String) -> String {
        let letters = Array(name.trimmingCharacters(in: .whitespacesAndNewlines))
        let positions = letters.indices.filter { !letters[$0].isWhitespace }
        guard let first = positions.first, let last = positions.last else { return "" }
        if positions.count == 1 { return "*" }
        var shown = letters
        for i in positions where i != first && (i != last || positions.count == 2) { shown[i] = "*" }
        return String(shown)
    }
}

/// The clinic as the calling screens know it: each department's letter and rooms (진료실), and
/// the rules of calling. From the settings file `HOSPITAL_CLINIC_FILE` (JSON), checked at start;
/// without one, ``standard``.
public struct ClinicLayout: Sendable, Codable, Equatable {
    public struct Department: Sendable, Codable, Equatable {
        /// The department's name as the desk enters it (내과).
        public var name: String
        /// One capital letter, A to Z, before its queue numbers.
        public var prefix: String
        /// Its consultation rooms (진료실 1 …), where its doctors call patients to.
        public var rooms: [String]

        public init(name: String, prefix: String, rooms: [String]) {
            self.name = name
            self.prefix = prefix
            self.rooms = rooms
        }
    }

    /// A room where exams are performed (검사실): the exam codes it performs (none listed: every
    /// exam). Its examiners call the visits waiting for those exams to it.
    public struct ExamRoom: Sendable, Codable, Equatable {
        public var name: String
        public var exams: [String]

        public init(name: String, exams: [String] = []) {
            self.name = name
            self.exams = exams
        }

        public func performs(_ code: String) -> Bool { exams.isEmpty || exams.contains(code) }

        private enum CodingKeys: String, CodingKey { case name, exams }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            exams = try c.decodeIfPresent([String].self, forKey: .exams) ?? []
        }
    }

    public var departments: [Department]
    /// 검사실 (at least one).
    public var examRooms: [ExamRoom]
    /// 부재: a called patient may be marked absent after this many calls (1 to 10).
    public var callsBeforeNoShow: Int
    /// An absent patient is back in the queue this many minutes later (0: held until called
    /// again by hand; at most 240).
    public var noShowReturnMinutes: Int
    /// A call, start or no-show can be taken back by whoever made it within this many seconds
    /// (a wrong click; 0 to 600).
    public var undoSeconds: Int
    /// When a wait raises a hand: per stage, and per department where one says so.
    public var waitAlerts: [WaitAlert]

    public init(
        departments: [Department], examRooms: [ExamRoom] = ClinicLayout.standardExamRooms, callsBeforeNoShow: Int = 3,
        noShowReturnMinutes: Int = 10, undoSeconds: Int = 60, waitAlerts: [WaitAlert] = WaitAlert.standard
    ) {
        self.departments = departments
        self.examRooms = examRooms
        self.callsBeforeNoShow = callsBeforeNoShow
        self.noShowReturnMinutes = noShowReturnMinutes
        self.undoSeconds = undoSeconds
        self.waitAlerts = waitAlerts
    }

    /// Without a settings file: the departments a small clinic has, a room or two each.
    public static let standard = ClinicLayout(departments: [
        Department(name: "내과", prefix: "A", rooms: ["진료실 1", "진료실 2"]),
        Department(name: "외과", prefix: "B", rooms: ["진료실 3"]),
        Department(name: "정형외과", prefix: "C", rooms: ["진료실 4"]),
        Department(name: "소아청소년과", prefix: "D", rooms: ["진료실 5"]),
        Department(name: "이비인후과", prefix: "E", rooms: ["진료실 6"]),
        Department(name: "가정의학과", prefix: "F", rooms: ["진료실 7"]),
    ])

    /// Without exam rooms in the settings file: one that performs every exam, one for imaging.
    public static let standardExamRooms = [
        ExamRoom(name: "검사실 1"),
        ExamRoom(name: "영상검사실", exams: ["XRAY", "CT", "MRI", "US"]),
    ]

    public func examRoom(named name: String) -> ExamRoom? {
        examRooms.first { $0.name == name }
    }

    public func department(named name: String?) -> Department? {
        guard let name else { return nil }
        return departments.first { $0.name == name }
    }

    /// How a wait of `minutes` in `stage` of `department` stands against the clinic's alerts (a
    /// department's own alert before the one for every department).
    public func waitLevel(_ stage: WaitStage, department: String?, minutes: Double) -> WaitLevel {
        guard let alert = alert(for: stage, department: department) else { return .normal }
        if minutes >= alert.redMinutes { return .red }
        if minutes >= alert.amberMinutes { return .amber }
        return .normal
    }

    public func alert(for stage: WaitStage, department: String?) -> WaitAlert? {
        waitAlerts.first { $0.stage == stage && $0.department != nil && $0.department == department }
            ?? waitAlerts.first { $0.stage == stage && $0.department == nil }
    }

    /// The department whose room `room` is.
    public func department(ofRoom room: String) -> Department? {
        departments.first { $0.rooms.contains(room) }
    }

    private enum CodingKeys: String, CodingKey {
        case departments, examRooms, callsBeforeNoShow, noShowReturnMinutes, undoSeconds, waitAlerts
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        departments = try c.decode([Department].self, forKey: .departments)
        examRooms = try c.decodeIfPresent([ExamRoom].self, forKey: .examRooms) ?? Self.standardExamRooms
        callsBeforeNoShow = try c.decodeIfPresent(Int.self, forKey: .callsBeforeNoShow) ?? 3
        noShowReturnMinutes = try c.decodeIfPresent(Int.self, forKey: .noShowReturnMinutes) ?? 10
        undoSeconds = try c.decodeIfPresent(Int.self, forKey: .undoSeconds) ?? 60
        waitAlerts = try c.decodeIfPresent([WaitAlert].self, forKey: .waitAlerts) ?? WaitAlert.standard
    }

    /// A layout read from `data` (JSON), or every rule it breaks, in words.
    public static func parse(_ data: Data) throws(ClinicLayoutError) -> ClinicLayout {
        let layout: ClinicLayout
        do {
            layout = try JSONDecoder().decode(ClinicLayout.self, from: data)
        } catch {
            throw ClinicLayoutError(problems: ["it is not a clinic layout in JSON: \(error)"])
        }
        let problems = layout.problems
        guard problems.isEmpty else { throw ClinicLayoutError(problems: problems) }
        return layout
    }

    /// What is wrong with this layout (empty: nothing).
    public var problems: [String] {
        var problems: [String] = []
        if departments.isEmpty { problems.append("no departments") }
        var names = Set<String>(), prefixes = Set<String>(), rooms = Set<String>()
        for department in departments {
            let name = department.name
            if name.trimmingCharacters(in: .whitespaces) != name || name.isEmpty || name.count > 50
                || name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0.properties.generalCategory == .format })
            {
                problems.append("department \"\(name)\": a name of 1 to 50 letters, without control characters or spaces around it")
            }
            if !names.insert(name).inserted { problems.append("department \"\(name)\" is listed twice") }
            if department.prefix.count != 1 || !department.prefix.allSatisfy({ $0.isASCII && $0.isUppercase }) {
                problems.append("department \"\(name)\": prefix must be one capital letter A to Z, not \"\(department.prefix)\"")
            } else if !prefixes.insert(department.prefix).inserted {
                problems.append("department \"\(name)\": prefix \(department.prefix) is another department's too")
            }
            if department.rooms.isEmpty { problems.append("department \"\(name)\" has no rooms") }
            for room in department.rooms {
                if room.trimmingCharacters(in: .whitespaces) != room || room.isEmpty || room.count > 30 {
                    problems.append("department \"\(name)\": room \"\(room)\" must be 1 to 30 letters without spaces around")
                }
                if !rooms.insert(room).inserted { problems.append("room \"\(room)\" is listed twice") }
            }
        }
        if examRooms.isEmpty { problems.append("no exam rooms") }
        for room in examRooms {
            let name = room.name
            if name.trimmingCharacters(in: .whitespaces) != name || name.isEmpty || name.count > 30 {
                problems.append("exam room \"\(name)\" must be 1 to 30 letters without spaces around")
            }
            if !rooms.insert(name).inserted { problems.append("room \"\(name)\" is listed twice") }
            for code in room.exams where code.isEmpty || code.count > 50 || code.trimmingCharacters(in: .whitespaces) != code {
                problems.append("exam room \"\(name)\": exam code \"\(code)\" must be 1 to 50 letters without spaces around")
            }
        }
        if !(1...10).contains(callsBeforeNoShow) { problems.append("callsBeforeNoShow must be 1 to 10") }
        if !(0...240).contains(noShowReturnMinutes) { problems.append("noShowReturnMinutes must be 0 to 240") }
        if !(0...600).contains(undoSeconds) { problems.append("undoSeconds must be 0 to 600") }
        var alerted = Set<String>()
        for alert in waitAlerts {
            let key = "\(alert.stage.rawValue) \(alert.department ?? "*")"
            if !alerted.insert(key).inserted { problems.append("waitAlerts: \(key) is listed twice") }
            if let department = alert.department, self.department(named: department) == nil {
                problems.append("waitAlerts: \"\(department)\" is not one of the departments")
            }
            if !(alert.amberMinutes > 0 && alert.amberMinutes < alert.redMinutes && alert.redMinutes <= 24 * 60) {
                problems.append("waitAlerts: \(key) needs 0 < amberMinutes < redMinutes <= 1440")
            }
        }
        return problems
    }
}

public struct ClinicLayoutError: Error, Equatable, CustomStringConvertible {
    public var problems: [String]
    public var description: String { problems.joined(separator: "; ") }
}

/// Where a visit waits, for the wait alerts: for the doctor (대기, also when back from exams and
/// after a no-show), called but not yet in (호출), with the doctor (진료 중), or at its exams.
public enum WaitStage: String, Sendable, Codable, CaseIterable {
    case waiting = "WAITING"
    case called = "CALLED"
    case inConsultation = "IN_CONSULTATION"
    case exams = "EXAMS"
}

/// How long is too long in one stage: amber from `amberMinutes`, red from `redMinutes`
/// (fractions of a minute allowed), for one department or, without one, for every department.
public struct WaitAlert: Sendable, Codable, Equatable {
    public var stage: WaitStage
    public var department: String?
    public var amberMinutes: Double
    public var redMinutes: Double

    public init(stage: WaitStage, department: String? = nil, amberMinutes: Double, redMinutes: Double) {
        self.stage = stage
        self.department = department
        self.amberMinutes = amberMinutes
        self.redMinutes = redMinutes
    }

    /// Waiting 30/60 minutes, called 10/20 (called and not come), with the doctor 30/60, at
    /// exams 60/120.
    public static let standard: [WaitAlert] = [
        WaitAlert(stage: .waiting, amberMinutes: 30, redMinutes: 60),
        WaitAlert(stage: .called, amberMinutes: 10, redMinutes: 20),
        WaitAlert(stage: .inConsultation, amberMinutes: 30, redMinutes: 60),
        WaitAlert(stage: .exams, amberMinutes: 60, redMinutes: 120),
    ]
}

public enum WaitLevel: String, Sendable, Codable {
    case normal, amber, red
}
