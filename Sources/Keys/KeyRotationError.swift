import IPsecPrimitives

/// A rotation rule the new key breaks. Names IDs and algorithms, never key bytes.
public enum KeyRotationError: Error, Hashable, Sendable, CustomStringConvertible {
    case sameKeyID(KeyID)
    case algorithmChanged(from: KeyAlgorithm, to: KeyAlgorithm)
    case keyLengthChanged(from: KeyAlgorithm, to: KeyAlgorithm)

    public var description: String {
        switch self {
        case .sameKeyID(let id):
            "the new key has the same SPI \(id) as the current key; a rotation must change the SPI"
        case .algorithmChanged(let from, let to):
            "the algorithm changed from \(from) to \(to); a rotation must keep the algorithm"
        case .keyLengthChanged(let from, let to):
            "the key length changed from \(from) to \(to); a rotation must keep the key length"
        }
    }
}
