import IPsecPrimitives

/// What one node publishes about itself in the node registry.
///
/// `spi` and `encryptSpi` are the two halves of the rotation handshake:
/// - `spi`: "I can receive key N" — inbound SAs for key N are installed for every peer this node knows.
/// - `encryptSpi`: "I now send with N where the peer allows" — the key ID in this node's BPF encrypt map.
public struct NodeRecord: Hashable, Sendable, Codable {
    /// Unique node name (the registry key).
    public var name: String
    /// 16-bit node ID assigned by the registry; unique among live nodes. 0 = not yet assigned.
    public var nodeID: UInt16
    public var ipv4: IPAddress?
    public var ipv6: IPAddress?
    public var podCIDRs: [IPPrefix]
    /// `/proc/sys/kernel/random/boot_id`, bound into the per-pair key derivation.
    public var bootID: String
    /// Key ID whose inbound SAs are installed for every known peer (nil: none yet).
    public var spi: KeyID?
    /// Key ID the node's BPF encrypt map uses as local key (nil: not encrypting yet).
    public var encryptSpi: KeyID?
    /// One-way fingerprint of the key behind `spi` (never the key).
    public var keyFingerprint: String
    /// The registry revision the node's XFRM state reflects.
    public var xfrmRevision: Int64
    /// Registry-assigned time of the last heartbeat, milliseconds since the epoch (0 if unknown).
    public var heartbeatMillis: Int64
    /// Set by the writer, larger at every write (wall-clock milliseconds, see `WriteSequence`): the registry
    /// refuses a write whose sequence is not larger than the stored one, so a replayed request is refused.
    public var sequence: Int64
    /// The registry revision at which this record was last stored; set by the registry, ignored on publish.
    /// A peer whose `xfrmRevision` is at least this value has applied this record to its datapath.
    public var revision: Int64

    public init(
        name: String, nodeID: UInt16 = 0, ipv4: IPAddress? = nil, ipv6: IPAddress? = nil, podCIDRs: [IPPrefix] = [],
        bootID: String = "", spi: KeyID? = nil, encryptSpi: KeyID? = nil, keyFingerprint: String = "",
        xfrmRevision: Int64 = 0, heartbeatMillis: Int64 = 0, sequence: Int64 = 0, revision: Int64 = 0
    ) {
        self.name = name
        self.nodeID = nodeID
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.podCIDRs = podCIDRs
        self.bootID = bootID
        self.spi = spi
        self.encryptSpi = encryptSpi
        self.keyFingerprint = keyFingerprint
        self.xfrmRevision = xfrmRevision
        self.heartbeatMillis = heartbeatMillis
        self.sequence = sequence
        self.revision = revision
    }

    private enum CodingKeys: String, CodingKey {
        case name, nodeID, ipv4, ipv6, podCIDRs, bootID, spi, encryptSpi, keyFingerprint, xfrmRevision,
            heartbeatMillis, sequence, revision
    }

    /// Decodes a record: the fields a node must publish are required; those the registry assigns (`nodeID`,
    /// `heartbeatMillis`, `revision`) and the optional ones may be absent. A missing `sequence` reads as 0, which
    /// the registry accepts only for a node it has no record of.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        nodeID = try c.decodeIfPresent(UInt16.self, forKey: .nodeID) ?? 0
        ipv4 = try c.decodeIfPresent(IPAddress.self, forKey: .ipv4)
        ipv6 = try c.decodeIfPresent(IPAddress.self, forKey: .ipv6)
        podCIDRs = try c.decode([IPPrefix].self, forKey: .podCIDRs)
        bootID = try c.decode(String.self, forKey: .bootID)
        spi = try c.decodeIfPresent(KeyID.self, forKey: .spi)
        encryptSpi = try c.decodeIfPresent(KeyID.self, forKey: .encryptSpi)
        keyFingerprint = try c.decode(String.self, forKey: .keyFingerprint)
        xfrmRevision = try c.decode(Int64.self, forKey: .xfrmRevision)
        heartbeatMillis = try c.decodeIfPresent(Int64.self, forKey: .heartbeatMillis) ?? 0
        sequence = try c.decodeIfPresent(Int64.self, forKey: .sequence) ?? 0
        revision = try c.decodeIfPresent(Int64.self, forKey: .revision) ?? 0
    }
}
