import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Registry
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `NodeRegistry` over the embedded registry's HTTP API, as one node (or as the admin).
///
/// Watches use one streaming request (`GET /v1/watch?after=R&stream=1`, NDJSON lines) by default, or long
/// polls (`GET /v1/watch?after=R&timeout=S`) chained into one stream — also the fallback when the server
/// answers a stream request with a plain long-poll answer (a server without streaming). A 410 answer (or
/// a resync line in the stream) becomes `.resyncRequired` and ends the stream; a stream that closes, breaks
/// or stays silent for three keepalive intervals throws, so `RegistryClient` reconnects. The credential is
/// sent as a bearer token and never appears in errors or descriptions.
public struct EmbeddedRegistryClient: NodeRegistry, CustomStringConvertible {
    /// How `watch(after:)` talks to the server.
    public enum WatchTransport: Sendable, Hashable {
        /// One open chunked answer per watch; falls back to long polls if the server does not stream.
        case stream
        /// Chained long polls.
        case longPoll
    }

    public let baseURL: String
    public let nodeName: String
    private let credential: String
    private let httpClient: HTTPClient
    /// How long one watch request waits on the server for a change.
    public let watchWait: Duration
    /// Deadline of an ordinary request (publish, heartbeat, list, delete), and of a stream's answer head.
    public let requestTimeout: Duration
    public let watchTransport: WatchTransport
    /// Stamps every record this client writes (copies of the client share it).
    private let sequence = WriteSequence()

    /// - Parameters:
    ///   - baseURL: e.g. `http://10.0.0.1:7470`.
    ///   - nodeName: the node this client acts for (`RegistryCredentials.adminName` for the admin).
    ///   - credential: `ipsec-agent registry credential --node NAME`.
    ///   - httpClient: shared client; raise its per-host connection limit when many watches share it.
    public init(
        baseURL: String, nodeName: String, credential: String, httpClient: HTTPClient = .shared,
        watchWait: Duration = .seconds(25), requestTimeout: Duration = .seconds(10),
        watchTransport: WatchTransport = .stream
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.nodeName = nodeName
        self.credential = credential
        self.httpClient = httpClient
        self.watchWait = watchWait
        self.requestTimeout = requestTimeout
        self.watchTransport = watchTransport
    }

    /// A client whose requests go through `connections` (for many concurrent watches).
    public init(
        baseURL: String, nodeName: String, credential: String, connections: RegistryHTTPConnections,
        watchWait: Duration = .seconds(25), requestTimeout: Duration = .seconds(10),
        watchTransport: WatchTransport = .stream
    ) {
        self.init(
            baseURL: baseURL, nodeName: nodeName, credential: credential, httpClient: connections.httpClient,
            watchWait: watchWait, requestTimeout: requestTimeout, watchTransport: watchTransport)
    }

    public var description: String { "EmbeddedRegistryClient(\(baseURL), node: \(nodeName))" }

    // MARK: NodeRegistry

    public func publish(_ record: NodeRecord) async throws -> NodeRecord {
        var record = record
        record.sequence = sequence.next(after: record.sequence)
        let body = try JSONEncoder().encode(record)
        let data = try await send(
            .PUT, "/v1/nodes/\(try pathComponent(record.name))", body: body, timeout: requestTimeout)
        return try decode(NodeRecord.self, data)
    }

    /// Admin: revokes every credential of `name` issued so far; returns the generation now required
    /// (`RegistryCredentials.credential(for:generation:)`, `ipsec-agent registry credential --generation`).
    public func revoke(name: String) async throws -> Int64 {
        let data = try await send(.POST, "/v1/nodes/\(try pathComponent(name))/revoke", timeout: requestTimeout)
        return try decode(RegistryWire.RevokeResponse.self, data).generation
    }

    /// Admin: revokes one client certificate of `name`, by its revocation fingerprint
    /// (`RegistryCertificateAuthority.revocationFingerprint(ofCertificateDER:)`); other certificates of the node keep working.
    public func revokeCertificate(sha256: String, of name: String) async throws {
        let body = try JSONEncoder().encode(RegistryWire.RevokeCertificate(sha256: sha256))
        let data = try await send(
            .POST, "/v1/nodes/\(try pathComponent(name))/revoke-certificate", body: body, timeout: requestTimeout)
        guard try decode(RegistryWire.RevokeCertificate.self, data).sha256 == sha256 else {
            throw RegistryError.unavailable("\(baseURL) answered the revocation of another certificate")
        }
    }

    public func heartbeat(name: String) async throws {
        // From the same sequence as writes: larger than the record's and every earlier heartbeat's.
        let path = "/v1/nodes/\(try pathComponent(name))/heartbeat?sequence=\(sequence.next(after: 0))"
        _ = try await send(.POST, path, timeout: requestTimeout)
    }

    public func list() async throws -> RegistrySnapshot {
        let response = try decode(
            RegistryWire.ListResponse.self, try await send(.GET, "/v1/nodes", timeout: requestTimeout))
        return RegistrySnapshot(records: response.records, revision: response.revision)
    }

    public func watch(after revision: Int64) -> AsyncThrowingStream<RegistryEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: RegistryEvent.self)
        let task = Task {
            var after = revision
            do {
                if watchTransport == .stream {
                    switch try await streamWatch(after: &after, continuation) {
                    case .resyncRequired:
                        continuation.yield(.resyncRequired)
                        continuation.finish()
                        return
                    case .notStreaming:
                        break  // continue with long polls from `after`
                    }
                }
                while true {
                    try Task.checkCancellation()
                    let seconds = max(1, Int(watchWait.components.seconds))
                    let data: Data
                    do {
                        data = try await send(
                            .GET, "/v1/watch?after=\(after)&timeout=\(seconds)", timeout: watchWait + requestTimeout)
                    } catch RegistryError.rejected(status: 410, _) {
                        continuation.yield(.resyncRequired)
                        continuation.finish()
                        return
                    }
                    let batch = try decode(RegistryWire.WatchResponse.self, data)
                    try yield(batch.events, after: &after, continuation)
                }
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    private enum StreamEnd {
        case resyncRequired
        /// The server answered with a long-poll body (no streaming support); its events were yielded.
        case notStreaming
    }

    /// Yields events in order and advances `after`; a put without its record or a revision that does not
    /// advance means a broken stream.
    private func yield(
        _ events: [RegistryWire.Event], after: inout Int64,
        _ continuation: AsyncThrowingStream<RegistryEvent, any Error>.Continuation
    ) throws {
        for event in events {
            guard let registryEvent = event.registryEvent else {
                throw RegistryError.unavailable("watch: put event without record at revision \(event.revision)")
            }
            guard event.revision > after else {
                throw RegistryError.unavailable("watch: revision \(event.revision) out of order (after \(after))")
            }
            continuation.yield(registryEvent)
            after = event.revision
        }
    }

    /// Runs one streaming watch until it ends. Throws when the stream breaks, closes, or stays silent for
    /// three keepalive intervals (`watchWait` if the server announced none).
    private func streamWatch(
        after: inout Int64, _ continuation: AsyncThrowingStream<RegistryEvent, any Error>.Continuation
    ) async throws -> StreamEnd {
        let response: HTTPClientResponse
        do {
            // The deadline covers the answer head only; the body streams as long as it lasts.
            response = try await httpClient.execute(
                makeRequest(.GET, "/v1/watch?after=\(after)&stream=1"), timeout: timeAmount(requestTimeout))
        } catch let error as CancellationError {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw RegistryError.unavailable("GET \(baseURL) watch stream: \(error)")
        }
        let isStream = response.headers.first(name: "content-type")?.hasPrefix(RegistryWire.streamContentType) ?? false
        guard (200..<300).contains(response.status.code), isStream else {
            let data = try await collect(response.body)
            if response.status.code == 410 { return .resyncRequired }
            try check(response.status, data)
            try yield(try decode(RegistryWire.WatchResponse.self, data).events, after: &after, continuation)
            return .notStreaming
        }
        var idle = watchWait
        if let text = response.headers.first(name: RegistryWire.keepaliveHeader), let ms = Int64(text), ms > 0 {
            // Three keepalives missed; at least a second, so a busy machine does not cut a healthy stream.
            idle = max(.milliseconds(ms) * 3, .seconds(1))
        }
        let start = after
        let activity = StreamActivity()
        return try await withThrowingTaskGroup(of: StreamEnd.self) { group in
            group.addTask {
                var after = start
                var splitter = LineSplitter(maxLineBytes: 16 * 1024 * 1024)
                let decoder = JSONDecoder()
                do {
                    for try await chunk in response.body {
                        activity.count.add(1, ordering: .relaxed)
                        splitter.append(chunk)
                        while let line = try splitter.nextLine() {
                            let decoded: RegistryWire.StreamLine
                            do {
                                decoded = try decoder.decode(
                                    RegistryWire.StreamLine.self, from: Data(line.readableBytesView))
                            } catch {
                                throw RegistryError.unavailable(
                                    "unreadable watch stream line from \(baseURL): \(error)")
                            }
                            if let message = decoded.error {
                                if decoded.compactedRevision != nil { return .resyncRequired }
                                throw RegistryError.unavailable("watch stream from \(baseURL) ended: \(message)")
                            }
                            if let events = decoded.events { try yield(events, after: &after, continuation) }
                        }
                    }
                } catch let error as RegistryError {
                    throw error
                } catch let error as LineSplitter.LineTooLong {
                    throw RegistryError.unavailable("watch stream from \(baseURL): \(error)")
                } catch {
                    if Task.isCancelled { throw CancellationError() }
                    throw RegistryError.unavailable("watch stream from \(baseURL) broke: \(error)")
                }
                throw RegistryError.unavailable("watch stream closed by \(baseURL)")
            }
            group.addTask { [idle] in
                // Watchdog: a stream without a byte (not even a keepalive) for `idle` is dead.
                var seen = activity.count.load(ordering: .relaxed)
                while true {
                    try await Task.sleep(for: idle)
                    let now = activity.count.load(ordering: .relaxed)
                    if now == seen {
                        throw RegistryError.unavailable("watch stream from \(baseURL) silent for \(idle)")
                    }
                    seen = now
                }
            }
            defer { group.cancelAll() }
            guard let end = try await group.next() else { throw RegistryError.watchEnded }
            return end
        }
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
        guard NodeRecord.isValidName(name) else {
            throw RegistryError.invalidRecord("name: \"\(name.prefix(64))\" is not a DNS-like name")
        }
        return name
    }

    private func makeRequest(_ method: HTTPMethod, _ path: String, body: Data? = nil) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(credential)")
        request.headers.add(name: RegistryWire.nodeNameHeader, value: nodeName)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        return request
    }

    private func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    private func collect(_ body: HTTPClientResponse.Body) async throws -> Data {
        do {
            return Data(try await body.collect(upTo: 16 * 1024 * 1024).readableBytesView)
        } catch let error as CancellationError {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw RegistryError.unavailable("reading an answer from \(baseURL): \(error)")
        }
    }

    private func send(_ method: HTTPMethod, _ path: String, body: Data? = nil, timeout: Duration) async throws -> Data {
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(makeRequest(method, path, body: body), timeout: timeAmount(timeout))
        } catch let error as CancellationError {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw RegistryError.unavailable("\(method) \(baseURL): \(error)")
        }
        let data = try await collect(response.body)
        try check(response.status, data)
        return data
    }

    /// Maps a non-2xx answer to a `RegistryError` carrying the server's message.
    private func check(_ status: HTTPResponseStatus, _ data: Data) throws {
        guard !(200..<300).contains(status.code) else { return }
        let message =
            (try? JSONDecoder().decode(RegistryWire.ErrorBody.self, from: data))?.error ?? "HTTP \(status.code)"
        switch status.code {
        case 401: throw RegistryError.unauthorized(message)
        case 403: throw RegistryError.forbidden(message)
        case 404: throw RegistryError.notFound(message)
        case 400, 413, 422: throw RegistryError.invalidRecord(message)
        default: throw RegistryError.rejected(status: Int(status.code), message: message)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw RegistryError.unavailable("unreadable answer from \(baseURL): \(error)")
        }
    }
}

/// Chunks received on one watch stream (read by its idle watchdog).
private final class StreamActivity: Sendable {
    let count = Atomic<Int>(0)
}
