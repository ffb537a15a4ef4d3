/// What `KeyFileWatcher` reports after the key file was (re)placed.
public enum KeyFileEvent: Hashable, Sendable, CustomStringConvertible {
    /// The file parsed; this is its active (last) key. Rotation rules are the consumer's to check.
    case key(IPsecKey)
    /// The file is missing, unreadable or malformed. The consumer keeps its current key.
    case error(KeyFileError)

    /// The event as a `Result`, for consumers that take one (the agent's `keyFileChanged`).
    public var result: Result<IPsecKey, KeyFileError> {
        switch self {
        case .key(let key): .success(key)
        case .error(let error): .failure(error)
        }
    }

    public var description: String {
        switch self {
        case .key(let key): "\(key) (fingerprint \(key.fingerprint))"
        case .error(let error): "\(error)"
        }
    }
}
