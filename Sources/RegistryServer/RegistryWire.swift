import Registry

/// JSON bodies of the embedded registry's HTTP API (see docs/registry.md).
enum RegistryWire {
    /// Header carrying the caller's node name (or `_admin`); the credential goes in `Authorization: Bearer`.
    static let nodeNameHeader = "X-Registry-Node"
    /// Content type of a streaming watch answer: one JSON object per line.
    static let streamContentType = "application/x-ndjson"
    /// Header of a streaming watch answer: the server's keepalive interval in milliseconds.
    static let keepaliveHeader = "X-Registry-Keepalive-Ms"

    /// `GET /v1/nodes`.
    struct ListResponse: Codable, Sendable {
        var revision: Int64
        var records: [NodeRecord]
    }

    /// `GET /v1/watch`: the events after the requested revision (possibly none after a timeout) and the
    /// registry's current revision.
    struct WatchResponse: Codable, Sendable {
        var revision: Int64
        var events: [Event]
    }

    struct Event: Codable, Sendable {
        enum Kind: String, Codable, Sendable {
            case put
            case delete
        }

        var type: Kind
        var revision: Int64
        var name: String
        /// Present for `put`.
        var record: NodeRecord?

        init(_ event: RegistryEvent) {
            switch event {
            case .put(let record, let revision):
                self.type = .put
                self.revision = revision
                self.name = record.name
                self.record = record
            case .deleted(let name, let revision):
                self.type = .delete
                self.revision = revision
                self.name = name
                self.record = nil
            case .resyncRequired:
                preconditionFailure("resync is an HTTP 410 answer, not an event")
            }
        }

        var registryEvent: RegistryEvent? {
            switch type {
            case .put: record.map { .put($0, revision: revision) }
            case .delete: .deleted(name: name, revision: revision)
            }
        }
    }

    /// One line of a streaming watch (`GET /v1/watch?after=R&stream=1`): either a batch of events
    /// (`revision`, `events`; no events = keepalive), or, as the last line, an error body (`error`, and
    /// `compactedRevision` when the client must list and watch again).
    struct StreamLine: Decodable, Sendable {
        var revision: Int64?
        var events: [Event]?
        var error: String?
        var compactedRevision: Int64?
    }

    /// Every 4xx/5xx answer. `compactedRevision` is set on 410 (resync required).
    struct ErrorBody: Codable, Sendable {
        var error: String
        var compactedRevision: Int64?
    }

    /// `POST /v1/nodes/NAME/revoke` (admin): credentials of `generation` or later are accepted for NAME now.
    struct RevokeResponse: Codable, Sendable {
        var name: String
        var generation: Int64
    }

    /// `POST /v1/nodes/NAME/revoke-certificate` (admin): the client certificate whose signed part (TBSCertificate) has this SHA-256
    /// (64 lowercase hex digits) is refused from now on; the answer repeats it.
    struct RevokeCertificate: Codable, Sendable {
        var sha256: String
    }
}
