import IPsecPrimitives

/// A rotation rule the new key breaks. Names IDs and algorithms, never key bytes.
public enum KeyRotationError: Error, Hashable, Sendable, CustomStringConvertible {
    case sameKeyID(KeyID)
    case algorithmChanged(from: KeyAlgorithm, to: KeyAlgorithm)
    case keyLengthChanged(from: KeyAlgorithm, to: KeyAlgorithm)
    /// The new ID is not 1–7 steps after the current one, so peers would order it as older.
    case keyIDOrder(current: KeyID, new: KeyID)

    /// Short label for metrics (`ipsec_key_load_errors_total{reason}`).
    public var reason: String {
        switch self {
        case .sameKeyID: "same_spi"
        case .algorithmChanged, .keyLengthChanged: "rotation_rule"
        case .keyIDOrder: "key_id_order"
        }
    }

    /// The IDs a rotation from `current` may go to, in words ("4–10", "13–15 or 1–5").
    static func allowed(after current: KeyID) -> String {
        let first = current.next
        var last = current
        for _ in 0..<7 { last = last.next }
        return first.rawValue <= last.rawValue ? "\(first)–\(last)" : "\(first)–15 or 1–\(last)"
    }

    public var description: String {
        switch self {
        case .sameKeyID(let id):
            "the new key has the same SPI \(id) as the current key; a rotation must change the SPI"
        case .algorithmChanged(let from, let to):
            "the algorithm changed from \(from) to \(to); a rotation must keep the algorithm"
        case .keyLengthChanged(let from, let to):
            "the key length changed from \(from) to \(to); a rotation must keep the key length"
        case .keyIDOrder(let current, let new):
            "the new key ID \(new) is \(current.distance(to: new)) steps after the current key ID \(current); "
                + "it must be 1–7 steps after it (\(Self.allowed(after: current))), or peers would order it as older"
        }
    }
}
