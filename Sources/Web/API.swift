import Foundation
import HTTPProxy
import ServiceKit
import Tracing
import Vapor

/// The screens' client of the public API: they know the services only through their HTTP API,
/// as any other client would.
struct API: Sendable {
    /// What went wrong with a call, in terms a screen can phrase.
    enum Failure: Error {
        case problem(WireProblem)
        /// The service (by name) that owns the path did not answer.
        case unavailable(String)
    }

    let client: any Client
    /// Where each path prefix is served (see `WebScreens.Upstream`).
    let upstreams: [String: WebScreens.Upstream]
    /// The signed-in user's access token, sent with every call.
    let token: String?
    /// The browser's address, for the services' audit trail.
    let clientAddress: String?

    func get<T: Decodable>(_ path: String, as: T.Type = T.self) async throws -> T {
        try await send(.GET, path, body: nil, headers: [:])
    }

    func post<T: Decodable>(
        _ path: String, _ body: [String: Any], headers: [String: String] = [:], as: T.Type = T.self
    ) async throws -> T {
        try await send(.POST, path, body: body, headers: headers)
    }

    /// PATCH, answering nothing the screen needs.
    func patch(_ path: String, _ body: [String: Any]) async throws {
        let _: IgnoredAnswer = try await send(.PATCH, path, body: body, headers: [:])
    }

    private struct IgnoredAnswer: Decodable {}

    private func send<T: Decodable>(
        _ method: HTTPMethod, _ path: String, body: [String: Any]?, headers: [String: String]
    ) async throws -> T {
        let upstream = try WebScreens.upstream(of: path, in: upstreams)
        let service = upstream.service
        let uri = URI(string: upstream.url.absoluteString + path)
        var httpHeaders = HTTPHeaders(headers.map { ($0.key, $0.value) })
        if body != nil { httpHeaders.contentType = .json }
        if let token { httpHeaders.bearerAuthorization = BearerAuthorization(token: token) }
        if let clientAddress { httpHeaders.replaceOrAdd(name: "X-Forwarded-For", value: clientAddress) }
        // The page request's trace goes on into the API (its server span is the current one).
        Traces.propagate(TracingContext.current, into: &httpHeaders)
        let response: ClientResponse
        do {
            response = try await Resend.sending(method, httpHeaders, logger: nil, service: service) {
                try await client.send(method, headers: httpHeaders, to: uri) { request in
                    if let body { request.body = ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)) }
                }
            }
        } catch {
            throw Failure.unavailable(service)
        }
        let data = response.body.map { Data(buffer: $0) } ?? Data()
        guard (200..<300).contains(Int(response.status.code)) else {
            if response.status == .serviceUnavailable || response.status == .badGateway {
                throw Failure.unavailable(service)
            }
            let problem =
                (try? JSONDecoder().decode(WireProblem.self, from: data))
                ?? WireProblem(type: "", status: Int(response.status.code), detail: "", currentState: nil, errors: nil)
            throw Failure.problem(problem)
        }
        return try APIJSON.decoder().decode(T.self, from: data)
    }
}

/// A problem+json answer as it arrives.
struct WireProblem: Decodable, Sendable {
    struct FieldError: Decodable, Sendable {
        var field: String
        var code: String
    }

    var type: String
    var status: Int
    var detail: String
    var currentState: String?
    var errors: [FieldError]?
    /// For a possible duplicate patient: the registered records it matches.
    var candidates: [Candidate]?

    struct Candidate: Decodable, Sendable {
        var id: UUID
        var chartNumber: String
        var name: String
        var birthDate: String?
        var sex: String
        var age: Int?
    }
}

struct ListOf<Item: Decodable & Sendable>: Decodable, Sendable {
    var items: [Item]
    var total: Int?
    var totalCapped: Bool?
    var next: String?
}

struct VisitDTO: Decodable, Sendable {
    var receptionId: UUID
    var patientId: UUID?
    var sex: String?
    var age: Int?
    var patientName: String?
    var department: String?
    var status: String
    var statusSince: Date?
    var receivedAt: Date?
    var queueNumber: String?
    var priority: String?
    var queueState: String?
    var room: String?
    var calls: Int?
    var wait: Wait?

    struct Wait: Decodable, Sendable {
        var stage: String
        var since: Date
        var level: String
    }
}

/// GET /patientManagements/waits.
struct WaitsDTO: Decodable, Sendable {
    struct Department: Decodable, Sendable {
        struct Today: Decodable, Sendable {
            var called: Int
            var averageMinutes: Double?
            var p90Minutes: Double?
        }

        var department: String
        var open: Int
        var amber: Int
        var red: Int
        var today: Today
    }

    struct TooLong: Decodable, Sendable {
        var receptionId: UUID
        var queueNumber: String?
        var patientName: String?
        var department: String?
        var stage: String
        var minutes: Double
        var level: String
    }

    var departments: [Department]
    var tooLong: [TooLong]
}

struct ReceptionDTO: Decodable, Sendable {
    var id: UUID
    var status: String
    var patientName: String
    /// The registry's patient.
    var patientId: UUID?
    /// 환자번호.
    var chartNumber: String?
    var sex: String?
    var age: Int?
    var birthDate: String?
    var department: String?
    var receivedAt: Date?
    var queueNumber: String?
    /// `EMERGENCY`, `CARE` or `NORMAL`.
    var priority: String?
}

/// `POST /patients/lookup`'s answer.
struct ChartNumbersDTO: Decodable, Sendable {
    struct Entry: Decodable, Sendable {
        var id: UUID
        var chartNumber: String
    }

    var items: [Entry]
}

struct DiagnosisDTO: Decodable, Sendable {
    struct Order: Decodable, Sendable {
        var orderId: UUID
        var code: String
        var name: String
        var status: String
        var result: String?
        var cancelReason: String?
        var orderedAt: Date
        var examinationId: UUID?
        var attachments: [AttachmentRef]?
    }

    struct AttachmentRef: Decodable, Sendable {
        var id: UUID
    }

    var id: UUID
    var receptionId: UUID
    var patientId: UUID?
    var patientName: String
    var sex: String?
    var age: Int?
    var birthDate: String?
    var department: String?
    var symptom: String?
    var status: String
    var orders: [Order]
    var createdAt: Date
    var closingNote: String?
    /// 호출: the visit's place in its department's queue.
    var queueNumber: String?
    var priority: String?
    var queueState: String?
    var room: String?
    var calledBy: String?
    var calls: Int?
    var queueSince: Date?
    var undoable: Undoable?

    struct Undoable: Decodable, Sendable {
        var transition: String
        var by: String
        var until: Date
    }
}

/// GET /diagnoses/queue: a department's visits waiting for a doctor, in calling order.
struct QueueDTO: Decodable, Sendable {
    var department: String
    var rooms: [String]
    var callsBeforeNoShow: Int
    var items: [DiagnosisDTO]
    var atExams: [DiagnosisDTO]?
}

struct ExamDTO: Decodable, Sendable {
    var id: UUID
    var diagnosisId: UUID
    var patientId: UUID?
    var sex: String?
    var age: Int?
    var patientName: String
    var code: String
    var name: String
    var status: String
    var requestedAt: Date
    /// The exam rooms' queue (absent from an older examination service).
    var queueNumber: String?
    var priority: String?
    var queueState: String?
    var room: String?
    var calledBy: String?
    var calls: Int?
    var undoable: DiagnosisDTO.Undoable?
}

/// GET /examinations/queue: the exams an exam room performs, waiting, in calling order.
struct ExamQueueDTO: Decodable, Sendable {
    var room: String?
    var rooms: [String]
    var callsBeforeNoShow: Int
    var items: [ExamDTO]
}
