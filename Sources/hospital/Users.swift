import ArgumentParser
import Foundation
import Identity
import Runtime

/// `hospital users`: the local accounts of the embedded default.
struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage local accounts (passwords are read from standard input).",
        subcommands: [Add.self, List.self, Disable.self, SetPassword.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an account.",
            discussion: "The password is the first line of standard input, confirmed by a second line.")

        @Argument(help: "The user name: lower-case letters, digits, '.', '_' or '-'.") var name: String
        @Option(help: "desk, doctor, examiner or admin.") var role: Role
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let password = try readNewPassword()
            try await HospitalSystem.withAccounts(configuration: config, logger: logger) { accounts in
                try await accounts.add(username: name, role: role, password: password)
            }
            print("added \(name) (\(role.rawValue))")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the accounts.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let accounts = try await HospitalSystem.withAccounts(configuration: config, logger: logger) {
                try await $0.list()
            }
            let now = Date()
            for account in accounts {
                let state =
                    account.disabled
                    ? "disabled" : account.lockedUntil.map { $0 > now ? "locked until \($0)" : "active" } ?? "active"
                print("\(account.username)\t\(account.role.rawValue)\t\(state)")
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable an account (it can no longer sign in).")
        @Argument var name: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            try await HospitalSystem.withAccounts(configuration: config, logger: logger) { try await $0.disable(name) }
            print("disabled \(name)")
        }
    }

    struct SetPassword: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-password", abstract: "Set a new password (and unlock the account).",
            discussion: "The password is the first line of standard input, confirmed by a second line.")
        @Argument var name: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let config = try common.configuration()
            let logger = common.bootstrapLogging(config.logLevel)
            let password = try readNewPassword()
            try await HospitalSystem.withAccounts(configuration: config, logger: logger) {
                try await $0.setPassword(name, password)
            }
            print("set the password of \(name)")
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
