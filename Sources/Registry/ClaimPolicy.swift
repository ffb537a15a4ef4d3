import IPsecPrimitives

/// What a node record may claim: each pod CIDR and each underlay address belongs to one node.
///
/// A record that claims a default route, a prefix broader than the minimum, another live node's pod CIDRs
/// (overlapping ones included) or underlay address, or a pod CIDR covering another node's underlay, would make
/// its peers program policies that capture traffic that is not that node's. The embedded registry refuses
/// such a record (HTTP 409 / 422), the etcd backend refuses to write it, and every agent refuses such a peer
/// record on its own, since a registry written by someone else must not be trusted either.
public struct ClaimPolicy: Sendable, Hashable {
    /// The shortest IPv4 pod prefix a record may claim (default /16).
    public var minimumIPv4PrefixLength: Int
    /// The shortest IPv6 pod prefix a record may claim (default /48).
    public var minimumIPv6PrefixLength: Int

    public init(minimumIPv4PrefixLength: Int = 16, minimumIPv6PrefixLength: Int = 48) {
        self.minimumIPv4PrefixLength = minimumIPv4PrefixLength
        self.minimumIPv6PrefixLength = minimumIPv6PrefixLength
    }

    /// The first thing `record` claims that it may not, given the other live records (`record`'s own name is
    /// skipped among them); nil when every claim is its own.
    public func conflict(of record: NodeRecord, among others: some Sequence<NodeRecord>) -> ClaimConflict? {
        if let broad = tooBroad(record) { return broad }
        for other in others where other.name != record.name {
            if let conflict = conflict(record, against: other.name, holding: other) { return conflict }
        }
        return nil
    }

    /// The first pod CIDR of `record` broader than the minimum (a default route included).
    public func tooBroad(_ record: NodeRecord) -> ClaimConflict? {
        for prefix in record.podCIDRs {
            let minimum = prefix.family == .v4 ? minimumIPv4PrefixLength : minimumIPv6PrefixLength
            guard prefix.length < minimum else { continue }
            let what = prefix.length == 0 ? "a default route" : "broader than /\(minimum)"
            return ClaimConflict(
                reason: .prefixTooShort, otherNode: nil,
                message: "podCIDRs: \(prefix) is \(what); a pod CIDR must be /\(minimum) or longer")
        }
        return nil
    }

    /// What `record` claims of `owner`'s: overlapping pod CIDRs, the same underlay address, or a pod CIDR that
    /// covers the owner's underlay address (or an underlay inside the owner's pod CIDRs).
    public func conflict(_ record: NodeRecord, against owner: String, holding held: NodeRecord) -> ClaimConflict? {
        conflict(record, against: owner, underlays: (held.ipv4, held.ipv6), podCIDRs: held.podCIDRs)
    }

    /// The same, with the owner's claims given directly (an agent's own node, or a peer it accepted).
    public func conflict(
        _ record: NodeRecord, against owner: String, underlays: (IPAddress?, IPAddress?),
        podCIDRs: [IPPrefix]
    ) -> ClaimConflict? {
        for prefix in record.podCIDRs {
            if let theirs = podCIDRs.first(where: { $0.overlaps(prefix) }) {
                return ClaimConflict(
                    reason: .podCIDROverlap, otherNode: owner,
                    message: "podCIDRs: \(prefix) overlaps \(theirs), which belongs to node \(owner)")
            }
            for address in [underlays.0, underlays.1] {
                guard let address, prefix.contains(address) else { continue }
                return ClaimConflict(
                    reason: .underlayTaken, otherNode: owner,
                    message: "podCIDRs: \(prefix) contains \(address), the underlay address of node \(owner)")
            }
        }
        for (field, address) in [("ipv4", record.ipv4), ("ipv6", record.ipv6)] {
            guard let address else { continue }
            if address == underlays.0 || address == underlays.1 {
                return ClaimConflict(
                    reason: .underlayTaken, otherNode: owner,
                    message: "\(field): \(address) is the underlay address of node \(owner)")
            }
            if let theirs = podCIDRs.first(where: { $0.contains(address) }) {
                return ClaimConflict(
                    reason: .underlayTaken, otherNode: owner,
                    message: "\(field): \(address) is inside \(theirs), a pod CIDR of node \(owner)")
            }
        }
        return nil
    }
}

/// Why a record's claims were refused; `message` names the field, the prefix or address and the other node.
public struct ClaimConflict: Error, Sendable, Hashable, CustomStringConvertible {
    /// The label of `ipsec_peer_records_rejected_total{reason}` for each kind of refused claim.
    public enum Reason: String, Sendable, Hashable {
        case prefixTooShort = "prefix_too_short"
        case podCIDROverlap = "pod_cidr_overlap"
        case underlayTaken = "underlay_taken"
    }

    public var reason: Reason
    /// The node whose claim this one collides with (nil for a prefix that is too broad).
    public var otherNode: String?
    public var message: String

    public init(reason: Reason, otherNode: String?, message: String) {
        self.reason = reason
        self.otherNode = otherNode
        self.message = message
    }

    public var description: String { message }
}
