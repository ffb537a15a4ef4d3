import Logging
import NIOSSL
import Registry

/// Settings of an ``EtcdRegistry``.
public struct EtcdConfiguration: Sendable {
    /// Gateway base URLs such as `http://10.0.0.1:2379`, tried in turn when one cannot be reached.
    public var endpoints: [String]
    /// Key prefix of every key the registry writes; must end with `/`.
    public var prefix: String
    /// Lifetime of a node's lease: its record disappears this long after its last heartbeat.
    public var leaseTTL: Duration
    /// Deadline for one unary gateway call on one endpoint (connect, head and body); past it the
    /// next endpoint is tried. Also bounds opening a watch (until the response head).
    public var requestTimeout: Duration
    /// Node IDs handed out (0 means "unassigned" and is never handed out).
    public var nodeIDs: ClosedRange<UInt16>
    /// Largest response body accepted from a unary call.
    public var maxResponseBytes: Int
    /// What a record may claim; a publish claiming more is refused before anything is written.
    public var claims: ClaimPolicy = ClaimPolicy()
    /// TLS for `https://` endpoints (`RegistryTLS.client`: etcd's CA, and a client certificate when etcd runs
    /// with --client-cert-auth); nil uses the system's trust roots.
    public var tls: TLSConfiguration?
    public var logger: Logger

    public init(
        endpoints: [String],
        prefix: String = "/ipsec-agent/",
        leaseTTL: Duration = .seconds(30),
        requestTimeout: Duration = .seconds(5),
        nodeIDs: ClosedRange<UInt16> = 1...UInt16.max,
        maxResponseBytes: Int = 64 << 20,
        logger: Logger = Logger(label: "ipsec-agent.registry.etcd")
    ) {
        self.endpoints = endpoints
        self.prefix = prefix
        self.leaseTTL = leaseTTL
        self.requestTimeout = requestTimeout
        self.nodeIDs = nodeIDs
        self.maxResponseBytes = maxResponseBytes
        self.logger = logger
    }

    /// Lease TTL in whole seconds as etcd takes it (rounded up, at least 1).
    var leaseTTLSeconds: Int64 {
        let (seconds, attoseconds) = leaseTTL.components
        return max(1, seconds + (attoseconds > 0 ? 1 : 0))
    }

    /// Throws ``EtcdRegistryError/invalidConfiguration(field:reason:)`` naming the first bad field.
    func validate() throws(EtcdRegistryError) {
        if endpoints.isEmpty {
            throw .invalidConfiguration(field: "endpoints", reason: "at least one endpoint is required")
        }
        for (index, endpoint) in endpoints.enumerated() {
            guard !endpoint.contains("@") else {
                // Credentials in URLs would end up in error messages and logs.
                throw .invalidConfiguration(
                    field: "endpoints[\(index)]", reason: "credentials in the URL are not supported")
            }
            guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
                throw .invalidConfiguration(
                    field: "endpoints[\(index)]",
                    reason: "\"\(endpoint.prefix(120))\" must start with http:// or https://")
            }
            let host = endpoint.drop { $0 != "/" }.dropFirst(2)
            guard !host.isEmpty, !host.hasPrefix("/") else {
                throw .invalidConfiguration(
                    field: "endpoints[\(index)]", reason: "\"\(endpoint.prefix(120))\" has no host")
            }
        }
        guard prefix.hasPrefix("/"), prefix.hasSuffix("/"), prefix.count >= 2 else {
            throw .invalidConfiguration(
                field: "prefix", reason: "\"\(prefix.prefix(120))\" must start and end with '/' (e.g. /ipsec-agent/)")
        }
        guard leaseTTL >= .seconds(1) else {
            throw .invalidConfiguration(field: "leaseTTL", reason: "must be at least 1 s, got \(leaseTTL)")
        }
        guard requestTimeout > .zero else {
            throw .invalidConfiguration(field: "requestTimeout", reason: "must be positive, got \(requestTimeout)")
        }
        guard nodeIDs.lowerBound >= 1 else {
            throw .invalidConfiguration(
                field: "nodeIDs", reason: "node ID 0 means unassigned; the range must start at 1 or above")
        }
        guard maxResponseBytes > 0 else {
            throw .invalidConfiguration(field: "maxResponseBytes", reason: "must be positive")
        }
    }
}
