import IPsecPrimitives
import Keys
import XFRM

/// One peer's XFRM objects, grouped by what they depend on: one group per live key and direction (the key's SA,
/// or its kept identity, and for OUT the policies that use it) and one for the admission policies (IN and FWD).
///
/// Groups are immutable and shared: the desired model and the installed model of a peer hold the same group
/// instances for the objects they agree on. A rotation step adds or drops whole groups, so patching a model copies
/// a few references instead of every object, and comparing the installed model with the desired one skips every
/// group both hold (`XFRMDiff.init(installed:desired:)`). A handful of groups per peer: plain arrays, searched
/// linearly, instead of hash tables (at 5,000 peers the agent keeps two models of every peer's objects;
/// docs/benchmarks.md, "Memory").
public struct PeerObjects: Sendable, Equatable {
    /// The objects of one key in one direction, or the admission policies.
    final class Group: Sendable {
        enum Tag: Equatable {
            case outbound(KeyID)
            case inbound(KeyID)
            case admission
        }

        let tag: Tag
        let states: [XFRMState]
        let keptStates: [XFRMStateID]
        let policies: [XFRMPolicy]

        init(tag: Tag, states: [XFRMState], keptStates: [XFRMStateID], policies: [XFRMPolicy]) {
            self.tag = tag
            self.states = states
            self.keptStates = keptStates
            self.policies = policies
        }

        func sameObjects(as other: Group) -> Bool {
            self === other
                || states == other.states && keptStates == other.keptStates && policies == other.policies
        }
    }

    private(set) var groups: [Group]

    public init() {
        groups = []
    }

    /// One peer's objects (what `DesiredStateCache` keeps).
    init(local: LocalNode, peer: Peer, live: PeerKeys, keys: [KeyID: IPsecKey], algorithm: DesiredState.AlgorithmSource) {
        self.init()
        guard peer.nodeID != 0, peer.underlay.family == local.underlay.family, !live.isEmpty else { return }
        groups.reserveCapacity(live.outbound.count + live.inbound.count + 1)
        for key in live.outbound { addOutbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm) }
        for key in live.inbound { addInbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm) }
        if !live.inbound.isEmpty { addAdmission(local: local, peer: peer) }
    }

    /// Brings objects built for `old` live keys to what `init` gives for `new`, for the same peer, local node and
    /// key material: drops the groups of keys no longer live, builds only those of keys newly live. The groups
    /// kept are shared with the model patched from. A rotation step adds or removes one key per peer.
    /// Order may differ from a rebuild's; the set of objects is the same.
    mutating func patch(from old: PeerKeys, to new: PeerKeys, local: LocalNode, peer: Peer, keys: [KeyID: IPsecKey],
                        algorithm: DesiredState.AlgorithmSource) {
        if !old.outbound.isSubset(of: new.outbound) || !old.inbound.isSubset(of: new.inbound) {
            groups.removeAll { group in
                switch group.tag {
                case .outbound(let key): !new.outbound.contains(key)
                case .inbound(let key): !new.inbound.contains(key)
                case .admission: new.inbound.isEmpty  // admission goes with the last IN SA
                }
            }
        }
        for key in new.outbound where !old.outbound.contains(key) {
            addOutbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        }
        for key in new.inbound where !old.inbound.contains(key) {
            addInbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        }
        if old.inbound.isEmpty, !new.inbound.isEmpty { addAdmission(local: local, peer: peer) }
    }

    private mutating func addOutbound(_ key: KeyID, local: LocalNode, peer: Peer, keys: [KeyID: IPsecKey],
                                      algorithm: DesiredState.AlgorithmSource) {
        var builder = GroupBuilder()
        DesiredState.addOutbound(into: &builder, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        groups.append(builder.group(.outbound(key)))
    }

    private mutating func addInbound(_ key: KeyID, local: LocalNode, peer: Peer, keys: [KeyID: IPsecKey],
                                     algorithm: DesiredState.AlgorithmSource) {
        var builder = GroupBuilder()
        DesiredState.addInbound(into: &builder, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        groups.append(builder.group(.inbound(key)))
    }

    private mutating func addAdmission(local: LocalNode, peer: Peer) {
        var builder = GroupBuilder()
        DesiredState.addAdmission(into: &builder, local: local, peer: peer)
        groups.append(builder.group(.admission))
    }

    public var isEmpty: Bool { groups.allSatisfy { $0.states.isEmpty && $0.keptStates.isEmpty && $0.policies.isEmpty } }

    /// Every SA, kept identity and policy, in group order (copies: for tests and status, not for hot paths).
    public var states: [XFRMState] { groups.flatMap(\.states) }
    public var keptStates: [XFRMStateID] { groups.flatMap(\.keptStates) }
    public var policies: [XFRMPolicy] { groups.flatMap(\.policies) }

    public var stateCount: Int { groups.reduce(0) { $0 + $1.states.count } }
    public var policyCount: Int { groups.reduce(0) { $0 + $1.policies.count } }

    public func state(_ id: XFRMStateID) -> XFRMState? {
        for group in groups {
            if let state = group.states.first(where: { $0.hasID(id) }) { return state }
        }
        return nil
    }

    public func policy(_ id: XFRMPolicyID) -> XFRMPolicy? {
        for group in groups {
            if let policy = group.policies.first(where: { $0.hasID(id) }) { return policy }
        }
        return nil
    }

    func keeps(_ id: XFRMStateID) -> Bool {
        groups.contains { $0.keptStates.contains(id) }
    }

    public func forEachState(_ body: (XFRMState) -> Void) {
        for group in groups { group.states.forEach(body) }
    }

    public func forEachPolicy(_ body: (XFRMPolicy) -> Void) {
        for group in groups { group.policies.forEach(body) }
    }

    /// The same objects in the same order (shared groups compare by reference).
    public static func == (a: PeerObjects, b: PeerObjects) -> Bool {
        if a.groups.count == b.groups.count, zip(a.groups, b.groups).allSatisfy({ $0 === $1 }) { return true }
        return a.states == b.states && a.keptStates == b.keptStates && a.policies == b.policies
    }
}

/// Collects one group's objects; a later object with the identity of an earlier one replaces it (pod CIDRs may
/// repeat in a record).
private struct GroupBuilder: DesiredObjectSink {
    var states: [XFRMState] = []
    var keptStates: [XFRMStateID] = []
    var policies: [XFRMPolicy] = []

    mutating func add(_ state: XFRMState) {
        let id = state.id
        if let i = states.firstIndex(where: { $0.hasID(id) }) { states[i] = state } else { states.append(state) }
    }

    mutating func keep(_ id: XFRMStateID) {
        if !keptStates.contains(id) { keptStates.append(id) }
    }

    mutating func add(_ policy: XFRMPolicy) {
        let id = policy.id
        if let i = policies.firstIndex(where: { $0.hasID(id) }) { policies[i] = policy } else { policies.append(policy) }
    }

    func group(_ tag: PeerObjects.Group.Tag) -> PeerObjects.Group {
        PeerObjects.Group(tag: tag, states: states, keptStates: keptStates, policies: policies)
    }
}

extension PeerObjects: DesiredObjects {
    public func desiredState(matching state: XFRMState) -> XFRMState? { self.state(state.id) }
    public func keeps(_ state: XFRMState) -> Bool { keeps(state.id) }
    public func desiredPolicy(matching policy: XFRMPolicy) -> XFRMPolicy? { self.policy(policy.id) }
}
