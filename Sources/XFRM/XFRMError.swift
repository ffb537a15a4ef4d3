#if canImport(Glibc)
    import Glibc
#endif

/// Why an XFRM operation failed. Descriptions name the request (never its key bytes), the errno by name
/// (`EEXIST`, `ENOENT`, …) and the kernel's extended-ack text when it sent one.
public enum XFRMError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The object exists already (`EEXIST`): an add of a duplicate SA or policy.
    case alreadyExists(request: String, kernelMessage: String?)
    /// The object does not exist (`ENOENT` or `ESRCH`): a delete, update or get of something absent.
    case notFound(request: String, kernelMessage: String?)
    /// Any other error the kernel returned for a request, e.g. `EPROTONOSUPPORT` with
    /// "Requested type not found" when ESP is not available.
    case kernel(request: String, errno: Int32, kernelMessage: String?)
    /// A system call on the netlink socket failed (socket, setns, sendmsg, recv …).
    case system(call: String, errno: Int32)
    /// The request cannot be encoded (for example mixed address families); nothing was sent for it.
    case invalidRequest(request: String, reason: String)
    /// The kernel's answer could not be decoded.
    case malformedMessage(String)
    /// No acknowledgement came back for a request (the socket lost it); its outcome is unknown.
    case noAcknowledgement(request: String)

    /// Maps a negative netlink error code for `request` to a typed error.
    init(request: String, netlinkError code: Int32, kernelMessage: String?) {
        switch -code {
        case EEXIST: self = .alreadyExists(request: request, kernelMessage: kernelMessage)
        case ENOENT, ESRCH: self = .notFound(request: request, kernelMessage: kernelMessage)
        default: self = .kernel(request: request, errno: -code, kernelMessage: kernelMessage)
        }
    }

    /// The errno behind the error, when there is one.
    public var errno: Int32? {
        switch self {
        case .alreadyExists: EEXIST
        case .notFound: ENOENT
        case .kernel(_, let code, _), .system(_, let code): code
        case .invalidRequest, .malformedMessage, .noAcknowledgement: nil
        }
    }

    /// The kernel's extended-ack text (`NETLINK_EXT_ACK`), when it sent one.
    public var kernelMessage: String? {
        switch self {
        case .alreadyExists(_, let m), .notFound(_, let m), .kernel(_, _, let m): m
        default: nil
        }
    }

    public var description: String {
        func suffix(_ message: String?) -> String { message.map { ": kernel says \"\($0)\"" } ?? "" }
        switch self {
        case .alreadyExists(let request, let message):
            return "\(request): EEXIST (already exists)\(suffix(message))"
        case .notFound(let request, let message):
            return "\(request): ENOENT/ESRCH (not found)\(suffix(message))"
        case .kernel(let request, let code, let message):
            return "\(request): \(ErrnoName.describe(code))\(suffix(message))"
        case .system(let call, let code):
            return "\(call) failed: \(ErrnoName.describe(code))"
        case .invalidRequest(let request, let reason):
            return "\(request): invalid request: \(reason)"
        case .malformedMessage(let reason):
            return "malformed netlink message: \(reason)"
        case .noAcknowledgement(let request):
            return "\(request): no acknowledgement from the kernel (outcome unknown)"
        }
    }
}
