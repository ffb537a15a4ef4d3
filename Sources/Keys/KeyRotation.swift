import IPsecPrimitives

/// An accepted rotation from one key ID to another.
public struct KeyRotation: Hashable, Sendable, CustomStringConvertible {
    public let from: KeyID
    public let to: KeyID

    /// True when `to` is `from.next` (15 → 1 counts); false when IDs were skipped.
    public var isSuccessor: Bool { to == from.next }

    public var description: String {
        isSuccessor ? "rotation \(from) → \(to)" : "rotation \(from) → \(to) (skips \(from.distance(to: to) - 1) ID(s))"
    }
}
