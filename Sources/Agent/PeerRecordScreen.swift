import IPsecPrimitives
import Registry

/// Peer-record intake: refuses a peer record whose claims are not its own before anything is programmed for it.
///
/// The registry refuses such records too, but an agent does not trust it for this: a compromised registry, or
/// an etcd written by someone else, must not make it program a policy that covers its own pods, another peer's
/// pods or underlay, or the whole address space. A refused record leaves the peer as it was (its last good
/// record, or absent); each refused version is reported once.
struct PeerRecordScreen {
    let policy: ClaimPolicy
    /// The record revision last reported as refused, per peer (deliveries repeat the whole list).
    private var reported: [String: Int64] = [:]

    init(policy: ClaimPolicy) { self.policy = policy }

    /// What is wrong with `record`'s claims, judged against this node and the peers accepted so far.
    func conflict(of record: NodeRecord, local: LocalNode, peers: PeerTable) -> ClaimConflict? {
        if let broad = policy.tooBroad(record) { return broad }
        let own: (IPAddress?, IPAddress?) = local.underlay.family == .v4 ? (local.underlay, nil) : (nil, local.underlay)
        if let mine = policy.conflict(record, against: local.name, underlays: own, podCIDRs: local.podCIDRs) {
            return mine
        }
        for entry in peers.entries where entry.peer.name != record.name {
            let theirs: (IPAddress?, IPAddress?) =
                entry.peer.underlay.family == .v4 ? (entry.peer.underlay, nil) : (nil, entry.peer.underlay)
            if let conflict = policy.conflict(
                record, against: entry.peer.name, underlays: theirs, podCIDRs: entry.peer.podCIDRs)
            {
                return conflict
            }
        }
        return nil
    }

    /// True the first time this version of the peer's record is refused (to log and count it once).
    mutating func firstReport(of record: NodeRecord) -> Bool {
        guard reported[record.name] != record.revision else { return false }
        reported[record.name] = record.revision
        return true
    }

    /// Forgets a peer's refusal once a record of it is accepted.
    mutating func accepted(_ name: String) {
        if !reported.isEmpty { reported[name] = nil }
    }
}
