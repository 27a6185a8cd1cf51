import DiagnosisService
import ExaminationService
import PatientManagementService
import ReceptionService
import ServiceKit

/// The one list of the domain services. What runs, routes, migrates, is configured or is named
/// on the command line derives from it (see docs/adding-a-service.md): adding a service is its
/// own targets and one entry here.
public enum ServiceCatalog {
    /// In start order.
    public static let domain: [any HospitalService.Type] = [
        ReceptionService.self, DiagnosisService.self, ExaminationService.self, PatientManagementService.self,
    ]

    /// The service of that name.
    static func type(of name: ServiceName) -> (any HospitalService.Type)? {
        domain.first { $0.name == name.rawValue }
    }
}

/// A part a process can run: the gateway, or one of the catalog's services.
public struct ServiceName: RawRepresentable, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    public let rawValue: String

    /// Only the gateway's or a catalog service's name.
    public init?(rawValue: String) {
        guard rawValue == "gateway" || ServiceCatalog.domain.contains(where: { $0.name == rawValue }) else {
            return nil
        }
        self.rawValue = rawValue
    }

    init(_ service: any HospitalService.Type) { rawValue = service.name }

    private init(gateway: Void) { rawValue = "gateway" }

    /// The single entry (:8088).
    public static let gateway = ServiceName(gateway: ())
    // Shorthands for the code and tests that name one service.
    public static let reception = ServiceName(ReceptionService.self)
    public static let diagnosis = ServiceName(DiagnosisService.self)
    public static let examination = ServiceName(ExaminationService.self)
    public static let patientManagement = ServiceName(PatientManagementService.self)

    /// The gateway, then the catalog's services in start order.
    public static var allCases: [ServiceName] { [.gateway] + ServiceCatalog.domain.map(ServiceName.init) }

    /// The domain service's descriptor (nil for the gateway).
    var service: (any HospitalService.Type)? { ServiceCatalog.type(of: self) }

    public var defaultPort: Int { service?.defaultPort ?? 8088 }

    /// The environment variable's stem, e.g. PATIENT_MANAGEMENT.
    var environmentStem: String { rawValue.uppercased().replacingOccurrences(of: "-", with: "_") }

    public var description: String { rawValue }
}
