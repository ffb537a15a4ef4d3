import IPsecPrimitives

/// The key generations that are live between this node and one peer, per direction.
public struct PeerKeys: Hashable, Sendable {
    /// Keys the peer may still send to us with: an IN SA exists for each.
    public var inbound: KeyIDSet
    /// Keys we may still send to the peer with: an OUT SA and OUT policies exist for each.
    public var outbound: KeyIDSet

    public init(inbound: KeyIDSet = [], outbound: KeyIDSet = []) {
        self.inbound = inbound
        self.outbound = outbound
    }

    public var all: KeyIDSet { inbound.union(outbound) }
    public var isEmpty: Bool { inbound.isEmpty && outbound.isEmpty }
}
