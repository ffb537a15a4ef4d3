/// Errors a `NodeRegistry` backend reports. Messages name the problem and never carry credentials.
public enum RegistryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The caller presented no credential or a wrong one (HTTP 401).
    case unauthorized(String)
    /// The credential is valid but does not allow this operation (HTTP 403), e.g. writing another node's record.
    case forbidden(String)
    /// The record (or its lease) does not exist (HTTP 404); a heartbeat gets this after the lease expired.
    case notFound(String)
    /// The record or request was rejected as invalid (HTTP 4xx); the message names the field.
    case invalidRecord(String)
    /// Any other answer the backend refused with.
    case rejected(status: Int, message: String)
    /// The backend could not be reached or answered something unreadable.
    case unavailable(String)
    /// A watch stream ended without an error (the connection was closed).
    case watchEnded
    /// A failure injected by `InMemoryNodeRegistry` for tests.
    case injectedFailure(String)

    public var description: String {
        switch self {
        case .unauthorized(let m): "unauthorized: \(m)"
        case .forbidden(let m): "forbidden: \(m)"
        case .notFound(let m): "not found: \(m)"
        case .invalidRecord(let m): "invalid record: \(m)"
        case .rejected(let status, let m): "rejected (\(status)): \(m)"
        case .unavailable(let m): "registry unavailable: \(m)"
        case .watchEnded: "watch ended"
        case .injectedFailure(let m): "injected failure: \(m)"
        }
    }
}
