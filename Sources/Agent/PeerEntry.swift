import Datapath

/// What the controller holds for one peer: its registry view, the key generations live with it, what is
/// installed for it and what the BPF map says for it. One table entry per peer, so a pass over the peers does one
/// hashed look-up per peer (or none, walking the table) instead of one per fact.
struct PeerEntry: Sendable {
    var peer: Peer
    /// The key generations live with the peer, per direction.
    var keys: PeerKeys
    /// The peer's objects as last confirmed in the kernel; nil until first programmed.
    var installed: PeerObjects?
    /// The peer's BPF encrypt-map entry as last written; nil before the first.
    var encryptEntry: PeerEncryptEntry?
    /// When the peer left the registry; its SAs stay for the removal grace period.
    var departedAt: Duration?

    init(peer: Peer, keys: PeerKeys) {
        self.peer = peer
        self.keys = keys
    }
}
