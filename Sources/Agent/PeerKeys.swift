import IPsecPrimitives

/// The key generations that are live between this node and one peer, per direction.
public struct PeerKeys: Hashable, Sendable {
    /// Keys the peer may still send to us with: an IN SA exists for each.
    public var inbound: Set<KeyID>
    /// Keys we may still send to the peer with: an OUT SA and OUT policies exist for each.
    public var outbound: Set<KeyID>

    public init(inbound: Set<KeyID> = [], outbound: Set<KeyID> = []) {
        self.inbound = inbound
        self.outbound = outbound
    }

    public var all: Set<KeyID> { inbound.union(outbound) }
    public var isEmpty: Bool { inbound.isEmpty && outbound.isEmpty }
}
