import Contracts
import Foundation
import Messaging
import SharedKernel
import Storage
import Vapor

/// An RFC 9457 problem body: the one shape of every error this API answers.
public struct Problem: Content, Equatable {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String
    /// For 409: the state the aggregate is in.
    public var currentState: String?
    /// For validation failures: each offending field.
    public var errors: [ValidationFailure.Field]?
    /// For a possible duplicate patient (409): the records it matches.
    public var candidates: [DuplicatePatients.Candidate]?

    public init(
        type: String, title: String, status: Int, detail: String, currentState: String? = nil,
        errors: [ValidationFailure.Field]? = nil, candidates: [DuplicatePatients.Candidate]? = nil
    ) {
        self.type = type
        self.title = title
        self.status = status
        self.detail = detail
        self.currentState = currentState
        self.errors = errors
        self.candidates = candidates
    }
}

/// A new patient (or a resident number) that matches records already registered: 409 with the
/// candidates, so the desk can pick the existing patient instead of registering a second one.
public struct DuplicatePatients: Error, Equatable, Sendable {
    public enum Kind: String, Sendable { case residentNumber, nameAndBirthDate }

    public struct Candidate: Codable, Equatable, Sendable {
        public var id: UUID
        public var chartNumber: String
        public var name: String
        public var birthDate: String?
        public var sex: String
        public var age: Int?

        public init(id: UUID, chartNumber: String, name: String, birthDate: String?, sex: String, age: Int?) {
            self.id = id
            self.chartNumber = chartNumber
            self.name = name
            self.birthDate = birthDate
            self.sex = sex
            self.age = age
        }
    }

    public var kind: Kind
    public var candidates: [Candidate]

    public init(kind: Kind, candidates: [Candidate]) {
        self.kind = kind
        self.candidates = candidates
    }
}

/// Errors of the application layer that are not domain refusals.
public enum AppError: Error, Equatable {
    /// No such resource (also for an id that is not even a UUID).
    case notFound(resource: String, id: String)
    /// A query parameter or header that cannot be understood.
    case invalidRequest([ValidationFailure.Field])
    /// The same Idempotency-Key was sent with a different request.
    case idempotencyKeyReused
    /// An upstream service did not answer (gateway).
    case serviceUnavailable(String)
    /// Not ready to serve (health).
    case notReady(String)
    /// An operation that does not fit a resource's state (outside the domain's aggregates).
    case conflict(currentState: String, detail: String)
    /// No valid credential: missing, forged, expired or for someone else (401).
    case unauthenticated
    /// Signed in, but the role may not do this (403).
    case forbidden
    /// A body of a type this operation does not take, said in `detail` (415).
    case unsupportedMediaType(String)
    /// A body over the operation's limit (413).
    case payloadTooLarge(String)
}

/// The one mapping of errors to HTTP responses, for every service and the gateway.
///
/// It keeps the real status of every error a client caused (4xx with a problem body that says
/// what to fix) and answers 500 only for a real fault, which it logs in full without echoing
/// internals to the client.
///
/// Futures, not async: an async middleware costs every request a hop onto a task and back.
public struct ProblemMiddleware: Middleware {
    public init() {}

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        next.respond(to: request).flatMapErrorThrowing { error in
            let problem = Self.problem(for: error)
            if problem.status >= 500, problem.status != 503 {
                request.logger.error(
                    "request failed",
                    metadata: ["error": "\(loggable(error))", "path": "\(request.url.path)"])
            }
            let response = Self.response(for: problem)
            if problem.status == 503 { response.headers.replaceOrAdd(name: .retryAfter, value: "1") }
            if problem.status == 401 {
                response.headers.replaceOrAdd(name: .wwwAuthenticate, value: #"Bearer realm="hospital""#)
            }
            return response
        }
    }

    public static func response(for problem: Problem) -> Response {
        let response = Response(status: HTTPResponseStatus(statusCode: problem.status))
        response.body = .init(data: (try? APIJSON.encoder().encode(problem)) ?? Data())
        response.headers.contentType = HTTPMediaType(
            type: "application", subType: "problem+json", parameters: ["charset": "utf-8"])
        return response
    }

    public static func problem(for error: any Error) -> Problem {
        switch error {
        case let refusal as InvalidTransition:
            let detail =
                "Cannot \(refusal.attempted) this \(refusal.aggregate): it is \(refusal.currentState)"
                + (refusal.reason.map { " (\($0))" } ?? "") + "."
            return Problem(
                type: "/problems/invalid-transition", title: "Conflict", status: 409, detail: detail,
                currentState: refusal.currentState)
        case let failure as ValidationFailure:
            let fields = failure.fields.map { "\($0.field) \($0.message)" }.joined(separator: "; ")
            return Problem(
                type: "/problems/validation", title: "Unprocessable Content", status: 422,
                detail: "The request is invalid: \(fields).", errors: failure.fields)
        case is ConcurrentModification:
            return Problem(
                type: "/problems/conflict", title: "Conflict", status: 409,
                detail: "Someone else changed this at the same moment; please reload and try again.")
        case let unknown as UnknownState:
            return Problem(
                type: "/problems/unknown-state", title: "Conflict", status: 409,
                detail:
                    "This \(unknown.resource) is in a state this version of the service does not know (\(unknown.state)); a newer version wrote it. Try again once the upgrade is complete.",
                currentState: unknown.state)
        case let duplicate as DuplicatePatients:
            var problem: Problem
            switch duplicate.kind {
            case .residentNumber:
                problem = Problem(
                    type: "/problems/duplicate-patient", title: "Conflict", status: 409,
                    detail:
                        "A patient with this resident registration number is already registered (chart number \(duplicate.candidates.first?.chartNumber ?? "?")): use that record.")
            case .nameAndBirthDate:
                problem = Problem(
                    type: "/problems/possible-duplicate", title: "Conflict", status: 409,
                    detail:
                        "Possible duplicate: \(duplicate.candidates.count) registered patient(s) have the same name and birth date (chart number \(duplicate.candidates.map(\.chartNumber).joined(separator: ", "))). Use one of them, or register again with confirmDistinct: true if this is someone else.")
            }
            problem.candidates = duplicate.candidates
            return problem
        case let appError as AppError:
            return problem(for: appError)
        case let decoding as DecodingError:
            return Problem(
                type: "/problems/malformed-request", title: "Bad Request", status: 400,
                detail: "The request body is not valid JSON for this operation: \(describe(decoding)).")
        case let abort as any AbortError:
            return problem(for: abort)
        case _ where DatabaseEngine.isLockWaitOver(error):
            return Problem(
                type: "/problems/service-unavailable", title: "Service Unavailable", status: 503,
                detail: "The database was busy for too long; the request was not applied. Please try again.")
        default:
            return Problem(
                type: "/problems/internal", title: "Internal Server Error", status: 500,
                detail: "Something went wrong on our side; the request was not applied. Please try again.")
        }
    }

    private static func problem(for error: AppError) -> Problem {
        switch error {
        case .notFound(let resource, let id):
            Problem(
                type: "/problems/not-found", title: "Not Found", status: 404,
                detail: "There is no \(resource) with id \(id).")
        case .invalidRequest(let fields):
            Problem(
                type: "/problems/validation", title: "Bad Request", status: 400,
                detail: "Invalid request: " + fields.map { "\($0.field) \($0.message)" }.joined(separator: "; ") + ".",
                errors: fields)
        case .idempotencyKeyReused:
            Problem(
                type: "/problems/idempotency-key-reused", title: "Unprocessable Content", status: 422,
                detail: "This Idempotency-Key was already used for a different request.")
        case .serviceUnavailable(let service):
            Problem(
                type: "/problems/service-unavailable", title: "Service Unavailable", status: 503,
                detail: "The \(service) service is not available right now. Please try again shortly.")
        case .notReady(let reason):
            Problem(type: "/problems/service-unavailable", title: "Service Unavailable", status: 503, detail: reason)
        case .conflict(let state, let detail):
            Problem(type: "/problems/conflict", title: "Conflict", status: 409, detail: detail, currentState: state)
        case .unauthenticated:
            Problem(
                type: "/problems/unauthenticated", title: "Unauthorized", status: 401,
                detail: "Sign in first: send a valid access token as Authorization: Bearer.")
        case .forbidden:
            Problem(
                type: "/problems/forbidden", title: "Forbidden", status: 403,
                detail: "Your role may not do this.")
        case .unsupportedMediaType(let detail):
            Problem(
                type: "/problems/unsupported-media-type", title: "Unsupported Media Type", status: 415, detail: detail)
        case .payloadTooLarge(let detail):
            Problem(type: "/problems/payload-too-large", title: "Payload Too Large", status: 413, detail: detail)
        }
    }

    private static func problem(for abort: any AbortError) -> Problem {
        let status = Int(abort.status.code)
        let (type, detail): (String, String) =
            switch status {
            case 404: ("/problems/not-found", "There is no such resource.")
            case 405: ("/problems/method-not-allowed", "This method is not allowed here.")
            case 421: ("/problems/misdirected-request", "This server does not serve this host name.")
            case 429: ("/problems/too-many-requests", "Too many requests from this client; wait and try again.")
            case 413: ("/problems/payload-too-large", "The request body is too large.")
            case 415: ("/problems/unsupported-media-type", "Send the request body as application/json.")
            case 400..<500: ("/problems/malformed-request", abort.reason)
            default: ("/problems/internal", "Something went wrong on our side; the request was not applied.")
            }
        return Problem(
            type: type, title: abort.status.reasonPhrase, status: status >= 500 && status != 503 ? 500 : status,
            detail: detail)
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? "the body" : p.replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .typeMismatch(let type, let context): return "\(path(context)) must be \(typeName(type))"
        case .valueNotFound(let type, let context): return "\(path(context)) must be \(typeName(type)), not null"
        case .keyNotFound(let key, _): return "\(key.stringValue) is missing"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "it cannot be parsed" : "\(path(context)) is not valid"
        @unknown default: return "it cannot be parsed"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Double.Type: "a number"
        case is Bool.Type: "true or false"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }
}
