// swift-tools-version: 6.2
// ipsec-agent: keeps node-to-node IPsec encrypted through key rotation without dropping a packet.
import PackageDescription

let package = Package(
    name: "ipsec-agent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ipsec-agent", targets: ["ipsec-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.25.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.0.0"),
    ],
    targets: [
        // Vocabulary shared by every module: addresses, prefixes, key IDs with wrap-around, secrets.
        .target(name: "IPsecPrimitives"),

        // C: kernel UAPI (linux/xfrm.h, linux/netlink.h) and libmnl helpers, so Swift never computes layout.
        // libmnl is found through pkg-config; its module map lives in CNetlink/libmnl.
        .systemLibrary(name: "CLibmnl", path: "CNetlink/libmnl", pkgConfig: "libmnl",
                       providers: [.apt(["libmnl-dev"])]),
        .target(
            name: "CNetlink",
            dependencies: ["CLibmnl"],
            path: "CNetlink",
            exclude: ["libmnl"]
        ),
        // The XFRM netlink client: SAs, policies, batching, dumps, monitor.
        .target(name: "XFRM", dependencies: ["CNetlink", "IPsecPrimitives"]),

        // Key files: grammar, rotation rules, per-pair derivation, drop-in watcher. libcrypto's SHA-256 context (a
        // plain struct) backs the per-pair HKDF's prepared HMAC; swift-crypto does the rest.
        .systemLibrary(name: "CLibcrypto", path: "Sources/CLibcrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .target(
            name: "Keys",
            dependencies: [
                "IPsecPrimitives",
                "CLibcrypto",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // C: libbpf shim. Datapath: loads bpf/ programs, attaches tc, writes the encrypt maps.
        .target(name: "CBPF", linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]),
        .target(name: "Datapath", dependencies: ["CBPF", "IPsecPrimitives"], plugins: ["BPFObjectPlugin"]),
        // Build-tool plugin: compiles bpf/encrypt.c (clang -target bpf) into a Swift source for Datapath.
        .plugin(name: "BPFObjectPlugin", capability: .buildTool()),

        // Node registry: record, protocol and resilient client; embedded server; etcd backend.
        .target(name: "Registry", dependencies: [
            "IPsecPrimitives", .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .target(
            name: "RegistryServer",
            dependencies: [
                "Registry", "IPsecPrimitives",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "RegistryEtcd",
            dependencies: [
                "Registry", "IPsecPrimitives",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The daemon: desired state, ordered rotation, reconcile, status, trace.
        .target(
            name: "Agent",
            dependencies: [
                "IPsecPrimitives", "XFRM", "Keys", "Datapath", "Registry",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),

        // Prometheus exposition: swift-metrics routed into swift-prometheus with help texts; kernel XFRM counters.
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        // The daemon around the core: configuration, kernel/BPF/registry adapters, services, admin endpoint.
        .target(
            name: "AgentDaemon",
            dependencies: [
                "Agent", "IPsecPrimitives", "XFRM", "Keys", "Datapath", "Registry", "Telemetry",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),

        .executableTarget(
            name: "ipsec-agent",
            dependencies: [
                "Agent", "AgentDaemon", "Keys", "XFRM", "Datapath", "Registry", "RegistryServer", "RegistryEtcd",
                "Telemetry", "IPsecPrimitives",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),

        // Benchmarks (scripts/bench): figures, never pass/fail tests.
        .executableTarget(
            name: "ipsec-agent-bench",
            dependencies: [
                "XFRM", "Registry", "RegistryServer", "RegistryEtcd", "Agent", "AgentDaemon", "Keys", "Datapath",
                "IPsecPrimitives", .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),

        // Tests
        .target(name: "TestSupport", dependencies: [.product(name: "Logging", package: "swift-log")], path: "Tests/TestSupport"),
        .testTarget(name: "IPsecPrimitivesTests", dependencies: ["IPsecPrimitives", "TestSupport"]),
        .testTarget(name: "XFRMTests", dependencies: ["XFRM", "TestSupport"]),
        .testTarget(
            name: "KeysTests",
            dependencies: [
                "Keys", "IPsecPrimitives", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(name: "DatapathTests", dependencies: ["Datapath", "TestSupport"]),
        .testTarget(
            name: "RegistryTests",
            dependencies: [
                "Registry", "RegistryServer", "RegistryEtcd", "TestSupport", "IPsecPrimitives",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "Keys", "XFRM", "Datapath", "Registry", "IPsecPrimitives", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "RigTests", dependencies: ["TestSupport"]),
        .testTarget(name: "TelemetryTests", dependencies: ["Telemetry", "TestSupport", .product(name: "Metrics", package: "swift-metrics")]),
        .testTarget(
            name: "AgentDaemonTests",
            dependencies: [
                "AgentDaemon", "Agent", "IPsecPrimitives", "TestSupport", "XFRM", "Keys", "Datapath", "Registry",
                "Telemetry", .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
    ]
)

// Strict settings for every Swift target of ours, as hummingbird has them: existential types are spelled
// `any P` (a bare protocol type is an error, not a warning), and a module's members are visible only in files
// that import it. (Swift 6 mode already checks concurrency strictly.) The C targets take no Swift settings.
for target in package.targets where [.regular, .executable, .test].contains(target.type) {
    guard !["CNetlink", "CBPF"].contains(target.name) else { continue }
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .enableUpcomingFeature("ExistentialAny"),
        .treatWarning("ExistentialAny", as: .error),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
}
