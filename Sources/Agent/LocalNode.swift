import IPsecPrimitives

/// This node's identity as the datapath needs it.
public struct LocalNode: Hashable, Sendable {
    public var name: String
    /// Assigned by the registry (0 until then).
    public var nodeID: UInt16
    /// Underlay address the ESP tunnels use (IPv4 preferred when both exist).
    public var underlay: IPAddress
    public var podCIDRs: [IPPrefix]
    public var bootID: String

    public init(name: String, nodeID: UInt16, underlay: IPAddress, podCIDRs: [IPPrefix], bootID: String) {
        self.name = name
        self.nodeID = nodeID
        self.underlay = underlay
        self.podCIDRs = podCIDRs
        self.bootID = bootID
    }
}

/// A peer as the datapath needs it, taken from its registry record.
public struct Peer: Hashable, Sendable {
    public var name: String
    public var nodeID: UInt16
    public var underlay: IPAddress
    public var podCIDRs: [IPPrefix]
    public var bootID: String
    /// "I can receive key N".
    public var spi: KeyID?
    /// "I send with N where the peer allows".
    public var encryptSpi: KeyID?
    public var keyFingerprint: String
    /// Registry revision the peer's datapath reflects.
    public var xfrmRevision: Int64

    public init(
        name: String, nodeID: UInt16, underlay: IPAddress, podCIDRs: [IPPrefix], bootID: String,
        spi: KeyID? = nil, encryptSpi: KeyID? = nil, keyFingerprint: String = "", xfrmRevision: Int64 = 0
    ) {
        self.name = name
        self.nodeID = nodeID
        self.underlay = underlay
        self.podCIDRs = podCIDRs
        self.bootID = bootID
        self.spi = spi
        self.encryptSpi = encryptSpi
        self.keyFingerprint = keyFingerprint
        self.xfrmRevision = xfrmRevision
    }

    /// True when `other` is this peer with only its acknowledgement (`xfrmRevision`) moved: nothing to program
    /// and nothing this node must acknowledge in turn.
    func differsOnlyInAcknowledgement(from other: Peer) -> Bool {
        var same = other
        same.xfrmRevision = xfrmRevision
        return same == self
    }
}
