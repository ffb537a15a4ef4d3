/// What one reconcile pass found and did.
public struct ReconcileReport: Sendable, Equatable {
    /// Repairs by object ("state", "policy", "bpf") and action ("add", "update", "delete", "replace").
    public var repairs: [String: [String: Int]] = [:]
    public var errors = 0
    public var bpfRepairs = 0 {
        didSet { if bpfRepairs > 0 { repairs["bpf", default: [:]]["update"] = bpfRepairs } }
    }
    public var duration: Duration = .zero
    public var finishedAt: Duration = .zero

    public init() {}

    mutating func record(_ diff: XFRMDiff, removalsAllowed: Bool) {
        func add(_ object: String, _ action: String, _ n: Int) {
            if n > 0 { repairs[object, default: [:]][action, default: 0] += n }
        }
        add("state", "add", diff.addStates.count)
        add("policy", "add", diff.addPolicies.count)
        add("policy", "update", diff.updatePolicies.count)
        if removalsAllowed {
            add("state", "replace", diff.replaceStates.count)
            add("state", "delete", diff.deleteStates.count)
            add("policy", "delete", diff.deletePolicies.count)
        }
    }

    public var totalRepairs: Int { repairs.values.reduce(0) { $0 + $1.values.reduce(0, +) } }

    /// "state add 2, policy delete 1" or "none".
    public var summary: String {
        let parts = repairs.sorted { $0.key < $1.key }.flatMap { object, actions in
            actions.sorted { $0.key < $1.key }.map { "\(object) \($0.key) \($0.value)" }
        }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}
