/// A command that does not fit the aggregate's current state (answered as 409 Conflict).
public struct InvalidTransition: Error, Equatable, Sendable {
    /// The aggregate's kind, e.g. "reception".
    public var aggregate: String
    /// The state the aggregate is in, e.g. "COMPLETED".
    public var currentState: String
    /// What was attempted, e.g. "cancel".
    public var attempted: String
    /// Why, in a sentence, when the state alone does not say it.
    public var reason: String?

    public init(aggregate: String, currentState: String, attempted: String, reason: String? = nil) {
        self.aggregate = aggregate
        self.currentState = currentState
        self.attempted = attempted
        self.reason = reason
    }
}

/// Input that breaks a rule of the domain, field by field (answered as 422).
public struct ValidationFailure: Error, Equatable, Sendable {
    public struct Field: Equatable, Sendable, Codable {
        /// What broke the rule, for clients that phrase it in their own words.
        public enum Code: String, Sendable, Codable {
            case required, tooLong, tooMany, invalidFormat, invalidCharacters, inFuture, duplicate, outOfRange
        }

        public var field: String
        public var code: Code
        /// The rule in English, for developers.
        public var message: String

        public init(field: String, code: Code, message: String) {
            self.field = field
            self.code = code
            self.message = message
        }
    }

    public var fields: [Field]

    public init(_ fields: [Field]) { self.fields = fields }
}

/// Collects field errors while a command is built, then refuses it once with all of them.
public struct FieldValidation: Sendable {
    public private(set) var failures: [ValidationFailure.Field] = []

    public init() {}

    public mutating func fail(_ field: String, _ code: ValidationFailure.Field.Code, _ message: String) {
        failures.append(.init(field: field, code: code, message: message))
    }

    /// A required text: trimmed, not empty, at most `maxLength` characters (see `checkText`).
    public mutating func required(_ value: String?, _ field: String, maxLength: Int, multiline: Bool = false) -> String
    {
        guard let value else {
            fail(field, .required, "is required")
            return ""
        }
        let trimmed = value.trimmingWhitespace
        if trimmed.isEmpty || trimmed.isInvisible {
            fail(field, .required, "must not be empty")
        } else {
            checkText(trimmed, field, maxLength: maxLength, multiline: multiline)
        }
        return trimmed
    }

    /// An optional text: trimmed; empty counts as absent; at most `maxLength` characters.
    public mutating func optional(
        _ value: String?, _ field: String, maxLength: Int, multiline: Bool = false
    )
        -> String?
    {
        guard let trimmed = value?.trimmingWhitespace, !trimmed.isEmpty else { return nil }
        if trimmed.isInvisible {
            fail(field, .invalidCharacters, "must not be made only of invisible characters")
        } else {
            checkText(trimmed, field, maxLength: maxLength, multiline: multiline)
        }
        return trimmed
    }

    /// Lengths count what a person sees (grapheme clusters: 한 is one, 👩‍⚕️ is one), and the
    /// bytes are bounded too (16 per character, enough for 👩‍⚕️: one "character" with a thousand combining
    /// marks is refused). No NUL or other control character (line breaks and tabs only in
    /// `multiline` texts), and no bidirectional overrides, which can make a name read
    /// differently on the screen from what is stored.
    private mutating func checkText(_ text: String, _ field: String, maxLength: Int, multiline: Bool) {
        if text.count > maxLength || text.utf8.count > maxLength * 16 {
            fail(field, .tooLong, "must be at most \(maxLength) characters")
        }
        let refused = text.unicodeScalars.first { scalar in
            if multiline, scalar == "\n" || scalar == "\r" || scalar == "\t" { return false }
            let category = scalar.properties.generalCategory
            return category == .control || category == .lineSeparator || category == .paragraphSeparator
                || Self.bidiControls.contains(scalar.value) || Self.hidden.contains(scalar.value)
                || (0xE0000...0xE007F).contains(scalar.value) || scalar.properties.isNoncharacterCodePoint
        }
        if refused != nil {
            fail(
                field, .invalidCharacters,
                "must not contain control characters, line or paragraph separators, byte order marks, tag characters or text direction marks"
            )
        }
    }

    /// U+202A–U+202E (embeddings, overrides), U+2066–U+2069 (isolates), and the direction marks
    /// U+200E, U+200F and U+061C.
    private static let bidiControls: Set<UInt32> = [
        0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C,
    ]

    /// Characters that change nothing a person sees but what is stored: U+FEFF (the byte order
    /// mark, or zero-width no-break space) and U+2060 (word joiner). Tag characters
    /// (U+E0000–U+E007F) and line and paragraph separators (U+2028, U+2029) are refused too.
    private static let hidden: Set<UInt32> = [0xFEFF, 0x2060]

    /// Throws the collected failures, if any.
    public func check() throws(ValidationFailure) {
        if !failures.isEmpty { throw ValidationFailure(failures) }
    }
}

extension String {
    /// Nothing a person could see: only spaces, format characters (zero-width spaces and
    /// joiners, direction marks), variation selectors and marks with nothing to combine with.
    var isInvisible: Bool {
        unicodeScalars.allSatisfy { scalar in
            let p = scalar.properties
            return p.isWhitespace || p.isDefaultIgnorableCodePoint || p.isVariationSelector
                || [.format, .nonspacingMark, .enclosingMark, .control].contains(p.generalCategory)
                || scalar.value == 0x3164 || scalar.value == 0x115F || scalar.value == 0x1160
                || scalar.value == 0xFFA0  // Hangul fillers
        }
    }

    var trimmingWhitespace: String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}

/// 만 나이: whole years from a birth date to a day, both `YYYY-MM-DD` (nil if either is not one).
public enum Age {
    public static func years(born birthDate: String, on day: String) -> Int? {
        guard let born = ymd(birthDate), let today = ymd(day) else { return nil }
        var years = today.0 - born.0
        if (today.1, today.2) < (born.1, born.2) { years -= 1 }
        return max(years, 0)
    }

    private static func ymd(_ s: String) -> (Int, Int, Int)? {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
            let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2])
        else { return nil }
        return (y, m, d)
    }
}
