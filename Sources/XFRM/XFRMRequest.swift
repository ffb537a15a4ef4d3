/// One change to the kernel's XFRM database, for `XFRMClient.perform(_:)` batches.
public enum XFRMRequest: Hashable, Sendable, CustomStringConvertible {
    case addState(XFRMState)
    case updateState(XFRMState)
    case deleteState(XFRMStateID)
    case addPolicy(XFRMPolicy)
    case updatePolicy(XFRMPolicy)
    case deletePolicy(XFRMPolicyID)

    public var description: String {
        switch self {
        case .addState(let s): "add \(s)"
        case .updateState(let s): "update \(s)"
        case .deleteState(let id): "delete state \(id)"
        case .addPolicy(let p): "add \(p)"
        case .updatePolicy(let p): "update \(p)"
        case .deletePolicy(let id): "delete \(id)"
        }
    }
}
