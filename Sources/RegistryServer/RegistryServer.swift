import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import IPsecPrimitives
import Logging
import NIOCore
import NIOSSL
import Registry
import ServiceLifecycle
import UnixSignals

/// The embedded node registry: an HTTP/JSON server (Hummingbird 2) over a SQLite store (GRDB, WAL).
///
/// Run it as a `Service` (in a `ServiceGroup`) or directly; cancelling `run()` or a graceful shutdown stops
/// it. API, auth, leases and watch semantics: docs/registry.md.
public struct RegistryServer: Service {
    /// Where the server listens, its data directory, leases, history and connection limits (registry.md).
    public struct Configuration: Sendable {
        public var host: String
        /// 0 picks a free port; `onListening` receives the bound one.
        public var port: Int
        /// Directory holding `registry.sqlite` (created if missing).
        public var dataDirectory: String
        /// A node missing heartbeats this long expires and is announced deleted.
        public var leaseTTL: Duration
        /// Events kept for watches; older revisions get a resync answer.
        public var historyLimit: Int
        /// Largest accepted request body.
        public var maxBodyBytes: Int
        /// Longest a watch request waits for a change before answering with no events.
        public var maxWatchWait: Duration
        /// How often every streaming watch gets a keepalive line (so clients detect a dead stream).
        public var watchKeepalive: Duration
        /// Lines queued for a streaming watch whose client does not read, before that stream is ended with
        /// a resync line.
        public var maxPendingStreamLines: Int
        /// What a record may claim (pod CIDRs and underlay addresses belong to one node; minimum prefix lengths).
        public var claims: ClaimPolicy = ClaimPolicy()
        /// TLS for every connection (`RegistryTLS.server`); nil serves plain HTTP.
        public var tls: TLSConfiguration?
        /// A connection with no request in progress (never sent one, sent only part of a head, or finished its
        /// last) is closed after this long, so idle sockets cannot exhaust the server's descriptors. A watch in
        /// progress is a request in progress: streams and long polls are not cut.
        public var idleTimeout: Duration = .seconds(15)
        /// Open connections allowed per client address (agents hold a few: requests plus one watch each) …
        public var maxConnectionsPerClient = 64
        /// … and in all (keep it under the process's open-file limit).
        public var maxConnections = 16_384

        public init(
            host: String = "127.0.0.1", port: Int = 7470, dataDirectory: String, leaseTTL: Duration = .seconds(30),
            historyLimit: Int = 10_000, maxBodyBytes: Int = 64 * 1024, maxWatchWait: Duration = .seconds(30),
            watchKeepalive: Duration = .seconds(5), maxPendingStreamLines: Int = 4096
        ) {
            self.host = host
            self.port = port
            self.dataDirectory = dataDirectory
            self.leaseTTL = leaseTTL
            self.historyLimit = historyLimit
            self.maxBodyBytes = maxBodyBytes
            self.maxWatchWait = maxWatchWait
            self.watchKeepalive = max(watchKeepalive, .milliseconds(10))
            self.maxPendingStreamLines = maxPendingStreamLines
        }
    }

    public let configuration: Configuration
    private let credentials: RegistryCredentials
    private let logger: Logger
    private let onListening: @Sendable (Int) async -> Void
    /// Watch traffic counters of this server.
    public let statistics: RegistryServerStatistics

    public init(
        configuration: Configuration, credentials: RegistryCredentials,
        logger: Logger = Logger(label: "ipsec-agent.registry-server"),
        statistics: RegistryServerStatistics = RegistryServerStatistics(),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.statistics = statistics
        self.credentials = credentials
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let store = try RegistryStore(
            directory: configuration.dataDirectory, leaseTTL: configuration.leaseTTL,
            historyLimit: configuration.historyLimit, maxPendingStreamLines: configuration.maxPendingStreamLines,
            claims: configuration.claims, logger: logger)
        let api = RegistryAPI(
            store: store, credentials: credentials, maxBodyBytes: configuration.maxBodyBytes,
            maxWatchWait: configuration.maxWatchWait, watchKeepalive: configuration.watchKeepalive,
            statistics: statistics)
        let onListening = self.onListening
        let logger = self.logger
        let app = Application(
            router: api.makeRouter(),
            server: try Self.serverBuilder(
                configuration,
                limiter: ConnectionLimiter(
                    maxPerAddress: configuration.maxConnectionsPerClient, maxTotal: configuration.maxConnections,
                    statistics: statistics, logger: logger)),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("registry listening", metadata: ["port": "\(port)"])
                await onListening(port)
            },
            logger: logger
        )
        let sweepInterval = min(configuration.leaseTTL / 4, .seconds(1))
        do {
            try await withGracefulShutdownHandler {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await store.runLeaseSweeper(interval: sweepInterval) }
                    group.addTask { [keepalive = configuration.watchKeepalive] in
                        await store.runKeepalive(interval: keepalive)
                    }
                    try await app.run()
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                // Long polls would otherwise hold the shutdown for up to `maxWatchWait`, streams forever.
                Task { await store.beginShutdown() }
            }
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }
}

extension RegistryServer {
    /// Runs the server until SIGTERM or SIGINT, then shuts it down gracefully (for the command line).
    public func runUntilSignalled() async throws {
        let group = ServiceGroup(
            configuration: .init(services: [self], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    static func serverBuilder(_ configuration: Configuration, limiter: ConnectionLimiter) throws -> HTTPServerBuilder {
        let http1 = HTTPServerBuilder.http1(
            configuration: .init(
                additionalChannelHandlers: [limiter.handler()], idleTimeout: .init(configuration.idleTimeout)))
        guard let tls = configuration.tls else { return http1 }
        return try .tls(http1, tlsConfiguration: tls)
    }

    /// Splits `HOST:PORT` or `[V6]:PORT`; nil when malformed.
    public static func parseListenAddress(_ text: String) -> (host: String, port: Int)? {
        ListenAddress(text).map { ($0.host, $0.port) }
    }
}
