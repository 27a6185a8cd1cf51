import Foundation
import SharedKernel
import Synchronization

/// The clinic layout a process works by: the settings file's at start (version 0), then the one
/// an administrator saved (`PUT /admin/clinic`, versions from 1), as the process last read it.
/// One per process, shared by its services and screens, so a change shows in all of them at once.
public final class ClinicSource: Sendable {
    private let state: Mutex<(layout: ClinicLayout, version: Int)>

    public init(_ layout: ClinicLayout, version: Int = 0) {
        state = Mutex((layout, version))
    }

    public var layout: ClinicLayout { state.withLock { $0.layout } }
    public var version: Int { state.withLock { $0.version } }

    /// Takes `layout` if it is newer than the one held; says whether it did.
    @discardableResult
    public func replace(with layout: ClinicLayout, version: Int) -> Bool {
        state.withLock { current in
            guard version > current.version else { return false }
            current = (layout, version)
            return true
        }
    }
}
