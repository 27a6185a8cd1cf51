import Contracts
import Instrumentation
import Tracing

/// Between the tracing system's context and an envelope's `traceparent`. With no tracer
/// installed (the default), every function here gives nil or an empty context, at no cost.
public enum TraceContext {
    /// The W3C `traceparent` of `context` (its current span), as the installed propagator writes it.
    public static func traceparent(of context: ServiceContext?) -> String? {
        guard let context else { return nil }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryCarrier())
        return carrier["traceparent"]
    }

    /// The current span's `traceparent`, if a span is current.
    public static var current: TraceParent? {
        traceparent(of: ServiceContext.current).flatMap(TraceParent.init(span:))
    }

    /// A context whose parent is the span `traceparent` names (top level if none).
    public static func context(of traceparent: String?) -> ServiceContext {
        var context = ServiceContext.topLevel
        if let traceparent {
            InstrumentationSystem.instrument.extract(
                ["traceparent": traceparent], into: &context, using: DictionaryCarrier())
        }
        return context
    }
}

struct DictionaryCarrier: Injector, Extractor {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }

    func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}
