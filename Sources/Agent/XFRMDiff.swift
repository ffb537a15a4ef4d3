import XFRM

/// The requests that turn the kernel's owned objects into the desired ones. Pure and linear in the number of
/// objects: look-ups are hashed by identity.
///
/// Order is make-before-break: new states, then new policies, then policy updates (atomic in the kernel), then
/// deletions of policies before the states they referenced. A state whose immutable fields differ (a corrupted or
/// foreign-modified SA) is replaced by delete + add, the only break-before-make, and only in repair.
public struct XFRMDiff: Sendable, Equatable {
    public var addStates: [XFRMState] = []
    public var replaceStates: [XFRMState] = []
    public var deleteStates: [XFRMStateID] = []
    public var addPolicies: [XFRMPolicy] = []
    public var updatePolicies: [XFRMPolicy] = []
    public var deletePolicies: [XFRMPolicyID] = []

    public init(
        desired: some DesiredObjects, actualStates: some Collection<XFRMState>,
        actualPolicies: some Collection<XFRMPolicy>
    ) {
        // One look-up per actual object. Only when fewer actual objects matched than are desired does a second
        // pass collect the actual identities to find the missing ones (the steady state skips it). Identities are
        // unique in the kernel (an SA by destination, SPI, protocol and mark; an owned policy by selector,
        // direction, mark and the agent's priority); where two peers want the same object, the desired count
        // exceeds the matches and the second pass finds nothing missing.
        var matchedStates = 0
        for state in actualStates {
            if let want = desired.desiredState(matching: state) {
                matchedStates += 1
                if !XFRMDiff.sameState(want, state) { replaceStates.append(want) }
            } else if !desired.keeps(state) {
                deleteStates.append(state.id)
            }
        }
        if matchedStates < desired.stateCount {
            let seen = Set(actualStates.lazy.map(\.id))
            desired.forEachState { if !seen.contains($0.id) { addStates.append($0) } }
        }

        var matchedPolicies = 0
        for policy in actualPolicies {
            if let want = desired.desiredPolicy(matching: policy) {
                matchedPolicies += 1
                if !XFRMDiff.samePolicy(want, policy) { updatePolicies.append(want) }
            } else {
                deletePolicies.append(policy.id)
            }
        }
        if matchedPolicies < desired.policyCount {
            let seen = Set(actualPolicies.lazy.map(\.id))
            desired.forEachPolicy { if !seen.contains($0.id) { addPolicies.append($0) } }
        }
    }

    public var isEmpty: Bool {
        addStates.isEmpty && replaceStates.isEmpty && deleteStates.isEmpty && addPolicies.isEmpty
            && updatePolicies.isEmpty && deletePolicies.isEmpty
    }

    public var count: Int {
        addStates.count + replaceStates.count + deleteStates.count + addPolicies.count + updatePolicies.count
            + deletePolicies.count
    }

    /// Install requests first (nothing is removed in this batch).
    public var installRequests: [XFRMRequest] {
        addStates.map { .addState($0) } + addPolicies.map { .addPolicy($0) } + updatePolicies.map { .updatePolicy($0) }
    }

    /// Removal requests: policies, then states; replaced states are deleted and re-added.
    public var removalRequests: [XFRMRequest] {
        deletePolicies.map { .deletePolicy($0) } + deleteStates.map { .deleteState($0) }
            + replaceStates.flatMap { [XFRMRequest.deleteState($0.id), .addState($0)] }
    }

    /// The fields that define an SA's behaviour; counters, selector and kernel-normalised fields are ignored.
    static func sameState(_ a: XFRMState, _ b: XFRMState) -> Bool {
        a.source == b.source && a.destination == b.destination && a.spi == b.spi && a.proto == b.proto
            && a.mode == b.mode && a.reqid == b.reqid && a.mark == b.mark && a.algorithm == b.algorithm
            && a.esn == b.esn
    }

    static func samePolicy(_ a: XFRMPolicy, _ b: XFRMPolicy) -> Bool {
        a.action == b.action && a.priority == b.priority && a.templates == b.templates
    }
}

extension XFRMDiff {
    /// The diff `init(desired:actualStates:actualPolicies:)` gives for one peer's desired objects against what was
    /// installed for it. Groups both models share (the same instance) hold equal objects and are skipped; the rest
    /// (a rotation step: one key's groups) are compared by linear search, so no hashing and no allocation beyond
    /// the result (this runs for every peer of a rotation).
    init(installed have: PeerObjects, desired want: PeerObjects) {
        let haveGroups = have.groups, wantGroups = want.groups
        func shared(_ group: PeerObjects.Group, _ others: [PeerObjects.Group]) -> Bool {
            others.contains { $0 === group }
        }
        // An object's identity is unique within a peer's model (one group per key and direction, admission apart),
        // so an object of a group both share has no counterpart in another group. Objects are visited in model
        // order (groups, then admission), as the general diff visits them.
        let sameAdmission = have.sharesAdmission(with: want)
        for group in haveGroups where !shared(group, wantGroups) {
            guard let state = group.state else { continue }
            let id = state.id
            if let desired = want.state(id) {
                if !XFRMDiff.sameState(desired, state) { replaceStates.append(desired) }
            } else if !want.keeps(id) {
                deleteStates.append(id)
            }
        }
        func compare(_ policy: XFRMPolicy) {
            let id = policy.id
            if let desired = want.policy(id) {
                if !XFRMDiff.samePolicy(desired, policy) { updatePolicies.append(desired) }
            } else {
                deletePolicies.append(id)
            }
        }
        for group in haveGroups where !shared(group, wantGroups) { group.policies.forEach(compare) }
        if !sameAdmission { have.admission.forEach(compare) }
        for group in wantGroups where !shared(group, haveGroups) {
            if let state = group.state, have.state(state.id) == nil { addStates.append(state) }
        }
        for group in wantGroups where !shared(group, haveGroups) {
            for policy in group.policies where have.policy(policy.id) == nil { addPolicies.append(policy) }
        }
        if !sameAdmission {
            for policy in want.admission where have.policy(policy.id) == nil { addPolicies.append(policy) }
        }
    }

    /// When every installed group is still desired, with the same admission policies or none installed yet (a
    /// rotation step adding keys, a new peer, or nothing changed), the diff is additions only: the objects of the
    /// desired groups not installed, and the admission policies if they are new. Passes those, in the order the diff
    /// lists them, without building the diff's arrays and returns true; returns false, passing nothing, otherwise.
    static func forEachAddition(
        installed have: PeerObjects, desired want: PeerObjects,
        state: (XFRMState) -> Void, policy: (XFRMPolicy) -> Void
    ) -> Bool {
        let haveGroups = have.groups, wantGroups = want.groups
        let sameAdmission = have.sharesAdmission(with: want)
        guard sameAdmission || have.admission.isEmpty,
            haveGroups.allSatisfy({ group in wantGroups.contains { $0 === group } })
        else { return false }
        for group in wantGroups where !haveGroups.contains(where: { $0 === group }) {
            if let added = group.state { state(added) }
        }
        for group in wantGroups where !haveGroups.contains(where: { $0 === group }) {
            group.policies.forEach(policy)
        }
        if !sameAdmission { want.admission.forEach(policy) }
        return true
    }
}

/// The objects a diff compares the kernel with: a `DesiredState`, or the agent's per-peer index of them.
public protocol DesiredObjects {
    /// The desired SA with the identity of `state`, if any.
    func desiredState(matching state: XFRMState) -> XFRMState?
    /// True for an SA that is kept as it is (its key material is gone), never re-created or deleted.
    func keeps(_ state: XFRMState) -> Bool
    /// The desired policy with the identity of `policy`, if any.
    func desiredPolicy(matching policy: XFRMPolicy) -> XFRMPolicy?
    /// How many SAs and policies are desired (an object two owners want may count twice).
    var stateCount: Int { get }
    var policyCount: Int { get }
    func forEachState(_ body: (XFRMState) -> Void)
    func forEachPolicy(_ body: (XFRMPolicy) -> Void)
}

extension DesiredState: DesiredObjects {
    public func desiredState(matching state: XFRMState) -> XFRMState? { states[state.id] }
    public func keeps(_ state: XFRMState) -> Bool { keptStates.contains(state.id) }
    public func desiredPolicy(matching policy: XFRMPolicy) -> XFRMPolicy? { policies[policy.id] }
    public var stateCount: Int { states.count }
    public var policyCount: Int { policies.count }
    public func forEachState(_ body: (XFRMState) -> Void) { for state in states.values { body(state) } }
    public func forEachPolicy(_ body: (XFRMPolicy) -> Void) { for policy in policies.values { body(policy) } }
}
