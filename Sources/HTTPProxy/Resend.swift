import AsyncHTTPClient
import Vapor

/// One more try for a request to a service that failed on its connection, before any answer:
/// a pooled keep-alive connection the other side closed just as it was reused, or a replica that
/// stopped listening as it was picked. Only when sending it twice cannot do anything twice: a
/// GET or HEAD, or a request carrying an `Idempotency-Key` (the service answers a repeat with
/// the first answer). A timeout is never resent: the service may still be working on it.
public enum Resend {
    public static func isSafe(_ method: HTTPMethod, _ headers: HTTPHeaders) -> Bool {
        method == .GET || method == .HEAD || headers.contains(name: "Idempotency-Key")
    }

    public static func isWorthIt(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            return ![.readTimeout, .writeTimeout, .deadlineExceeded, .connectTimeout, .cancelled].contains(error)
        }
        return true
    }

    /// `send`, and once more when the first attempt failed as above.
    public static func sending<T>(
        _ method: HTTPMethod, _ headers: HTTPHeaders, logger: Logger?, service: String,
        _ send: () async throws -> T
    ) async throws -> T {
        do {
            return try await send()
        } catch where isSafe(method, headers) && isWorthIt(error) {
            logger?.debug("resending after a connection failure", metadata: ["service": "\(service)", "error": "\(error)"])
            return try await send()
        }
    }
}
