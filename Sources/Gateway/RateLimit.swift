import Foundation
import Synchronization
import ServiceKit
import Vapor

/// Requests per client on the gateway: a token bucket per client address (`rate` a second, up to
/// `burst` at once; a rate of 0 turns it off); over it, 429 with `Retry-After`. Sign-in (`POST /auth/token`, `POST /login`)
/// has its own, much smaller bucket: guessing passwords is slow even across accounts.
public final class RateLimit: Middleware, Sendable {
    public struct Settings: Sendable {
        public var rate: Double
        public var burst: Double
        public var signInRate: Double
        public var signInBurst: Double

        public init(rate: Double = 1000, burst: Double = 2000, signInRate: Double = 2, signInBurst: Double = 20) {
            self.rate = rate
            self.burst = burst
            self.signInRate = signInRate
            self.signInBurst = signInBurst
        }
    }

    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let settings: Settings
    private let buckets = Mutex([String: Bucket]())
    private let clock = ContinuousClock()

    public init(settings: Settings) { self.settings = settings }

    public func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        // The socket's peer, or behind trusted proxies whom they forwarded for; never an
        // X-Forwarded-For the client wrote itself.
        let client = request.clientAddress ?? "unknown"
        let signingIn =
            request.method == .POST && (request.url.path == "/auth/token" || request.url.path == "/login")
        let (rate, burst) = signingIn ? (settings.signInRate, settings.signInBurst) : (settings.rate, settings.burst)
        guard rate > 0 else { return next.respond(to: request) }
        let wait = take(key: (signingIn ? "sign-in " : "") + client, rate: rate, burst: burst)
        guard wait == 0 else {
            request.logger.notice("rate limited", metadata: ["signIn": "\(signingIn)"])
            let problem = ProblemMiddleware.problem(for: Abort(.tooManyRequests))
            let response = ProblemMiddleware.response(for: problem)
            response.headers.replaceOrAdd(name: .retryAfter, value: String(Int(wait.rounded(.up))))
            return request.eventLoop.makeSucceededFuture(response)
        }
        return next.respond(to: request)
    }

    /// Takes a token; 0 if there was one, else the seconds until there will be.
    private func take(key: String, rate: Double, burst: Double) -> Double {
        let now = clock.now
        return buckets.withLock { buckets in
            if buckets.count > 100_000 { buckets.removeAll() }  // a flood of addresses: start over
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed =
                Double((now - bucket.updated).components.seconds)
                + Double((now - bucket.updated).components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return 0
            }
            return max(0.001, (1 - bucket.tokens) / rate)
        }
    }
}
