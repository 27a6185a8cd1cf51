import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import SQLKit
import ServiceKit
import SharedKernel
import Vapor

/// The clinic layouts an administrator saved (`PUT /admin/clinic`), in the gateway's database
/// (shared by its replicas): one row per version, so two saves from the same version cannot
/// both win, and what was there before stays readable.
struct ClinicStore: Sendable {
    static let table = "clinic_layouts"
    let database: any SQLDatabase

    struct Saved: Content {
        var version: Int
        var layout: ClinicLayout
        var changedBy: String?
        var changedAt: Date?
    }

    func prepare() async throws {
        try await database.create(table: Self.table).ifNotExists()
            .column("version", type: .bigint, .primaryKey(autoIncrement: false))
            .column("layout", type: .text, .notNull)
            .column("changed_by", type: .text, .notNull)
            .column("changed_at", type: .custom(SQLRaw("DOUBLE PRECISION")), .notNull)
            .run()
    }

    /// The newest saved layout, if an administrator ever saved one.
    func current() async throws -> Saved? {
        guard
            let row = try await database.select().columns("version", "layout", "changed_by", "changed_at")
                .from(Self.table).orderBy("version", .descending).limit(1).first()
        else { return nil }
        return Saved(
            version: try row.decode(column: "version", as: Int.self),
            layout: try JSONDecoder().decode(ClinicLayout.self, from: Data(try row.decode(column: "layout", as: String.self).utf8)),
            changedBy: try row.decode(column: "changed_by", as: String.self),
            changedAt: Date(timeIntervalSince1970: try row.decode(column: "changed_at", as: Double.self)))
    }

    /// Saves `layout` as the version after `version`; false if another save took that version.
    func save(_ layout: ClinicLayout, after version: Int, by admin: String, now: Date = Date()) async throws -> Bool {
        let json = String(decoding: try JSONEncoder().encode(layout), as: UTF8.self)
        let inserted = try await database.insert(into: Self.table)
            .columns("version", "layout", "changed_by", "changed_at")
            .values(SQLBind(version + 1), SQLBind(json), SQLBind(admin), SQLBind(now.timeIntervalSince1970))
            .ignoringConflicts(with: "version")
            .returning("version").all()
        return !inserted.isEmpty
    }
}

/// The layout this process works by and how it stays current: where the gateway runs, read from
/// its database every 2 s; elsewhere, from the gateway's `GET /clinic/layout` every 5 s. Until an
/// administrator saves one, the settings file's (version 0).
struct ClinicLayouts: Sendable {
    let source: ClinicSource
    let store: ClinicStore?
    let refresh: Loop

    static func make(configuration: HospitalConfiguration, gatewayDatabase: (any SQLDatabase)?, logger: Logger) async
        -> ClinicLayouts
    {
        let source = ClinicSource(configuration.clinic)
        if let gatewayDatabase {
            let store = ClinicStore(database: gatewayDatabase)
            let read: @Sendable () async throws -> Void = {
                if let saved = try await store.current(), source.replace(with: saved.layout, version: saved.version) {
                    logger.notice(
                        "the clinic layout an administrator saved is in use",
                        metadata: ["version": "\(saved.version)", "by": "\(saved.changedBy ?? "")"])
                }
            }
            // Before the first request: a saved layout wins over the file from the start.
            do { try await read() } catch { logger.warning("the saved clinic layout could not be read", metadata: ["error": "\(error)"]) }
            return ClinicLayouts(
                source: source, store: store,
                refresh: Loop("clinic layout refresh") { await refreshing(every: .seconds(2), logger: logger, read) })
        }
        let url = configuration.upstream(of: .gateway).appendingPathComponent("clinic/layout")
        return ClinicLayouts(
            source: source, store: nil,
            refresh: Loop("clinic layout refresh") {
                await refreshing(every: .seconds(5), logger: logger) {
                    let answer = try await fetch(url)
                    if answer.version > 0, source.replace(with: answer.layout, version: answer.version) {
                        logger.notice("the clinic layout an administrator saved is in use", metadata: ["version": "\(answer.version)"])
                    }
                }
            })
    }

    private static func refreshing(
        every interval: Duration, logger: Logger, _ read: @Sendable () async throws -> Void
    ) async {
        var failing = false
        while !Task.isCancelled {
            do {
                try await read()
                failing = false
            } catch {
                if !failing {
                    logger.warning("the clinic layout could not be read; keeping the last one", metadata: ["error": "\(error)"])
                }
                failing = true
            }
            try? await Task.sleep(for: interval)
        }
    }

    struct Published: Content {
        var version: Int
        var layout: ClinicLayout
    }

    private static func fetch(_ url: URL) async throws -> Published {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .GET
        let response = try await BackgroundClient.shared.execute(request, timeout: .seconds(2))
        guard response.status == .ok else { throw ConfigurationError("the clinic layout at \(url) answered \(response.status.code)") }
        return try JSONDecoder().decode(Published.self, from: Data(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    /// `GET /clinic/layout` (anyone: it names rooms, never a patient) for the other processes;
    /// `GET /admin/clinic` and `PUT /admin/clinic {version, layout}` for the administrator.
    func register(on routes: any RoutesBuilder, admin: any RoutesBuilder) {
        guard let store else { return }
        let source = source
        routes.get("clinic", "layout") { _ -> Published in
            Published(version: source.version, layout: source.layout)
        }
        admin.get("admin", "clinic") { _ async throws -> ClinicStore.Saved in
            try await store.current() ?? ClinicStore.Saved(version: 0, layout: source.layout, changedBy: nil, changedAt: nil)
        }
        admin.put("admin", "clinic") { req async throws -> ClinicStore.Saved in
            struct Body: Decodable {
                var version: Int?
                var layout: ClinicLayout?
            }
            let body: Body
            do {
                body = try req.content.decode(Body.self)
            } catch {
                throw ValidationFailure([.init(field: "layout", code: .invalidFormat, message: "not a clinic layout: \(error)")])
            }
            guard let version = body.version, version >= 0 else {
                throw ValidationFailure([.init(field: "version", code: .required, message: "the version this change is made to (GET /admin/clinic)")])
            }
            guard let layout = body.layout else {
                throw ValidationFailure([.init(field: "layout", code: .required, message: "the whole clinic layout")])
            }
            let problems = layout.problems
            guard problems.isEmpty else {
                throw ValidationFailure(problems.map { .init(field: "layout", code: .invalidFormat, message: $0) })
            }
            let current = try await store.current()?.version ?? 0
            let admin = req.signedIn?.principal.username ?? "admin"
            guard version == current, try await store.save(layout, after: version, by: admin) else {
                throw InvalidTransition(
                    aggregate: "clinic layout", currentState: "version \(current)", attempted: "save",
                    reason: "it was changed meanwhile (now version \(current)): read it again and make the change to that")
            }
            source.replace(with: layout, version: version + 1)
            req.logger.notice("the clinic layout changed", metadata: ["version": "\(version + 1)", "by": "\(admin)"])
            return ClinicStore.Saved(version: version + 1, layout: layout, changedBy: admin, changedAt: Date())
        }
    }
}
