import AsyncHTTPClient
import Foundation
import IPsecPrimitives
import Logging
import NIOSSL
import NIOCore
import NIOHTTP1
import Registry
import RegistryServer
import ServiceLifecycle

/// A loopback embedded registry server for one test, on a free port, with its own data directory.
struct TestRegistryServer {
    static let secret = SecretBytes(Array("test-cluster-secret-0123456789".utf8))
    static let credentials = RegistryCredentials(secret: secret)

    let baseURL: String
    let port: Int
    let directory: String
    /// Watch counters (streams opened, long polls answered) of this server.
    let statistics: RegistryServerStatistics

    /// Cancelling the server at the end of a test logs errors from Hummingbird; assertions catch real ones.
    static let quietLogger: Logger = {
        var logger = Logger(label: "registry-test-server")
        logger.logLevel = .critical
        return logger
    }()

    /// Runs a server (in `directory`, or a fresh one) for the duration of `body`, then stops it.
    static func with<R>(
        directory: String? = nil, port: Int = 0, leaseTTL: Duration = .seconds(30), historyLimit: Int = 10_000,
        watchKeepalive: Duration = .seconds(5), maxPendingStreamLines: Int = 4096, tls: TLSConfiguration? = nil,
        idleTimeout: Duration = .seconds(15),
        logger: Logger = quietLogger, _ body: (TestRegistryServer) async throws -> R
    ) async throws -> R {
        let directory = directory ?? makeDirectory()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let statistics = RegistryServerStatistics()
        var configuration = RegistryServer.Configuration(
            host: "127.0.0.1", port: port, dataDirectory: directory, leaseTTL: leaseTTL, historyLimit: historyLimit,
            maxWatchWait: .seconds(5), watchKeepalive: watchKeepalive, maxPendingStreamLines: maxPendingStreamLines)
        configuration.tls = tls
        configuration.idleTimeout = idleTimeout
        let server = RegistryServer(
            configuration: configuration,
            credentials: credentials,
            logger: logger,
            statistics: statistics,
            onListening: { port in portContinuation.yield(port) })
        // Stopped by a graceful shutdown, not by cancelling: cancelling a NIO server while an accepted
        // connection is still queued traps ("Deinited NIOAsyncWriter without calling finish()",
        // apple/swift-nio#3481), which reconnecting clients make likely.
        let group = ServiceGroup(configuration: .init(services: [server], logger: logger))
        let task = Task {
            defer { portContinuation.finish() }
            try await group.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            // run() ended before listening: report why (e.g. the port is taken).
            _ = try await task.value
            throw RegistryError.unavailable("test server stopped before listening")
        }
        let harness = TestRegistryServer(
            baseURL: "\(tls == nil ? "http" : "https")://127.0.0.1:\(port)", port: port, directory: directory, statistics: statistics)
        do {
            let result = try await body(harness)
            await group.triggerGracefulShutdown()
            _ = try? await task.value
            return result
        } catch {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
            throw error
        }
    }

    static func makeDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("registry-test-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func client(_ name: String, transport: EmbeddedRegistryClient.WatchTransport = .stream) -> EmbeddedRegistryClient {
        Self.client(name, baseURL: baseURL, transport: transport)
    }

    static func client(
        _ name: String, baseURL: String, transport: EmbeddedRegistryClient.WatchTransport = .stream
    ) -> EmbeddedRegistryClient {
        EmbeddedRegistryClient(
            baseURL: baseURL, nodeName: name, credential: credentials.credential(for: name), watchWait: .seconds(5),
            watchTransport: transport)
    }

    var admin: EmbeddedRegistryClient { client(RegistryCredentials.adminName) }

    /// A raw request, for what the typed client refuses to send. Returns status and body text.
    func raw(
        _ method: HTTPMethod, _ path: String, as name: String? = nil, token: String? = nil, body: [UInt8]? = nil
    ) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let name {
            request.headers.add(name: "X-Registry-Node", value: name)
            request.headers.add(name: "Authorization", value: "Bearer \(token ?? Self.credentials.credential(for: name))")
        }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: bytes))
    }
}

/// Reads `count` events from a watch (fewer if it ends first).
func take(_ count: Int, from stream: AsyncThrowingStream<RegistryEvent, any Error>) async throws -> [RegistryEvent] {
    var events: [RegistryEvent] = []
    for try await event in stream {
        events.append(event)
        if events.count == count { break }
    }
    return events
}
