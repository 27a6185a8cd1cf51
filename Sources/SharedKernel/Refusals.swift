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

    /// A required text: trimmed, not empty, at most `maxLength` characters.
    public mutating func required(_ value: String?, _ field: String, maxLength: Int) -> String {
        guard let value else {
            fail(field, .required, "is required")
            return ""
        }
        let trimmed = value.trimmingWhitespace
        if trimmed.isEmpty {
            fail(field, .required, "must not be empty")
        } else if trimmed.count > maxLength {
            fail(field, .tooLong, "must be at most \(maxLength) characters")
        }
        return trimmed
    }

    /// An optional text: trimmed; empty counts as absent; at most `maxLength` characters.
    public mutating func optional(_ value: String?, _ field: String, maxLength: Int) -> String? {
        guard let trimmed = value?.trimmingWhitespace, !trimmed.isEmpty else { return nil }
        if trimmed.count > maxLength {
            fail(field, .tooLong, "must be at most \(maxLength) characters")
        }
        return trimmed
    }

    /// Throws the collected failures, if any.
    public func check() throws(ValidationFailure) {
        if !failures.isEmpty { throw ValidationFailure(failures) }
    }
}

extension String {
    var trimmingWhitespace: String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
