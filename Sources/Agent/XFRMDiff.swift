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

    public init(desired: DesiredState, actualStates: some Sequence<XFRMState>, actualPolicies: some Sequence<XFRMPolicy>) {
        var seenStates = Set<XFRMStateID>()
        for state in actualStates {
            let id = state.id
            seenStates.insert(id)
            if let want = desired.states[id] {
                if !XFRMDiff.sameState(want, state) { replaceStates.append(want) }
            } else if !desired.keptStates.contains(id) {
                deleteStates.append(id)
            }
        }
        for (id, state) in desired.states where !seenStates.contains(id) { addStates.append(state) }

        var seenPolicies = Set<XFRMPolicyID>()
        for policy in actualPolicies {
            let id = policy.id
            seenPolicies.insert(id)
            if let want = desired.policies[id] {
                if !XFRMDiff.samePolicy(want, policy) { updatePolicies.append(want) }
            } else {
                deletePolicies.append(id)
            }
        }
        for (id, policy) in desired.policies where !seenPolicies.contains(id) { addPolicies.append(policy) }
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
            && a.mode == b.mode && a.reqid == b.reqid && a.mark == b.mark && a.algorithm == b.algorithm && a.esn == b.esn
    }

    static func samePolicy(_ a: XFRMPolicy, _ b: XFRMPolicy) -> Bool {
        a.action == b.action && a.priority == b.priority && a.templates == b.templates
    }
}
