import IPsecPrimitives

/// Where the local node is in a rotation. Phases only move forward: xfrm → advertise → bpf → reclaim → idle.
public enum RotationPhase: String, Sendable, Codable, CaseIterable {
    /// No rotation under way: one key in use with every peer.
    case idle
    /// Installing the new key's IN and OUT SAs and OUT policies for every peer.
    case xfrm
    /// Publishing `spi` = new key ID.
    case advertise
    /// Switching the BPF encrypt map's local key; publishing `encryptSpi`.
    case bpf
    /// Waiting for peers to acknowledge before removing old keys.
    case reclaim

    /// Numeric form for a gauge.
    public var ordinal: Int { RotationPhase.allCases.firstIndex(of: self)! }
}
