import Foundation
import Vapor

/// `application/x-www-form-urlencoded`, as queries and HTML forms send it: `+` is a space, and a
/// malformed escape leaves the text as it came rather than failing.
public enum FormEncoding {
    public static func pairs(_ raw: String) -> [(name: String, value: String)] {
        raw.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = decode(parts[0])
            return (name, parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    private static func decode(_ part: Substring) -> String {
        let spaced = part.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }
}

extension Request {
    /// The fields of an HTML form post, in order (a name may repeat, as checkboxes do).
    public var formFields: [(name: String, value: String)] {
        guard let buffer = body.data else { return [] }
        return FormEncoding.pairs(String(decoding: buffer.readableBytesView, as: UTF8.self))
    }

    /// The last value of a form field, trimmed; nil when absent or blank.
    public func formValue(_ name: String) -> String? {
        let value = formFields.last { $0.name == name }?.value.trimmingCharacters(in: .whitespacesAndNewlines)
        return value?.isEmpty == false ? value : nil
    }
}
