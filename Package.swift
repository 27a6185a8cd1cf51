// swift-tools-version: 6.1
import PackageDescription

let vapor: Target.Dependency = .product(name: "Vapor", package: "vapor")
let fluentKit: Target.Dependency = .product(name: "FluentKit", package: "fluent-kit")
let sqlKit: Target.Dependency = .product(name: "SQLKit", package: "sql-kit")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let tracing: Target.Dependency = .product(name: "Tracing", package: "swift-distributed-tracing")
let instrumentation: Target.Dependency = .product(name: "Instrumentation", package: "swift-distributed-tracing")

let package = Package(
    name: "hospital",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hospital", targets: ["hospital"])
    ],
    traits: [
        .trait(
            name: "Kafka",
            description:
                "The Kafka event transport over Debian's librdkafka (librdkafka-dev); without it, the local event log only."
        )
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
        .package(url: "https://github.com/vapor/fluent.git", from: "4.13.0"),
        .package(url: "https://github.com/vapor/fluent-kit.git", from: "1.57.0"),
        .package(url: "https://github.com/vapor/fluent-sqlite-driver.git", from: "4.9.0"),
        .package(url: "https://github.com/vapor/fluent-postgres-driver.git", from: "2.14.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/vapor/sqlite-kit.git", from: "4.5.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.1.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0"),
        .package(url: "https://github.com/vapor/multipart-kit.git", from: "4.7.1"),
    ],
    targets: [
        // The published language: event envelope and payloads.
        .target(name: "Contracts"),
        // Domain: state machines that take commands and return events or a refusal. Foundation only.
        .target(name: "SharedKernel"),
        .target(name: "ReceptionDomain", dependencies: ["Contracts", "SharedKernel"]),
        .target(name: "DiagnosisDomain", dependencies: ["Contracts", "SharedKernel"]),
        .target(name: "ExaminationDomain", dependencies: ["Contracts", "SharedKernel"]),
        .target(name: "PatientManagementDomain", dependencies: ["Contracts"]),

        // Messaging: outbox, relay, inbox consumer, dead letters, and the transport protocol.
        // Storage: SQLite or PostgreSQL, decided once where a database is opened; what differs between them.
        .target(
            name: "Storage",
            dependencies: [
                fluentKit, sqlKit, logging, .product(name: "FluentSQL", package: "fluent-kit"),
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "FluentPostgresDriver", package: "fluent-postgres-driver"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),
        .target(
            name: "Messaging", dependencies: ["Contracts", "Storage", fluentKit, sqlKit, logging, tracing, instrumentation]),
        // The audit trail: entries chained and sealed under a key kept out of the database,
        // checkpoints on the event log, sealed retention sweeps, verification.
        .target(
            name: "Audit",
            dependencies: [
                "Messaging", "Storage", fluentKit, sqlKit, logging, .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]),
        // Backups of SQLite data directories: consistent copies, sealed archives, their checks.
        .target(
            name: "Backup",
            dependencies: [
                logging, .product(name: "SQLiteNIO", package: "sqlite-nio"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .target(
            name: "MessagingLocal",
            dependencies: [
                "Messaging", "Storage", logging, .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]),

        // The Kafka transport: librdkafka through a system-library target, only with the Kafka trait.
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        // Its sources are compiled only with the trait (#if Kafka), so a default build needs no librdkafka.
        .target(
            name: "MessagingKafka",
            dependencies: ["Messaging", logging, .target(name: "CRdKafka", condition: .when(traits: ["Kafka"]))]),

        // Sign-in, tokens, the role table and local accounts.
        .target(
            name: "Identity",
            dependencies: [
                "SharedKernel",
                vapor, sqlKit, logging, .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]),

        // What every HTTP service shares: the error mapping, request helpers, the service protocol.
        .target(
            name: "ServiceKit",
            dependencies: [
                "Audit",
                "Contracts", "SharedKernel", "Messaging", "Storage", "Identity", vapor, fluentKit, sqlKit, logging,
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "Prometheus", package: "swift-prometheus"),
                tracing, instrumentation, .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            resources: [.embedInCode("openapi.yaml")]),

        // The services: Fluent models and migrations, routes, event handlers.
        .target(
            name: "ReceptionService",
            dependencies: [
                "ReceptionDomain", "Contracts", "SharedKernel", "Messaging", "Storage", "ServiceKit", vapor, fluentKit, sqlKit,
                .product(name: "Prometheus", package: "swift-prometheus"), .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "DiagnosisService",
            dependencies: ["DiagnosisDomain", "Contracts", "SharedKernel", "Messaging", "Storage", "ServiceKit", vapor, fluentKit]),
        .target(
            name: "ExaminationService",
            dependencies: [
                "ExaminationDomain", "Contracts", "SharedKernel", "Messaging", "Storage", "ServiceKit", vapor, fluentKit, sqlKit,
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .target(
            name: "PatientManagementService",
            dependencies: [
                "PatientManagementDomain", "Contracts", "SharedKernel", "Messaging", "Storage", "ServiceKit", vapor, fluentKit,
                sqlKit, .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "Gateway",
            dependencies: [
                "Audit", "HTTPProxy",
                "ServiceKit", "SharedKernel", "Messaging", "Identity", vapor, .product(name: "JWTKit", package: "jwt-kit"),
            ]),
        // Forwarding a request to a service: bodies streamed both ways, one resend when safe
        // (the gateway's and the screens').
        .target(
            name: "HTTPProxy",
            dependencies: [
                "ServiceKit", "Messaging", vapor, .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),
        // The screens of the desk, the doctor and the examiner, served by the gateway.
        .target(
            name: "Web",
            dependencies: [
                "ServiceKit", "SharedKernel", "HTTPProxy", "Identity", vapor, .product(name: "Mustache", package: "swift-mustache"),
                tracing, .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            resources: [
                .embedInCode("Templates/layout.mustache"), .embedInCode("Templates/home.mustache"),
                .embedInCode("Templates/desk.mustache"), .embedInCode("Templates/boardRows.mustache"),
                .embedInCode("Templates/cancel.mustache"), .embedInCode("Templates/priority.mustache"), .embedInCode("Templates/doctor.mustache"),
                .embedInCode("Templates/worklistRows.mustache"), .embedInCode("Templates/waitsPanel.mustache"), .embedInCode("Templates/visit.mustache"),
                .embedInCode("Templates/orders.mustache"), .embedInCode("Templates/examiner.mustache"),
                .embedInCode("Templates/patientVisits.mustache"), .embedInCode("Templates/login.mustache"),
                .embedInCode("Templates/patients.mustache"), .embedInCode("Templates/patient.mustache"),
                .embedInCode("Templates/display.mustache"), .embedInCode("Templates/pair.mustache"),
                .embedInCode("Assets/app.css"), .embedInCode("Assets/app.js"), .embedInCode("Assets/display.js"),
            ]),

        // Composition root: configuration, building and running services together.
        .target(
            name: "Runtime",
            dependencies: [
                "Audit", "Backup",
                "ReceptionService", "DiagnosisService", "ExaminationService", "PatientManagementService", "Gateway",
                "Web", "Identity", "HTTPProxy",
                "ServiceKit", "SharedKernel", "Messaging", "Storage", "MessagingLocal", vapor, fluentKit, sqlKit, logging,
                .target(name: "MessagingKafka", condition: .when(traits: ["Kafka"])),
                .product(name: "Fluent", package: "fluent"),
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "FluentPostgresDriver", package: "fluent-postgres-driver"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "OTel", package: "swift-otel"), tracing, instrumentation,
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "JWTKit", package: "jwt-kit"), .product(name: "SQLiteKit", package: "sqlite-kit"),
            ]),
        .executableTarget(
            name: "hospital",
            dependencies: [
                "Audit", "Backup",
                "Runtime", "Identity", logging, .product(name: "JWTKit", package: "jwt-kit"),
                .target(name: "MessagingKafka", condition: .when(traits: ["Kafka"])),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]),
        .testTarget(
            name: "DomainTests",
            dependencies: [
                "Contracts", "SharedKernel", "ReceptionDomain", "DiagnosisDomain", "ExaminationDomain",
                "PatientManagementDomain",
            ]),
        // What every test target shares: the one way to wait for a condition.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(
            name: "MessagingTests",
            dependencies: [
                "TestSupport",
                "Messaging", "Storage", "MessagingLocal", "ServiceKit", "Contracts", fluentKit, sqlKit, logging,
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]),
        .testTarget(
            name: "BackupTests",
            dependencies: [
                "Backup", logging, .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "PostgresNIO", package: "postgres-nio"),
            ]),
        .testTarget(
            name: "IdentityTests",
            dependencies: [
                "Identity", sqlKit, logging, .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "JWTKit", package: "jwt-kit"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"), .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(
            name: "KafkaTests",
            dependencies: [
                "TestSupport",
                "Messaging", "Storage", logging, .target(name: "MessagingKafka", condition: .when(traits: ["Kafka"])),
            ]),
        .testTarget(
            name: "SystemTests",
            dependencies: [
                "Audit",
                "TestSupport",
                "Runtime", "Contracts", "Messaging", "Storage", "MessagingLocal", "ServiceKit", "ReceptionService",
                "DiagnosisService", "ExaminationService", "PatientManagementService",
                "hospital", "Identity", vapor, logging, fluentKit, sqlKit, .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "FluentPostgresDriver", package: "fluent-postgres-driver"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
    ]
)
