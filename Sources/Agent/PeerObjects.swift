import IPsecPrimitives
import Keys
import XFRM

/// One peer's XFRM objects, stored compactly: a handful of SAs and policies per peer, so plain arrays sized to
/// fit, searched linearly, instead of hash tables (at 5,000 peers the agent keeps two models of every peer's
/// objects; docs/benchmarks.md, "Memory").
public struct PeerObjects: Sendable, Equatable {
    public private(set) var states: [XFRMState]
    public private(set) var keptStates: [XFRMStateID]
    public private(set) var policies: [XFRMPolicy]

    public init() {
        states = []
        keptStates = []
        policies = []
    }

    /// One peer's objects, built straight into arrays (what `DesiredStateCache` keeps).
    init(local: LocalNode, peer: Peer, live: PeerKeys, keys: [KeyID: IPsecKey], algorithm: DesiredState.AlgorithmSource) {
        self.init()
        // Sized to fit: an upper bound of what `build` adds (exact unless keys are missing or CIDRs repeat).
        states.reserveCapacity(live.inbound.count + live.outbound.count)
        policies.reserveCapacity(live.outbound.count * peer.podCIDRs.count
                                 + (live.inbound.isEmpty ? 0 : 2 * peer.podCIDRs.count * local.podCIDRs.count))
        DesiredState.build(into: &self, local: local, peer: peer, live: live, keys: keys, algorithm: algorithm)
    }

    /// Brings objects built for `old` live keys to what `init` gives for `new`, for the same peer, local node and
    /// key material: drops the objects of keys no longer live, builds only those of keys newly live. A rotation
    /// step adds or removes one key per peer, so this touches a third of the objects a rebuild would.
    /// Order within the arrays may differ from a rebuild's; the set of objects is the same.
    mutating func patch(from old: PeerKeys, to new: PeerKeys, local: LocalNode, peer: Peer, keys: [KeyID: IPsecKey],
                        algorithm: DesiredState.AlgorithmSource) {
        let goneOut = old.outbound.subtracting(new.outbound), goneIn = old.inbound.subtracting(new.inbound)
        if !goneOut.isEmpty || !goneIn.isEmpty {
            // An OUT SA carries the peer's mark, an IN SA none; the key is in the SPI either way.
            func gone(_ id: XFRMStateID) -> Bool {
                guard let key = DatapathLayout.decode(spi: id.spi)?.key else { return false }
                return id.mark == nil ? goneIn.contains(key) : goneOut.contains(key)
            }
            states.removeAll { gone($0.id) }
            keptStates.removeAll(where: gone)
            if !goneOut.isEmpty {
                let marks = goneOut.map { DatapathLayout.outMark(key: $0, peer: peer.nodeID) }
                policies.removeAll { $0.direction == .out && $0.mark.map(marks.contains) == true }
            }
            if new.inbound.isEmpty { policies.removeAll { $0.direction != .out } }  // admission goes with the last IN SA
        }
        for key in new.outbound where !old.outbound.contains(key) {
            DesiredState.addOutbound(into: &self, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        }
        for key in new.inbound where !old.inbound.contains(key) {
            DesiredState.addInbound(into: &self, key: key, local: local, peer: peer, keys: keys, algorithm: algorithm)
        }
        if old.inbound.isEmpty, !new.inbound.isEmpty { DesiredState.addAdmission(into: &self, local: local, peer: peer) }
    }

    public var isEmpty: Bool { states.isEmpty && keptStates.isEmpty && policies.isEmpty }

    public func state(_ id: XFRMStateID) -> XFRMState? {
        states.first { $0.hasID(id) }
    }

    public func policy(_ id: XFRMPolicyID) -> XFRMPolicy? {
        policies.first { $0.hasID(id) }
    }
}

extension PeerObjects: DesiredObjectSink {
    mutating func add(_ state: XFRMState) {
        let id = state.id
        if let i = states.withUnsafeBufferPointer({ $0.firstIndex { $0.hasID(id) } }) { states[i] = state } else { states.append(state) }
    }

    mutating func keep(_ id: XFRMStateID) {
        if !keptStates.contains(id) { keptStates.append(id) }
    }

    mutating func add(_ policy: XFRMPolicy) {
        let id = policy.id
        if let i = policies.withUnsafeBufferPointer({ $0.firstIndex { $0.hasID(id) } }) {
            policies[i] = policy
        } else {
            policies.append(policy)
        }
    }
}

extension PeerObjects: DesiredObjects {
    public func desiredState(matching state: XFRMState) -> XFRMState? { self.state(state.id) }
    public func keeps(_ state: XFRMState) -> Bool { keptStates.contains(state.id) }
    public func desiredPolicy(matching policy: XFRMPolicy) -> XFRMPolicy? { self.policy(policy.id) }
    public var stateCount: Int { states.count }
    public var policyCount: Int { policies.count }
    public func forEachState(_ body: (XFRMState) -> Void) { states.forEach(body) }
    public func forEachPolicy(_ body: (XFRMPolicy) -> Void) { policies.forEach(body) }
}
