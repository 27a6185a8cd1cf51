/// A W3C Trace Context `traceparent` value (version 00).
///
/// Events carry it so that a visit's journey across services can be followed as one trace.
public struct TraceParent: Sendable, Equatable, CustomStringConvertible {
    public var traceId: String
    public var parentId: String
    public var flags: String
    /// True when `parentId` is a real span's (from the tracing system), so work caused by it
    /// names it as parent rather than a made-up child.
    public private(set) var isSpan = false

    /// The `traceparent` of a real span.
    public init?(span header: String) {
        self.init(header)
        isSpan = true
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else is nil (and a new trace starts).
    public init?(_ header: String) {
        let parts = header.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00",
            parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
            parts.dropFirst().allSatisfy({ $0.allSatisfy(\.isHexDigit) }),
            parts[1] != String(repeating: "0", count: 32), parts[2] != String(repeating: "0", count: 16)
        else { return nil }
        traceId = parts[1].lowercased()
        parentId = parts[2].lowercased()
        flags = parts[3].lowercased()
    }

    private init(traceId: String, parentId: String, flags: String) {
        self.traceId = traceId
        self.parentId = parentId
        self.flags = flags
    }

    /// A new root trace.
    public static func root() -> TraceParent {
        TraceParent(traceId: randomHex(bytes: 16), parentId: randomHex(bytes: 8), flags: "01")
    }

    /// What an event caused by this trace carries: the real span itself, or without tracing a
    /// child id of the same trace (so logs of one journey still share the trace id).
    public var forEvent: TraceParent { isSpan ? self : child() }

    /// A child span of the same trace, for work caused by this one.
    public func child() -> TraceParent {
        TraceParent(traceId: traceId, parentId: Self.randomHex(bytes: 8), flags: flags)
    }

    /// Continues the trace of `header` if it is valid, or starts a new one.
    public static func continuing(_ header: String?) -> TraceParent {
        header.flatMap { TraceParent($0) }?.child() ?? .root()
    }

    public var description: String { "00-\(traceId)-\(parentId)-\(flags)" }

    private static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }
}
