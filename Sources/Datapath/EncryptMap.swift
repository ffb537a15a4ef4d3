import IPsecPrimitives

/// What the BPF peer map holds for one peer pod CIDR.
public struct PeerEncryptEntry: Hashable, Sendable {
    /// The peer node's 16-bit ID.
    public var nodeID: UInt16
    /// The key ID the peer advertised (its `spi`: it can receive this key).
    public var peerSPI: KeyID
    public init(nodeID: UInt16, peerSPI: KeyID) {
        self.nodeID = nodeID
        self.peerSPI = peerSPI
    }
}

/// The datapath's key-selection state: the local key ID and one entry per peer pod CIDR.
/// Implemented over pinned BPF maps by `BPFDatapath`; by an in-memory fake in tests.
public protocol EncryptMap: Sendable {
    /// Sets the local key ID (`encrypt_state`); nil writes 0, "encryption not ready".
    func setLocalSPI(_ spi: KeyID?) throws
    func localSPI() throws -> KeyID?
    /// Adds or replaces the entry for exactly `prefix` (the datapath matches the longest prefix).
    /// A family holding `BPFDatapath.maxPeerPrefixes` entries rejects new prefixes (ENOSPC).
    func upsertPeer(_ prefix: IPPrefix, _ entry: PeerEncryptEntry) throws
    /// Removes the entry for exactly `prefix`; succeeds if there was none.
    func deletePeer(_ prefix: IPPrefix) throws
    /// Every entry of both families.
    func peers() throws -> [IPPrefix: PeerEncryptEntry]
}

/// The packet mark the datapath sets for egress to a peer: `0xE00 | spi << 12 | nodeID << 16`.
public enum EncryptMark {
    public static let encryptBits: UInt32 = 0xE00
    public static let mask: UInt32 = 0xFFFF_FF00

    public static func value(spi: KeyID, nodeID: UInt16) -> UInt32 {
        encryptBits | UInt32(spi.rawValue) << 12 | UInt32(nodeID) << 16
    }

    /// The key ID egress uses towards a peer: the older of the two, with wrap-around.
    public static func egressSPI(local: KeyID, peer: KeyID) -> KeyID { KeyID.older(local, peer) }

    /// The mark for a peer while no local key is ready: SPI 0, `0xE00 | nodeID << 16`. It matches the
    /// default-drop OUT policy (mark 0xE00/0xF00, action block), so nothing leaves in plaintext.
    public static func notReadyValue(nodeID: UInt16) -> UInt32 {
        encryptBits | UInt32(nodeID) << 16
    }

    /// The mark the datapath sets for a packet to `peer` given the local key ID (nil: not ready).
    public static func value(local: KeyID?, peer: PeerEncryptEntry) -> UInt32 {
        guard let local else { return notReadyValue(nodeID: peer.nodeID) }
        return value(spi: egressSPI(local: local, peer: peer.peerSPI), nodeID: peer.nodeID)
    }
}
