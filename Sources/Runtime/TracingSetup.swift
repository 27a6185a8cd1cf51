import Foundation
import Logging
import OTel
import ServiceKit
import ServiceLifecycle
import Tracing

/// Traces over OTLP, configured by the standard `OTEL_*` variables. Off unless an endpoint is
/// set (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): then no tracer is
/// installed and no span middleware either.
public enum TracingSetup {
    /// Installs the OTLP tracer for this process and returns the service that exports its spans
    /// (run it in the process's service group), or nil when tracing is off.
    public static func bootstrap(
        environment: [String: String] = ProcessInfo.processInfo.environment, services: [ServiceName], logger: Logger
    ) throws -> (any Service)? {
        let endpoint = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
        guard let endpoint, !endpoint.isEmpty, environment["OTEL_SDK_DISABLED"]?.lowercased() != "true",
            environment["OTEL_TRACES_EXPORTER"]?.lowercased() != "none"
        else { return nil }
        var configuration = OTel.Configuration.default
        // One process may run several services: one service name each when alone, else the
        // system's (every span also says its service in `hospital.service`).
        configuration.serviceName = services.count == 1 ? "hospital-\(services[0].rawValue)" : "hospital"
        // A span follows its caller's decision (a request's `traceparent`, an event's envelope);
        // a new trace is sampled. `OTEL_TRACES_SAMPLER` overrides it, e.g.
        // `parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG=0.1` on a busy system.
        configuration.traces.sampler = .parentBasedAlwaysOn
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.diagnosticLogLevel = .warning
        let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(tracer)
        Traces.turnOn()
        logger.info("exporting traces over OTLP", metadata: ["endpoint": "\(endpoint)"])
        return service
    }
}
