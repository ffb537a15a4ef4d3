import Hummingbird
import Logging
import NIOCore
import Registry

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The embedded registry's HTTP routes: authentication, validation, and translation to `RegistryStore`.
/// Nothing is stored unless the caller is authenticated and allowed, and the body is complete and valid.
struct RegistryAPI: Sendable {
    let store: RegistryStore
    let credentials: RegistryCredentials
    let maxBodyBytes: Int
    let maxWatchWait: Duration
    let watchKeepalive: Duration
    let statistics: RegistryServerStatistics
    let watchCache = WatchResponseCache()

    /// An error answer: status and a message naming the problem.
    struct Failure: Error {
        var status: HTTPResponse.Status
        var message: String
        var compactedRevision: Int64? = nil
    }

    private enum Caller {
        case node(String)
        case admin
    }

    func makeRouter() -> Router<RegistryRequestContext> {
        let router = Router(context: RegistryRequestContext.self)
        router.get("healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("v1/nodes") { request, context in await answer { try await list(request, context) } }
        router.put("v1/nodes/:name") { request, context in await answer { try await publish(request, context) } }
        router.post("v1/nodes/:name/heartbeat") { request, context in
            await answer { try await heartbeat(request, context) }
        }
        router.delete("v1/nodes/:name") { request, context in await answer { try await delete(request, context) } }
        router.post("v1/nodes/:name/revoke") { request, context in await answer { try await revoke(request, context) } }
        router.post("v1/nodes/:name/revoke-certificate") { request, context in
            await answer { try await revokeCertificate(request, context) }
        }
        router.get("v1/watch") { request, context in await answer { try await watch(request, context) } }
        return router
    }

    // MARK: Handlers

    private func list(_ request: Request, _ context: RegistryRequestContext) async throws -> Response {
        _ = try await authenticate(request, context)
        let snapshot = await store.list()
        return try json(.ok, RegistryWire.ListResponse(revision: snapshot.revision, records: snapshot.records))
    }

    private func publish(_ request: Request, _ context: RegistryRequestContext) async throws -> Response {
        let name = try context.parameters.require("name")
        try await requireNode(named: name, request, context)
        let body = try await collectBody(request)
        let record: NodeRecord
        do {
            record = try JSONDecoder().decode(NodeRecord.self, from: Data(body.readableBytesView))
        } catch let error as DecodingError {
            throw Failure(status: .badRequest, message: RegistryAPI.describe(error))
        }
        guard record.name == name else {
            throw Failure(
                status: .badRequest,
                message: "name: body names \"\(record.name.prefix(64))\" but the path names \"\(name)\"")
        }
        do {
            try record.validate()
        } catch {
            throw Failure(status: .unprocessableContent, message: "\(error)")
        }
        let stored = try await store.publish(record)
        return try json(.ok, stored)
    }

    private func heartbeat(_ request: Request, _ context: RegistryRequestContext) async throws -> Response {
        let name = try context.parameters.require("name")
        try await requireNode(named: name, request, context)
        guard let text = request.uri.queryParameters.get("sequence"), let sequence = Int64(text), sequence > 0 else {
            throw Failure(
                status: .badRequest,
                message:
                    "sequence: a positive integer larger than the last write's is required (e.g. the time in milliseconds)"
            )
        }
        try await store.heartbeat(name: name, sequence: sequence)
        return Response(status: .noContent)
    }

    private func delete(_ request: Request, _ context: RegistryRequestContext) async throws -> Response {
        let name = try context.parameters.require("name")
        guard case .admin = try await authenticate(request, context) else {
            throw Failure(status: .forbidden, message: "only the admin credential may delete records")
        }
        guard try await store.delete(name: name) else {
            throw Failure(status: .notFound, message: "no live record for node \(name)")
        }
        return Response(status: .noContent)
    }

    /// Admin: revokes every credential of the node issued so far; answers the generation now required.
    private func revoke(_ request: Request, _ context: RegistryRequestContext) async throws -> Response {
        let name = try context.parameters.require("name")
        guard case .admin = try await authenticate(request, context) else {
            throw Failure(status: .forbidden, message: "only the admin credential may revoke credentials")
        }
        guard NodeRecord.isValidName(name) else { throw Failure(status: .badRequest, message: "name: not a node name") }
        let generation = try await store.revoke(name: name)
        return try json(.ok, RegistryWire.RevokeResponse(name: name, generation: generation))
    }

    /// The request body, at most `maxBodyBytes` (413 beyond).
    private func collectBody(_ request: Request) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw Failure(status: .contentTooLarge, message: "body exceeds \(maxBodyBytes) bytes")
        }
    }

    /// Admin: revokes one client certificate of the node, by its revocation fingerprint.
    private func revokeCertificate(_ request: Request, _ context: RegistryRequestContext) async throws -> Response {
        let name = try context.parameters.require("name")
        guard case .admin = try await authenticate(request, context) else {
            throw Failure(status: .forbidden, message: "only the admin credential may revoke certificates")
        }
        guard NodeRecord.isValidName(name) else { throw Failure(status: .badRequest, message: "name: not a node name") }
        let body = try await collectBody(request)
        guard
            let wanted = try? JSONDecoder().decode(
                RegistryWire.RevokeCertificate.self, from: Data(body.readableBytesView)),
            wanted.sha256.count == 64, wanted.sha256.allSatisfy({ $0.isHexDigit && !$0.isUppercase })
        else {
            throw Failure(
                status: .badRequest, message: "sha256: the certificate's SHA-256, 64 lowercase hex digits, is required")
        }
        try await store.revokeCertificate(sha256: wanted.sha256, of: name)
        return try json(.ok, wanted)
    }

    private func watch(_ request: Request, _ context: RegistryRequestContext) async throws -> Response {
        _ = try await authenticate(request, context)
        let query = request.uri.queryParameters
        guard let afterText = query.get("after"), let after = Int64(afterText), after >= 0 else {
            throw Failure(status: .badRequest, message: "after: a revision (integer >= 0) is required")
        }
        if let streamText = query.get("stream") {
            guard streamText == "1" || streamText == "0" else {
                throw Failure(status: .badRequest, message: "stream: 1 (streaming watch) or 0 (long poll) expected")
            }
            if streamText == "1" {
                guard query.get("timeout") == nil else {
                    throw Failure(
                        status: .badRequest, message: "timeout: not allowed with stream=1 (a stream stays open)")
                }
                return try await streamWatch(after: after)
            }
        }
        var wait = maxWatchWait
        if let timeoutText = query.get("timeout") {
            guard let seconds = Int(timeoutText), seconds >= 0 else {
                throw Failure(status: .badRequest, message: "timeout: seconds (integer >= 0) expected")
            }
            wait = min(wait, .seconds(seconds))
        }
        if case .events(let events, _) = await store.events(after: after), events.isEmpty, wait > .zero {
            await store.waitForChange(after: after, timeout: wait)
        }
        switch await store.events(after: after) {
        case .compacted(let compactedRevision):
            throw gone(after: after, compactedRevision: compactedRevision)
        case .events(let events, let revision):
            statistics.longPollAnswered()
            let body = try watchCache.body(after: after, revision: revision) {
                ByteBuffer(
                    bytes: try JSONEncoder().encode(
                        RegistryWire.WatchResponse(revision: revision, events: events.map(RegistryWire.Event.init))))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
    }

    /// A streaming watch: a chunked answer that stays open, one NDJSON line per batch of changes (the bytes
    /// encoded once by the store and shared by every stream), a keepalive line every `watchKeepalive`.
    /// A compacted `after` answers 410 before streaming starts; a stream that falls behind ends with a
    /// resync line (the 410 body).
    private func streamWatch(after: Int64) async throws -> Response {
        if case .compacted(let compactedRevision) = await store.events(after: after, limit: 0) {
            throw gone(after: after, compactedRevision: compactedRevision)
        }
        let store = self.store
        let statistics = self.statistics
        // `X-Accel-Buffering: no` asks nginx-style proxies not to buffer the stream.
        var headers: HTTPFields = [.contentType: RegistryWire.streamContentType, .cacheControl: "no-store"]
        headers[.init("X-Accel-Buffering")!] = "no"
        let ms =
            watchKeepalive.components.seconds * 1000 + watchKeepalive.components.attoseconds / 1_000_000_000_000_000
        headers[.init(RegistryWire.keepaliveHeader)!] = String(ms)
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                switch try await store.subscribe(after: after) {
                case .compacted(let compactedRevision):
                    // Compacted between the check above and now: tell it in the stream.
                    try await writer.write(
                        ByteBuffer(
                            bytes: try JSONEncoder().encode(
                                RegistryWire.ErrorBody(
                                    error: "revision \(after) is not in the history; list and watch again",
                                    compactedRevision: compactedRevision)) + [UInt8(ascii: "\n")]))
                case .closed:
                    break
                case .subscribed(let subscriber, let backlog):
                    statistics.streamOpened()
                    defer {
                        store.streams.remove(subscriber)
                        statistics.streamClosed()
                    }
                    try await writer.write(contentsOf: backlog)
                    while let lines = await subscriber.next() {
                        try await writer.write(contentsOf: lines)
                    }
                }
                try await writer.finish(nil)
            })
    }

    private func gone(after: Int64, compactedRevision: Int64) -> Failure {
        Failure(
            status: .gone,
            message:
                "revision \(after) is not in the history (kept: after \(compactedRevision) up to the current revision); list and watch again",
            compactedRevision: compactedRevision)
    }

    // MARK: Authentication

    /// The caller: on a mutual-TLS connection, the node its verified client certificate names (an
    /// `X-Registry-Node` header, if sent, must agree, unless it is the admin's; a revoked certificate is refused);
    /// otherwise `Authorization: Bearer <credential>` checked
    /// against the name in `X-Registry-Node`.
    private func authenticate(_ request: Request, _ context: RegistryRequestContext) async throws -> Caller {
        let headerName = RegistryWire.nodeNameHeader.lowercased()
        let claimed = request.headers.first(where: { $0.name.canonicalName == headerName })?.value
        let certificate = await context.clientCertificate()
        if let certificate {
            guard let fingerprint = certificate.fingerprint else {
                throw Failure(status: .unauthorized, message: "the client certificate cannot be parsed")
            }
            if await store.isCertificateRevoked(sha256: fingerprint) {
                throw Failure(
                    status: .unauthorized,
                    message: "the client certificate (sha256 \(fingerprint.prefix(16))…) has been revoked")
            }
        }
        // The admin proves itself with the admin credential; on a mutual-TLS connection any valid certificate
        // gets it through the handshake.
        if let certified = certificate?.nodeName, claimed != RegistryCredentials.adminName {
            if let claimed, !claimed.isEmpty, claimed != certified {
                throw Failure(
                    status: .forbidden,
                    message: "the client certificate names \(certified), the request \(claimed.prefix(64))")
            }
            return .node(certified)
        }
        guard let name = claimed, !name.isEmpty else {
            throw Failure(status: .unauthorized, message: "missing \(RegistryWire.nodeNameHeader) header")
        }
        guard let authorization = request.headers[.authorization], authorization.hasPrefix("Bearer ") else {
            throw Failure(status: .unauthorized, message: "missing bearer credential")
        }
        let token = String(authorization.dropFirst("Bearer ".count))
        let minimum = name == RegistryCredentials.adminName ? 0 : await store.minimumCredentialGeneration(of: name)
        guard credentials.isValid(token: token, for: name, minimumGeneration: minimum) else {
            throw Failure(status: .unauthorized, message: "invalid credential for \(name.prefix(64))")
        }
        return name == RegistryCredentials.adminName ? .admin : .node(name)
    }

    /// Only the node itself may write its record or heartbeat its lease.
    private func requireNode(named name: String, _ request: Request, _ context: RegistryRequestContext) async throws {
        switch try await authenticate(request, context) {
        case .node(let caller) where caller == name: return
        case .node(let caller):
            throw Failure(status: .forbidden, message: "node \(caller) may not write the record of \(name)")
        case .admin:
            throw Failure(status: .forbidden, message: "the admin credential may delete records, not write them")
        }
    }

    // MARK: Responses

    /// Runs a handler and turns `Failure` and `RegistryError` into JSON error answers.
    private func answer(_ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let failure as Failure {
            return errorResponse(failure)
        } catch let error as RegistryError {
            switch error {
            case .notFound(let m): return errorResponse(Failure(status: .notFound, message: m))
            case .invalidRecord(let m): return errorResponse(Failure(status: .unprocessableContent, message: m))
            case .rejected(let status, let m): return errorResponse(Failure(status: .init(code: status), message: m))
            default: return errorResponse(Failure(status: .internalServerError, message: "\(error)"))
            }
        } catch {
            return errorResponse(Failure(status: .internalServerError, message: "internal error: \(type(of: error))"))
        }
    }

    private func errorResponse(_ failure: Failure) -> Response {
        let body = RegistryWire.ErrorBody(error: failure.message, compactedRevision: failure.compactedRevision)
        return (try? json(failure.status, body)) ?? Response(status: failure.status)
    }

    private func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes  // "10.1.0.0/24", as an operator reads it in curl output
        let data = try encoder.encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A decoding error as "field.path: problem", without echoing the whole body.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? "body" : p
        }
        switch error {
        case .dataCorrupted(let context):
            return "\(path(context)): \(context.underlyingError == nil ? context.debugDescription : "malformed JSON")"
        case .keyNotFound(let key, let context):
            return context.codingPath.isEmpty
                ? "missing field \(key.stringValue)" : "\(path(context)): missing field \(key.stringValue)"
        case .typeMismatch(let type, let context):
            return "\(path(context)): expected \(type)"
        case .valueNotFound(let type, let context):
            return "\(path(context)): expected \(type), found null"
        @unknown default:
            return "malformed body"
        }
    }
}
