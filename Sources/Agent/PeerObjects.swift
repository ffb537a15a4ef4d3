import IPsecPrimitives
import Keys
import XFRM

/// One peer's XFRM objects: one group per live key and direction (the key's SA, or its kept identity, and for OUT
/// the policies that use it), and the admission policies (IN and FWD, present while any IN SA is).
///
/// Groups are immutable and shared: the desired model and the installed model of a peer hold the same group
/// instances for the objects they agree on (and the same admission array). A rotation step adds or drops whole
/// groups, so patching a model copies a few references instead of every object, and comparing the installed model
/// with the desired one skips every group both hold (`XFRMDiff.init(installed:desired:)`). A handful of groups per
/// peer: plain arrays, searched linearly, instead of hash tables (at 5,000 peers the agent keeps two models of every
/// peer's objects; docs/benchmarks.md, "Memory").
public struct PeerObjects: Sendable, Equatable {
    /// The objects of one key in one direction.
    final class Group: Sendable {
        enum Tag: Equatable {
            case outbound(KeyID)
            case inbound(KeyID)
        }

        /// The group's SA: installed from key material held, or kept as the kernel has it (material gone).
        enum SA: Sendable {
            case none
            case state(XFRMState)
            case kept(XFRMStateID)
        }

        let tag: Tag
        let sa: SA
        let policies: [XFRMPolicy]

        init(tag: Tag, sa: SA, policies: [XFRMPolicy]) {
            self.tag = tag
            self.sa = sa
            self.policies = policies
        }

        var state: XFRMState? {
            if case .state(let state) = sa { state } else { nil }
        }

        var keptState: XFRMStateID? {
            if case .kept(let id) = sa { id } else { nil }
        }

        var stateCount: Int {
            if case .state = sa { 1 } else { 0 }
        }
    }

    private(set) var groups: [Group]
    /// IN and FWD policies: traffic from the peer's pods to ours arrives through the agent's SAs.
    private(set) var admission: [XFRMPolicy]

    public init() {
        groups = []
        admission = []
    }

    /// One peer's objects (what `DesiredStateCache` keeps).
    init(local: LocalNode, peer: Peer, live: PeerKeys, keys: [KeyID: IPsecKey], algorithm: DesiredState.AlgorithmSource)
    {
        self.init()
        guard DesiredState.hasObjects(local: local, peer: peer, live: live) else { return }
        groups.reserveCapacity(live.outbound.count + live.inbound.count)
        for key in live.outbound { addOutbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm) }
        for key in live.inbound { addInbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm) }
        if !live.inbound.isEmpty { addAdmission(local: local, peer: peer) }
    }

    /// Brings objects built for `old` live keys to what `init` gives for `new`, for the same peer, local node and
    /// key material: drops the groups of keys no longer live, builds only those of keys newly live. The groups
    /// kept are shared with the model patched from. A rotation step adds or removes one key per peer.
    /// Order may differ from a rebuild's; the set of objects is the same.
    mutating func patch(
        from old: PeerKeys, to new: PeerKeys, local: LocalNode, peer: Peer, keys: [KeyID: IPsecKey],
        algorithm: DesiredState.AlgorithmSource
    ) {
        let addedOut = new.outbound.subtracting(old.outbound), addedIn = new.inbound.subtracting(old.inbound)
        if !old.outbound.isSubset(of: new.outbound) || !old.inbound.isSubset(of: new.inbound) {
            groups.removeAll { group in
                switch group.tag {
                case .outbound(let key): !new.outbound.contains(key)
                case .inbound(let key): !new.inbound.contains(key)
                }
            }
            if new.inbound.isEmpty { admission = [] }  // admission goes with the last IN SA
        }
        groups.reserveCapacity(groups.count + addedOut.count + addedIn.count)  // one copy of the shared array
        for key in addedOut { addOutbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm) }
        for key in addedIn { addInbound(key, local: local, peer: peer, keys: keys, algorithm: algorithm) }
        if old.inbound.isEmpty, !new.inbound.isEmpty { addAdmission(local: local, peer: peer) }
    }

    private mutating func addOutbound(
        _ key: KeyID, local: LocalNode, peer: Peer, keys: [KeyID: IPsecKey],
        algorithm: DesiredState.AlgorithmSource
    ) {
        var builder = GroupBuilder()
        DesiredState.addOutbound(into: &builder, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        groups.append(builder.group(.outbound(key)))
    }

    private mutating func addInbound(
        _ key: KeyID, local: LocalNode, peer: Peer, keys: [KeyID: IPsecKey],
        algorithm: DesiredState.AlgorithmSource
    ) {
        var builder = GroupBuilder()
        DesiredState.addInbound(into: &builder, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        groups.append(builder.group(.inbound(key)))
    }

    private mutating func addAdmission(local: LocalNode, peer: Peer) {
        var builder = GroupBuilder()
        DesiredState.addAdmission(into: &builder, local: local, peer: peer)
        admission = builder.policies
    }

    /// True when both hold the same admission array (one buffer, or both empty): equal without comparing.
    func sharesAdmission(with other: PeerObjects) -> Bool {
        admission.withUnsafeBufferPointer { a in
            other.admission.withUnsafeBufferPointer { b in
                a.baseAddress == b.baseAddress && a.count == b.count
            }
        }
    }

    public var isEmpty: Bool {
        admission.isEmpty && groups.allSatisfy { if case .none = $0.sa { $0.policies.isEmpty } else { false } }
    }

    /// Every SA, kept identity and policy, in model order: groups, then admission (copies: for tests and status,
    /// not for hot paths).
    public var states: [XFRMState] { groups.compactMap(\.state) }
    public var keptStates: [XFRMStateID] { groups.compactMap(\.keptState) }
    public var policies: [XFRMPolicy] { groups.flatMap(\.policies) + admission }

    public var stateCount: Int { groups.reduce(0) { $0 + $1.stateCount } }
    public var policyCount: Int { groups.reduce(admission.count) { $0 + $1.policies.count } }

    public func state(_ id: XFRMStateID) -> XFRMState? {
        for group in groups {
            if case .state(let state) = group.sa, state.hasID(id) { return state }
        }
        return nil
    }

    public func policy(_ id: XFRMPolicyID) -> XFRMPolicy? {
        for group in groups {
            if let policy = group.policies.first(where: { $0.hasID(id) }) { return policy }
        }
        return admission.first { $0.hasID(id) }
    }

    func keeps(_ id: XFRMStateID) -> Bool {
        groups.contains { if case .kept(let kept) = $0.sa { kept == id } else { false } }
    }

    public func forEachState(_ body: (XFRMState) -> Void) {
        for group in groups { if case .state(let state) = group.sa { body(state) } }
    }

    public func forEachPolicy(_ body: (XFRMPolicy) -> Void) {
        for group in groups { group.policies.forEach(body) }
        admission.forEach(body)
    }

    /// The same objects in the same order (shared groups compare by reference).
    public static func == (a: PeerObjects, b: PeerObjects) -> Bool {
        if a.groups.count == b.groups.count, zip(a.groups, b.groups).allSatisfy({ $0 === $1 }),
            a.sharesAdmission(with: b)
        {
            return true
        }
        return a.states == b.states && a.keptStates == b.keptStates && a.policies == b.policies
    }
}

/// Collects one group's objects: at most one SA (or kept identity) and its policies; a later policy with the
/// identity of an earlier one replaces it (pod CIDRs may repeat in a record).
private struct GroupBuilder: DesiredObjectSink {
    var state: XFRMState?
    var keptState: XFRMStateID?
    var policies: [XFRMPolicy] = []

    mutating func add(_ state: XFRMState) {
        assert(self.state == nil && keptState == nil, "one SA per key and direction")
        self.state = state
    }

    mutating func keep(_ id: XFRMStateID) {
        assert(state == nil, "one SA per key and direction")
        keptState = id
    }

    mutating func add(_ policy: XFRMPolicy) {
        let id = policy.id
        if let i = policies.firstIndex(where: { $0.hasID(id) }) {
            policies[i] = policy
        } else {
            policies.append(policy)
        }
    }

    func group(_ tag: PeerObjects.Group.Tag) -> PeerObjects.Group {
        let sa: PeerObjects.Group.SA =
            if let state { .state(state) } else if let keptState { .kept(keptState) } else { .none }
        return PeerObjects.Group(tag: tag, sa: sa, policies: policies)
    }
}

extension PeerObjects: DesiredObjects {
    public func desiredState(matching state: XFRMState) -> XFRMState? { self.state(state.id) }
    public func keeps(_ state: XFRMState) -> Bool { keeps(state.id) }
    public func desiredPolicy(matching policy: XFRMPolicy) -> XFRMPolicy? { self.policy(policy.id) }
}
