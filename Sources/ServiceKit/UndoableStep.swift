import Foundation
import SharedKernel
import Vapor

/// A calling step its maker may still take back (a consultation's or an exam's), as the API
/// answers it: what it was, who made it, until when.
public struct UndoableStep: Content, Equatable {
    public var transition: String
    public var by: String
    public var until: Date

    /// The last step of `calling`, while the layout's undo window lasts and the entry is open.
    public init?(_ calling: Calling, layout: ClinicLayout, now: Date, open: Bool) {
        guard let step = calling.last, open else { return nil }
        let until = step.at.addingTimeInterval(Double(layout.undoSeconds))
        guard until > now else { return nil }
        self.transition = step.transition
        self.by = step.by
        self.until = until
    }
}
