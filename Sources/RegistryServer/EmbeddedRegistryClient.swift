import AsyncHTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import Registry

/// `NodeRegistry` over the embedded registry's HTTP API, as one node (or as the admin).
///
/// Watches are long polls (`GET /v1/watch?after=R&timeout=S`) chained into one stream; a 410 answer
/// becomes `.resyncRequired` and ends the stream. The credential is sent as a bearer token and never
/// appears in errors or descriptions.
public struct EmbeddedRegistryClient: NodeRegistry, CustomStringConvertible {
    public let baseURL: String
    public let nodeName: String
    private let credential: String
    private let httpClient: HTTPClient
    /// How long one watch request waits on the server for a change.
    public let watchWait: Duration
    /// Deadline of an ordinary request (publish, heartbeat, list, delete).
    public let requestTimeout: Duration

    /// - Parameters:
    ///   - baseURL: e.g. `http://10.0.0.1:7470`.
    ///   - nodeName: the node this client acts for (`RegistryCredentials.adminName` for the admin).
    ///   - credential: `ipsec-agent registry credential --node NAME`.
    ///   - httpClient: shared client; raise its per-host connection limit when many watches share it.
    public init(
        baseURL: String, nodeName: String, credential: String, httpClient: HTTPClient = .shared,
        watchWait: Duration = .seconds(25), requestTimeout: Duration = .seconds(10)
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.nodeName = nodeName
        self.credential = credential
        self.httpClient = httpClient
        self.watchWait = watchWait
        self.requestTimeout = requestTimeout
    }

    /// A client whose requests go through `connections` (for many concurrent watches).
    public init(
        baseURL: String, nodeName: String, credential: String, connections: RegistryHTTPConnections,
        watchWait: Duration = .seconds(25), requestTimeout: Duration = .seconds(10)
    ) {
        self.init(
            baseURL: baseURL, nodeName: nodeName, credential: credential, httpClient: connections.httpClient,
            watchWait: watchWait, requestTimeout: requestTimeout)
    }

    public var description: String { "EmbeddedRegistryClient(\(baseURL), node: \(nodeName))" }

    // MARK: NodeRegistry

    public func publish(_ record: NodeRecord) async throws -> NodeRecord {
        let body = try JSONEncoder().encode(record)
        let data = try await send(.PUT, "/v1/nodes/\(try pathComponent(record.name))", body: body, timeout: requestTimeout)
        return try decode(NodeRecord.self, data)
    }

    public func heartbeat(name: String) async throws {
        _ = try await send(.POST, "/v1/nodes/\(try pathComponent(name))/heartbeat", timeout: requestTimeout)
    }

    public func list() async throws -> RegistrySnapshot {
        let response = try decode(RegistryWire.ListResponse.self, try await send(.GET, "/v1/nodes", timeout: requestTimeout))
        return RegistrySnapshot(records: response.records, revision: response.revision)
    }

    public func watch(after revision: Int64) -> AsyncThrowingStream<RegistryEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: RegistryEvent.self)
        let task = Task {
            var after = revision
            do {
                while true {
                    try Task.checkCancellation()
                    let seconds = max(1, Int(watchWait.components.seconds))
                    let data: Data
                    do {
                        data = try await send(.GET, "/v1/watch?after=\(after)&timeout=\(seconds)", timeout: watchWait + requestTimeout)
                    } catch RegistryError.rejected(status: 410, _) {
                        continuation.yield(.resyncRequired)
                        continuation.finish()
                        return
                    }
                    let batch = try decode(RegistryWire.WatchResponse.self, data)
                    for event in batch.events {
                        guard let registryEvent = event.registryEvent else {
                            throw RegistryError.unavailable("watch: put event without record at revision \(event.revision)")
                        }
                        continuation.yield(registryEvent)
                        after = event.revision
                    }
                }
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    // MARK: Admin

    /// Deletes a record; needs the admin credential. Returns false if no live record had that name.
    public func delete(name: String) async throws -> Bool {
        do {
            _ = try await send(.DELETE, "/v1/nodes/\(try pathComponent(name))", timeout: requestTimeout)
            return true
        } catch RegistryError.notFound {
            return false
        }
    }

    // MARK: HTTP

    private func pathComponent(_ name: String) throws -> String {
        // Node names are DNS-like; anything else cannot be addressed (and the server would refuse it).
        guard NodeRecord.isValidName(name) else { throw RegistryError.invalidRecord("name: \"\(name.prefix(64))\" is not a DNS-like name") }
        return name
    }

    private func send(_ method: HTTPMethod, _ path: String, body: Data? = nil, timeout: Duration) async throws -> Data {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(credential)")
        request.headers.add(name: RegistryWire.nodeNameHeader, value: nodeName)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await httpClient.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
            bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        } catch let error as CancellationError {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw RegistryError.unavailable("\(method) \(baseURL): \(error)")
        }
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            let message = (try? JSONDecoder().decode(RegistryWire.ErrorBody.self, from: data))?.error ?? "HTTP \(response.status.code)"
            switch response.status.code {
            case 401: throw RegistryError.unauthorized(message)
            case 403: throw RegistryError.forbidden(message)
            case 404: throw RegistryError.notFound(message)
            case 400, 413, 422: throw RegistryError.invalidRecord(message)
            default: throw RegistryError.rejected(status: Int(response.status.code), message: message)
            }
        }
        return data
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw RegistryError.unavailable("unreadable answer from \(baseURL): \(error)")
        }
    }
}
