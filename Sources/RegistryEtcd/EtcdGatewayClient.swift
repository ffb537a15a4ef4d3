import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Calls etcd's JSON gateway (`POST /v3/...`) on a list of endpoints.
///
/// A call goes to the endpoint that answered last; when that endpoint cannot be reached (connect
/// failure, reset, deadline), the next one is tried, in order, until every endpoint has failed once.
/// An answer from etcd — success or `{"error","message","code"}` — ends the call: errors that come
/// from etcd itself are not retried on another member, except gRPC code 14 (UNAVAILABLE: the
/// member has no leader or is stopping), which counts as unreachable.
final class EtcdGatewayClient: Sendable {
    let endpoints: [String]
    private let http: HTTPClient
    private let requestTimeout: TimeAmount
    private let maxResponseBytes: Int
    private let logger: Logger
    /// Index of the endpoint that answered last.
    private let current = Mutex(0)

    init(endpoints: [String], http: HTTPClient, requestTimeout: Duration, maxResponseBytes: Int, logger: Logger) {
        self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.http = http
        self.requestTimeout = TimeAmount(requestTimeout)
        self.maxResponseBytes = maxResponseBytes
        self.logger = logger
    }

    /// A unary call: POSTs `request` as JSON to `path`, decodes the answer as `Response`.
    /// The whole exchange (connect, head and body) must finish within the request timeout on each
    /// endpoint, so a member that stalls mid-answer is failed over like one that is down.
    func call<Request: Encodable, Response: Decodable & Sendable>(
        _ path: String, _ request: Request, as _: Response.Type = Response.self
    ) async throws -> Response {
        let body = try JSONEncoder().encode(request)
        return try await withFailover(path) { endpoint in
            try await self.withRequestTimeout {
                let response = try await self.http.execute(
                    self.makeRequest(endpoint, path, body), timeout: self.requestTimeout, logger: self.logger)
                let bytes = try await response.body.collect(upTo: self.maxResponseBytes)
                guard response.status == .ok else {
                    throw Self.error(from: bytes, status: response.status, endpoint: endpoint, path: path)
                }
                return try Self.decode(Response.self, from: bytes, endpoint: endpoint, path: path)
            }
        }
    }

    /// A streaming call: POSTs `request` and returns the open response body (newline-separated
    /// JSON objects) once etcd has answered 200. The caller reads it to its end.
    func openStream<Request: Encodable>(
        _ path: String, _ request: Request
    ) async throws -> (endpoint: String, body: HTTPClientResponse.Body) {
        let body = try JSONEncoder().encode(request)
        return try await withFailover(path) { endpoint in
            let response = try await self.http.execute(
                self.makeRequest(endpoint, path, body), timeout: self.requestTimeout, logger: self.logger)
            guard response.status == .ok else {
                let bytes = try await response.body.collect(upTo: self.maxResponseBytes)
                throw Self.error(from: bytes, status: response.status, endpoint: endpoint, path: path)
            }
            return (endpoint, response.body)
        }
    }

    // MARK: Failover

    private func withFailover<T>(_ path: String, _ attempt: (String) async throws -> T) async throws -> T {
        let start = current.withLock { $0 }
        var failures: [String] = []
        for offset in 0..<endpoints.count {
            let index = (start + offset) % endpoints.count
            let endpoint = endpoints[index]
            do {
                let result = try await attempt(endpoint)
                if offset > 0 {
                    current.withLock { $0 = index }
                    logger.notice("etcd endpoint switched", metadata: ["endpoint": "\(endpoint)"])
                }
                return result
            } catch let error as EtcdRegistryError where !error.isUnavailable {
                current.withLock { $0 = index }  // etcd answered: this endpoint is alive
                throw error
            } catch {
                try Task.checkCancellation()
                failures.append("\(endpoint): \(error)")
                logger.warning(
                    "etcd endpoint unreachable, trying the next",
                    metadata: ["endpoint": "\(endpoint)", "path": "\(path)", "error": "\(error)"])
            }
        }
        throw EtcdRegistryError.unreachable(path: path, failures: failures)
    }

    /// Thrown when a unary exchange outlives the request timeout (a transport failure: fails over).
    struct RequestTimedOut: Error, CustomStringConvertible {
        let timeout: TimeAmount
        var description: String { "no complete answer within \(timeout.nanoseconds / 1_000_000) ms" }
    }

    private func withRequestTimeout<T: Sendable>(
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask { [timeout = requestTimeout] in
                try await Task.sleep(for: .nanoseconds(timeout.nanoseconds))
                return nil
            }
            defer { group.cancelAll() }
            guard let value = try await group.next()! else {
                throw RequestTimedOut(timeout: requestTimeout)
            }
            return value
        }
    }

    // MARK: Encoding

    private func makeRequest(_ endpoint: String, _ path: String, _ body: Data) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        return request
    }

    private static func decode<T: Decodable>(
        _: T.Type, from bytes: ByteBuffer, endpoint: String, path: String
    ) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes.readableBytesView))
        } catch {
            throw EtcdRegistryError.malformedResponse(endpoint: endpoint, path: path, reason: "\(error)")
        }
    }

    /// Turns a non-200 answer into ``EtcdRegistryError/server`` when it carries a gateway error body.
    static func error(
        from bytes: ByteBuffer, status: HTTPResponseStatus, endpoint: String, path: String
    ) -> EtcdRegistryError {
        if let gatewayError = try? JSONDecoder().decode(
            EtcdWire.GatewayError.self, from: Data(bytes.readableBytesView)),
            !gatewayError.message.isEmpty
        {
            return .server(endpoint: endpoint, path: path, code: gatewayError.code, message: gatewayError.message)
        }
        return .httpStatus(endpoint: endpoint, path: path, status: Int(status.code))
    }
}

extension EtcdGatewayClient {
    /// The process-wide HTTP client used when none is given: connection failures surface at once
    /// (so failover is immediate), there is no read timeout (watches idle for long), and each
    /// watch holds its own HTTP/1.1 connection, so the pool allows many per endpoint.
    /// It lives as long as the process and is never shut down.
    static let sharedHTTPClient: HTTPClient = makeHTTPClient(tls: nil)

    /// Clients made for a TLS configuration, kept for the life of the process like the shared one (an HTTP
    /// client must be shut down before it is released; a daemon's registry lives as long as the daemon).
    static let tlsHTTPClients = Mutex<[HTTPClient]>([])

    static func processLifetimeHTTPClient(tls: TLSConfiguration) -> HTTPClient {
        let client = makeHTTPClient(tls: tls)
        tlsHTTPClients.withLock { $0.append(client) }
        return client
    }

    /// A client tuned for etcd: immediate failover, no read timeout (watches), many connections per endpoint.
    static func makeHTTPClient(tls: TLSConfiguration?) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        configuration.timeout = .init(connect: .seconds(2), read: nil)
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }
}
