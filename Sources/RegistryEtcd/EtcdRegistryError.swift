import Registry

/// Errors of the etcd registry backend. Descriptions name the endpoint, the gateway path or the
/// field at fault; they never carry record payloads or credentials.
public enum EtcdRegistryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The configuration is unusable (`field` names the setting).
    case invalidConfiguration(field: String, reason: String)
    /// The node name cannot be stored as an etcd key.
    case invalidNodeName(String, reason: String)
    /// etcd answered with `{"error","message","code"}` (gRPC status code).
    case server(endpoint: String, path: String, code: Int, message: String)
    /// etcd answered with an HTTP status and a body that is not a gateway error.
    case httpStatus(endpoint: String, path: String, status: Int)
    /// etcd answered something the gateway protocol does not allow.
    case malformedResponse(endpoint: String, path: String, reason: String)
    /// No endpoint could be reached; one `endpoint: reason` entry per endpoint tried, in order.
    case unreachable(path: String, failures: [String])
    /// `heartbeat` for a node this registry never published.
    case notPublished(name: String)
    /// Every node ID of the configured range is held by a live node.
    case nodeIDsExhausted(range: ClosedRange<UInt16>)
    /// Node-ID allocation kept losing races; gave up after `attempts` transactions.
    case allocationContention(name: String, attempts: Int)
    /// etcd canceled the watch for a reason other than compaction.
    case watchCanceled(endpoint: String, reason: String)
    /// The watch stream ended without being canceled (connection closed).
    case watchConnectionLost(endpoint: String)
    /// The record was refused before anything was written: it claims another node's addresses or too much, or
    /// its key IDs go back (the same rules the embedded registry enforces).
    case refused(RegistryError)

    /// gRPC code 14 (UNAVAILABLE): the member cannot serve now (no leader, stopping); another may.
    var isUnavailable: Bool {
        if case .server(_, _, let code, _) = self { return code == 14 }
        return false
    }

    /// gRPC code 5 with etcd's message: the lease expired or was revoked.
    var isLeaseNotFound: Bool {
        if case .server(_, _, let code, let message) = self {
            return code == 5 && message.contains("lease not found")
        }
        return false
    }

    public var description: String {
        switch self {
        case .invalidConfiguration(let field, let reason):
            "etcd registry configuration: \(field): \(reason)"
        case .invalidNodeName(let name, let reason):
            "etcd registry: node name \"\(name.prefix(80))\" is invalid: \(reason)"
        case .server(let endpoint, let path, let code, let message):
            "etcd \(endpoint)\(path) failed: \(message) (code \(code))"
        case .httpStatus(let endpoint, let path, let status):
            "etcd \(endpoint)\(path) answered HTTP \(status) without a gateway error body"
        case .malformedResponse(let endpoint, let path, let reason):
            "etcd \(endpoint)\(path) answered a malformed response: \(reason)"
        case .unreachable(let path, let failures):
            "etcd \(path): no endpoint reachable (\(failures.joined(separator: "; ")))"
        case .notPublished(let name):
            "etcd registry: heartbeat for \"\(name.prefix(80))\", which this registry never published"
        case .nodeIDsExhausted(let range):
            "etcd registry: every node ID in \(range.lowerBound)...\(range.upperBound) is held by a live node"
        case .allocationContention(let name, let attempts):
            "etcd registry: node ID allocation for \"\(name.prefix(80))\" lost \(attempts) races in a row"
        case .watchCanceled(let endpoint, let reason):
            "etcd \(endpoint)/v3/watch canceled: \(reason)"
        case .watchConnectionLost(let endpoint):
            "etcd \(endpoint)/v3/watch: connection closed"
        case .refused(let error):
            "etcd registry refused the record: \(error)"
        }
    }
}
