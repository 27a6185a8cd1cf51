import ArgumentParser
import Foundation
import Identity
import Runtime

/// `hospital users`: the local accounts of the embedded default.
struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage local accounts (passwords are read from standard input).",
        subcommands: [
            Add.self, List.self, Disable.self, SetPassword.self, Sessions.self, SignOut.self, SetDepartments.self,
        ])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an account.",
            discussion: "The password is the first line of standard input, confirmed by a second line.")

        @Argument(help: "The user name: lower-case letters, digits, '.', '_' or '-'.") var name: String
        @Option(help: "desk, doctor, examiner or admin.") var role: Role
        @Option(name: .customLong("department"), help: "A department (진료과) the user works in; may be repeated.")
        var departments: [String] = []
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            guard departments.allSatisfy({ Departments.validated($0) != nil }) else {
                throw ValidationError("A department is 1 to 50 characters without control characters.")
            }
            let password = try readNewPassword()
            try await HospitalSystem.withAccounts(configuration: config, logger: logger) { accounts, _ in
                try await accounts.add(username: name, role: role, password: password)
            }
            if !departments.isEmpty {
                try await HospitalSystem.withDepartments(configuration: config, logger: logger) {
                    try await $0.set(name, to: departments)
                }
            }
            print("added \(name) (\(([role.rawValue] + departments).joined(separator: ", ")))")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the accounts.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let accounts = try await HospitalSystem.withAccounts(configuration: config, logger: logger) { accounts, _ in
                try await accounts.list()
            }
            let departments = try await HospitalSystem.withDepartments(configuration: config, logger: logger) {
                try await $0.all()
            }
            let now = Date()
            for account in accounts {
                let state =
                    account.disabled
                    ? "disabled" : account.lockedUntil.map { $0 > now ? "locked until \($0)" : "active" } ?? "active"
                let works = departments[account.username]?.joined(separator: ",") ?? "-"
                print("\(account.username)\t\(account.role.rawValue)\t\(works)\t\(state)")
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable an account: it can no longer sign in, and its sessions and tokens end within seconds.")
        @Argument var name: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let ended = try await HospitalSystem.withAccounts(configuration: config, logger: logger) {
                accounts, sessions in
                try await accounts.disable(name)
                return try await sessions.endAll(username: name, reason: "account disabled")
            }
            print("disabled \(name); ended \(ended) sessions")
        }
    }

    struct SetPassword: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-password",
            abstract: "Set a new password (and unlock the account); its sessions and tokens end within seconds.",
            discussion: "The password is the first line of standard input, confirmed by a second line.")
        @Argument var name: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let password = try readNewPassword()
            let ended = try await HospitalSystem.withAccounts(configuration: config, logger: logger) {
                accounts, sessions in
                try await accounts.setPassword(name, password)
                return try await sessions.endAll(username: name, reason: "password changed")
            }
            print("set the password of \(name); ended \(ended) sessions")
        }
    }

    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the live sessions (of one user, or everyone's).")
        @Argument var name: String?
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let sessions = try await HospitalSystem.withAccounts(configuration: config, logger: logger) { _, sessions in
                try await sessions.list(username: name)
            }
            for session in sessions {
                print(
                    "\(session.id)\t\(session.username)\t\(session.role.rawValue)\t\(session.kind)\t\(session.client)\tsince \(session.createdAt)\tlast \(session.lastSeenAt)"
                )
            }
        }
    }

    struct SignOut: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sign-out", abstract: "End every session and token of a user, within seconds, everywhere.")
        @Argument var name: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let ended = try await HospitalSystem.withAccounts(configuration: config, logger: logger) { _, sessions in
                try await sessions.endAll(username: name, reason: "signed out by an administrator")
            }
            print("ended \(ended) sessions of \(name)")
        }
    }

    struct SetDepartments: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "departments",
            abstract: "Set the departments (진료과) a user works in: a doctor reads their patients' contact details.",
            discussion: """
                Replaces the user's departments (none: takes them all away); for local accounts and for \
                users an OpenID provider signs in alike. Takes effect with the user's next token.
                """)
        @Argument(help: "The user name.") var name: String
        @Argument(help: "The departments, e.g. 내과 외과.") var departments: [String] = []
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let now = try await HospitalSystem.withDepartments(configuration: config, logger: logger) { store in
                try await store.set(name, to: departments)
                return try await store.of(name)
            }
            print("\(name): \(now.isEmpty ? "no department" : now.joined(separator: ", "))")
        }
    }
}

extension Role: ExpressibleByArgument {}
extension AccountError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Reads a password and its confirmation: two lines of standard input (typed without echo at a
/// terminal).
private func readNewPassword() throws -> String {
    let terminal = isatty(STDIN_FILENO) == 1
    func line(_ prompt: String) -> String? {
        if terminal {
            guard let raw = getpass(prompt) else { return nil }
            return String(cString: raw)
        }
        return readLine(strippingNewline: true)
    }
    guard let first = line("Password: "), let second = line("Again: ") else {
        throw ValidationError("Give the password on standard input, twice (two lines).")
    }
    guard first == second else { throw ValidationError("The two passwords differ.") }
    return first
}
