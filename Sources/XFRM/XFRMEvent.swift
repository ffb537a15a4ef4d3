/// A change to the kernel's XFRM database, as reported by `XFRMMonitor`.
public enum XFRMEvent: Hashable, Sendable, CustomStringConvertible {
    case stateAdded(XFRMState)
    case stateUpdated(XFRMState)
    case stateDeleted(XFRMState)
    case policyAdded(XFRMPolicy)
    case policyUpdated(XFRMPolicy)
    case policyDeleted(XFRMPolicy)
    /// An SA reached its soft (`hard == false`) or hard lifetime limit.
    case stateExpired(XFRMStateID, hard: Bool)
    /// A policy reached its soft or hard lifetime limit.
    case policyExpired(XFRMPolicyID, hard: Bool)
    /// Notifications were lost (the socket overflowed: `ENOBUFS`), or the kernel flushed SAs or policies:
    /// re-read the whole database with `XFRMClient.states()`/`policies()`.
    case resyncNeeded

    public var description: String {
        switch self {
        case .stateAdded(let s): "added \(s)"
        case .stateUpdated(let s): "updated \(s)"
        case .stateDeleted(let s): "deleted \(s)"
        case .policyAdded(let p): "added \(p)"
        case .policyUpdated(let p): "updated \(p)"
        case .policyDeleted(let p): "deleted \(p)"
        case .stateExpired(let id, let hard): "\(hard ? "hard" : "soft") expire of state \(id)"
        case .policyExpired(let id, let hard): "\(hard ? "hard" : "soft") expire of \(id)"
        case .resyncNeeded: "resync needed"
        }
    }
}
