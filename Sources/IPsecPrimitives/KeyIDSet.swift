/// A set of key IDs as a 15-bit mask: what a peer's live keys are (`PeerKeys`). Copying, comparing and changing
/// it allocates nothing, which matters when a rotation touches the live keys of thousands of peers.
/// Iterates in ascending raw value (not ring order).
public struct KeyIDSet: SetAlgebra, Hashable, Sendable, Sequence, ExpressibleByArrayLiteral, CustomStringConvertible {
    public typealias Element = KeyID
    /// Bit `n` set ⇔ key ID `n` is a member (bit 0 is never set).
    public private(set) var bits: UInt16

    public init() { bits = 0 }

    public init(arrayLiteral elements: KeyID...) {
        self.init(elements)
    }

    public init<S: Sequence>(_ elements: S) where S.Element == KeyID {
        bits = 0
        for element in elements { bits |= Self.bit(element) }
    }

    private init(bits: UInt16) { self.bits = bits }

    private static func bit(_ id: KeyID) -> UInt16 { 1 << UInt16(id.rawValue) }

    public var isEmpty: Bool { bits == 0 }
    public var count: Int { bits.nonzeroBitCount }

    public func contains(_ member: KeyID) -> Bool { bits & Self.bit(member) != 0 }

    public func union(_ other: KeyIDSet) -> KeyIDSet { KeyIDSet(bits: bits | other.bits) }
    public func intersection(_ other: KeyIDSet) -> KeyIDSet { KeyIDSet(bits: bits & other.bits) }
    public func symmetricDifference(_ other: KeyIDSet) -> KeyIDSet { KeyIDSet(bits: bits ^ other.bits) }
    public func subtracting(_ other: KeyIDSet) -> KeyIDSet { KeyIDSet(bits: bits & ~other.bits) }

    @discardableResult
    public mutating func insert(_ newMember: KeyID) -> (inserted: Bool, memberAfterInsert: KeyID) {
        let inserted = !contains(newMember)
        bits |= Self.bit(newMember)
        return (inserted, newMember)
    }

    @discardableResult
    public mutating func remove(_ member: KeyID) -> KeyID? {
        guard contains(member) else { return nil }
        bits &= ~Self.bit(member)
        return member
    }

    @discardableResult
    public mutating func update(with newMember: KeyID) -> KeyID? {
        let present = contains(newMember)
        bits |= Self.bit(newMember)
        return present ? newMember : nil
    }

    public mutating func formUnion(_ other: KeyIDSet) { bits |= other.bits }
    public mutating func formIntersection(_ other: KeyIDSet) { bits &= other.bits }
    public mutating func formSymmetricDifference(_ other: KeyIDSet) { bits ^= other.bits }
    public mutating func subtract(_ other: KeyIDSet) { bits &= ~other.bits }

    /// Walks the members in ascending raw value.
    public struct Iterator: IteratorProtocol {
        var remaining: UInt16
        public mutating func next() -> KeyID? {
            guard remaining != 0 else { return nil }
            let n = remaining.trailingZeroBitCount
            remaining &= remaining - 1
            return KeyID(n)
        }
    }

    public func makeIterator() -> Iterator { Iterator(remaining: bits) }
    public var underestimatedCount: Int { count }

    public var description: String { "[" + map(\.description).joined(separator: ", ") + "]" }
}
