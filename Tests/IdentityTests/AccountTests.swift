import Foundation
import Logging
import NIOPosix
import SQLKit
import SQLiteKit
import Testing

@testable import Identity

/// Local accounts on a real SQLite database.
@Suite("Local accounts")
struct AccountTests {
    /// A store on a fresh in-memory database; bcrypt at its minimum cost to keep the suite quick
    /// (the cost is a setting: 12 in the product).
    func withStore(cost: Int = 4, _ body: (AccountStore) async throws -> Void) async throws {
        try await withMemoryDatabase { database in
            var settings = AccountStore.Settings()
            settings.bcryptCost = cost
            let store = AccountStore(database: database, settings: settings)
            try await store.prepare()
            try await body(store)
        }
    }

    @Test("An account signs in with its password and no other; the hash is bcrypt, never the password")
    func signIn() async throws {
        try await withStore { store in
            try await store.add(username: "kim.doctor", role: .doctor, password: "correct horse battery")
            guard
                case .signedIn(let account) = try await store.signIn(
                    username: "kim.doctor", password: "correct horse battery")
            else { Issue.record("refused the right password"); return }
            #expect(account.role == .doctor)
            #expect(try await store.signIn(username: "kim.doctor", password: "correct horse batterz") == .refused)
            #expect(try await store.signIn(username: "nobody", password: "correct horse battery") == .refused)
            let hash = try await store.database.select().column("password_hash").from("accounts").first()!
                .decode(column: "password_hash", as: String.self)
            #expect(hash.hasPrefix("$2b$") && !hash.contains("correct horse"))
        }
    }

    @Test("Bad names, short or overlong passwords and duplicates are refused and change nothing")
    func refusals() async throws {
        try await withStore { store in
            for name in [
                "", "Kim", "kim doctor", "김의사", String(repeating: "a", count: 65), "a'; DROP TABLE accounts;--",
            ] {
                await #expect(throws: AccountError.self) {
                    try await store.add(username: name, role: .desk, password: "long enough password")
                }
            }
            await #expect(throws: AccountError.self) {
                try await store.add(username: "lee", role: .desk, password: "short")
            }
            await #expect(throws: AccountError.self) {
                try await store.add(username: "lee", role: .desk, password: String(repeating: "x", count: 73))
            }
            #expect(try await store.list().isEmpty)
            try await store.add(username: "lee", role: .desk, password: "long enough password")
            await #expect(throws: AccountError.self) {
                try await store.add(username: "lee", role: .admin, password: "another long password")
            }
            #expect(try await store.list().map(\.role) == [.desk])
        }
    }

    @Test("Five failures in a row lock the account for 15 minutes, even against the right password")
    func lockout() async throws {
        try await withStore { store in
            try await store.add(username: "park", role: .examiner, password: "the right password")
            let start = Date()
            for attempt in 1...4 {
                let outcome = try await store.signIn(
                    username: "park", password: "wrong \(attempt)", now: start.addingTimeInterval(Double(attempt)))
                #expect(outcome == .refused)
            }
            let fifth = try await store.signIn(username: "park", password: "wrong 5", now: start.addingTimeInterval(5))
            guard case .locked(let until) = fifth else { Issue.record("not locked: \(fifth)"); return }
            #expect(abs(until.timeIntervalSince(start) - 5 - 900) < 1)
            let during = try await store.signIn(
                username: "park", password: "the right password", now: start.addingTimeInterval(600))
            guard case .locked(let stillUntil) = during else { Issue.record("unlocked early: \(during)"); return }
            #expect(abs(stillUntil.timeIntervalSince(until)) < 0.001)
            let after = try await store.signIn(
                username: "park", password: "the right password", now: start.addingTimeInterval(906))
            guard case .signedIn = after else { Issue.record("still refused after the lock: \(after)"); return }
        }
    }

    @Test("The lock is per name and address: the account still signs in from elsewhere, and an unknown name locks alike")
    func lockoutIsPerClient() async throws {
        try await withStore { store in
            try await store.add(username: "desk1", role: .desk, password: "the right password")
            for name in ["desk1", "nobody"] {
                for attempt in 1...4 {
                    #expect(
                        try await store.signIn(username: name, password: "wrong \(attempt)", client: "203.0.113.9")
                            == .refused)
                }
                let fifth = try await store.signIn(username: name, password: "wrong 5", client: "203.0.113.9")
                guard case .locked = fifth else { Issue.record("\(name) not locked: \(fifth)"); return }
            }
            // The stranger is locked out of desk1, even with the right password…
            guard
                case .locked = try await store.signIn(
                    username: "desk1", password: "the right password", client: "203.0.113.9")
            else { Issue.record("the right password let the locked-out address in"); return }
            // …and the desk's own PC signs in as usual.
            guard
                case .signedIn = try await store.signIn(
                    username: "desk1", password: "the right password", client: "10.1.2.3")
            else { Issue.record("the stranger locked the account for everyone"); return }
            #expect(try await store.list().first?.lockedUntil != nil, "the list says it is locked out from somewhere")
            try await store.setPassword("desk1", "a new long password")
            #expect(try await store.list().first?.lockedUntil == nil, "a new password lifts every lock")
        }
    }

    @Test("Twenty guesses at once from one address: four refused, the rest locked out; none lifts the lock")
    func concurrentGuesses() async throws {
        try await withStore { store in
            try await store.add(username: "kang", role: .desk, password: "the right password")
            let outcomes = try await withThrowingTaskGroup(of: SignInOutcome.self) { group in
                for attempt in 0..<20 {
                    group.addTask {
                        try await store.signIn(username: "kang", password: "guess \(attempt)", client: "198.51.100.4")
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == .refused }.count == 4, "\(outcomes)")
            #expect(outcomes.filter { if case .locked = $0 { true } else { false } }.count == 16)
            guard case .locked = try await store.signIn(username: "kang", password: "the right password", client: "198.51.100.4")
            else { Issue.record("the lock was lifted by a guess that finished late"); return }
        }
    }

    @Test("An account whose password was set at another cost is hashed again at this one when it signs in")
    func rehashAtTheConfiguredCost() async throws {
        try await withMemoryDatabase { database in
            var settings = AccountStore.Settings()
            settings.bcryptCost = 4
            let old = AccountStore(database: database, settings: settings)
            try await old.prepare()
            try await old.add(username: "yoon", role: .doctor, password: "a long password!")
            settings.bcryptCost = 5
            let store = AccountStore(database: database, settings: settings)
            let hash = { try await database.select().column("password_hash").from("accounts").first()!.decode(column: "password_hash", as: String.self) }
            #expect(AccountStore.cost(of: try await hash()) == 4)
            guard case .signedIn = try await store.signIn(username: "yoon", password: "a long password!") else {
                Issue.record("refused"); return
            }
            #expect(AccountStore.cost(of: try await hash()) == 5)
            guard case .signedIn = try await store.signIn(username: "yoon", password: "a long password!") else {
                Issue.record("refused after the rehash"); return
            }
        }
    }

    @Test("Every refusal takes as long: medians of 120 unknown, wrong, locked and disabled within 10 % (bcrypt cost 8)")
    func refusalsTakeTheSameTime() async throws {
        try await withStore(cost: 8) { store in
            try await store.add(username: "kim", role: .desk, password: "the right password")
            try await store.add(username: "lee", role: .desk, password: "the right password")
            try await store.add(username: "gone", role: .desk, password: "the right password")
            try await store.disable("gone")
            for attempt in 1...5 {
                _ = try await store.signIn(username: "lee", password: "wrong \(attempt)", client: "locked-out")
            }
            // Each kind in turn, so whatever else the machine does falls on all four alike; a
            // fresh address for the kinds that would otherwise lock.
            let kinds: [(String, @Sendable (Int) async throws -> SignInOutcome)] = [
                ("unknown", { n in try await store.signIn(username: "nobody", password: "a password", client: "u\(n)") }),
                ("wrong", { n in try await store.signIn(username: "kim", password: "a wrong password", client: "w\(n)") }),
                ("locked", { _ in try await store.signIn(username: "lee", password: "the right password", client: "locked-out") }),
                ("disabled", { n in try await store.signIn(username: "gone", password: "the right password", client: "d\(n)") }),
            ]
            var times: [String: [Duration]] = [:]
            // Each time as a share of its round's mean: what the rest of the machine does to a
            // whole round (CI runs every suite at once on two cores) cancels out. 120 rounds at
            // cost 8 rather than 40 at cost 10 (the same wall time): under that load a median of
            // 40 strayed up to 11 % with no difference in the code; of 120, 2 to 4 %.
            var shares: [String: [Double]] = [:]
            let clock = ContinuousClock()
            for round in 0..<121 {
                var roundTimes: [(String, Duration)] = []
                for (kind, attempt) in kinds.shuffled() {
                    let start = clock.now
                    let outcome = try await attempt(round)
                    roundTimes.append((kind, clock.now - start))
                    if case .signedIn = outcome { Issue.record("\(kind) signed in") }
                }
                guard round > 0 else { continue }  // the first warms up
                let mean = roundTimes.map { $0.1 / .seconds(1) }.reduce(0, +) / Double(roundTimes.count)
                for (kind, time) in roundTimes {
                    times[kind, default: []].append(time)
                    shares[kind, default: []].append(time / .seconds(1) / mean)
                }
            }
            let medians = times.mapValues { $0.sorted()[$0.count / 2] }
            let shareMedians = shares.mapValues { $0.sorted()[$0.count / 2] }
            print(
                "sign-in refusals, median of 120:", medians.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" },
                "as a share of their round:", shareMedians.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" })
            #expect(shareMedians.values.max()! / shareMedians.values.min()! <= 1.10, "\(medians) \(shareMedians)")
        }
    }

    @Test("A disabled account is refused; a new password replaces the old and unlocks")
    func disableAndReset() async throws {
        try await withStore { store in
            try await store.add(username: "choi", role: .admin, password: "first password!!")
            try await store.disable("choi")
            #expect(try await store.signIn(username: "choi", password: "first password!!") == .refused)
            #expect(try await store.list().first?.disabled == true)
            try await store.add(username: "han", role: .desk, password: "first password!!")
            try await store.setPassword("han", "second password!")
            #expect(try await store.signIn(username: "han", password: "first password!!") == .refused)
            guard case .signedIn = try await store.signIn(username: "han", password: "second password!") else {
                Issue.record("the new password was refused")
                return
            }
            await #expect(throws: AccountError.self) { try await store.setPassword("nobody", "whatever password") }
        }
    }
}
