import AgentDaemon
import ArgumentParser
import Foundation
import IPsecPrimitives
import Logging
import Metrics
import NIOSSL
import Prometheus
import Registry
import RegistryEtcd
import RegistryServer
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `ipsec-agent run --config FILE`: the per-node daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent: keep this node's IPsec programmed through key rotations.",
        discussion: """
            SIGTERM or SIGINT stops the agent (within about a second, exit status 0) and leaves the datapath running; \
            a second signal forces the exit (status 1). `ipsec-agent cleanup` removes the datapath.
            """)

    @Option(help: "Configuration file (YAML; see docs/configuration.md).")
    var config: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Flag(help: "Only warn (instead of refusing) when group or others can access the registry credential file.")
    var insecureFilePermissions = false

    func run() async throws {
        let configuration = try AgentConfiguration.load(path: config)
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "ipsec-agent")
        MemoryTuning.configure()
        for warning in configuration.warnings { logger.warning("\(warning)", metadata: ["config": "\(config)"]) }
        guard let listen = RegistryServer.parseListenAddress(configuration.adminListen) else {
            throw ValidationError("\(config): adminListen: expected HOST:PORT, got \"\(configuration.adminListen)\"")
        }
        let telemetry = TelemetryRefresher(registry: PrometheusCollectorRegistry(), logger: logger)
        MetricsSystem.bootstrap(telemetry.catalogFactory)

        let registry: any NodeRegistry
        switch configuration.registry {
        case .embedded(let url):
            // With a client certificate (mutual TLS) the certificate is the node's identity; otherwise the bearer.
            let credential: String
            if let path = configuration.credentialFile {
                credential = try Self.readCredential(
                    path, shared: insecureFilePermissions ? .warn : .refuse, logger: logger)
            } else if configuration.registryTLS?.certificate != nil {
                credential = ""
            } else {
                throw ValidationError(
                    "\(config): registry.credentialFile (or registry.tls.certificate) is required with the embedded registry"
                )
            }
            // Kept for the life of the process: an HTTP client must not be released while open, and shutting it
            // down waits for its TLS connections to close (seconds), which a stopping agent need not do.
            let pool = RegistryHTTPConnections(tls: try Self.tls(configuration))
            Self.processLifetimePools.withLock { $0.append(pool) }
            registry = EmbeddedRegistryClient(
                baseURL: url, nodeName: configuration.nodeName, credential: credential,
                connections: pool)
        case .etcd(let endpoints, let prefix):
            var etcd = EtcdConfiguration(endpoints: endpoints, prefix: prefix)
            etcd.tls = try Self.tls(configuration)
            etcd.claims = ClaimPolicy(
                minimumIPv4PrefixLength: configuration.minimumPodPrefixIPv4,
                minimumIPv6PrefixLength: configuration.minimumPodPrefixIPv6)
            registry = try EtcdRegistry(configuration: etcd)
        }

        let handle = AgentHandle()
        let daemon = AgentDaemon(
            configuration: configuration, registry: registry, handle: handle,
            metricsFactory: telemetry, logger: logger)
        let admin = AdminServer(handle: handle, telemetry: telemetry, listen: listen, logger: logger).makeApplication()
        let escalation = ShutdownEscalation(logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: daemon), .init(service: admin)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        withExtendedLifetime(escalation) {}
    }

    static let processLifetimePools = Mutex<[RegistryHTTPConnections]>([])

    /// The client TLS configuration of `registry.tls` (nil: plain HTTP, or https with the system's roots).
    static func tls(_ configuration: AgentConfiguration) throws -> TLSConfiguration? {
        guard let files = configuration.registryTLS else { return nil }
        do {
            return try RegistryTLS.client(ca: files.ca, certificate: files.certificate, key: files.key)
        } catch {
            throw ValidationError("registry.tls: \(error)")
        }
    }

    static func readCredential(_ path: String, shared: SecretFile.SharedPolicy, logger: Logger) throws -> String {
        let read: (bytes: [UInt8], warning: String?)
        do {
            read = try SecretFile.read(path: path, role: "registry credential file", shared: shared)
        } catch {
            throw ValidationError(error.description)
        }
        if let warning = read.warning { logger.warning("\(warning)") }
        let credential = String(decoding: read.bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !credential.isEmpty else { throw ValidationError("the registry credential file \(path) is empty") }
        return credential
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
