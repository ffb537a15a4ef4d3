/// The identifier of a key generation: 1…15, carried in 4 bits of the packet mark and in the SPI.
///
/// Rotation advances 1 → 2 → … → 15 → 1. Because at most a few generations are ever live at once,
/// order is defined on the ring: `b` is newer than `a` when stepping forward from `a` reaches `b` in
/// 1…7 steps. So 1 is newer than 15, and `older(1, 15)` is 15 — the rule the BPF datapath applies
/// when it picks min(local key, peer's advertised key).
public struct KeyID: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public static let range: ClosedRange<UInt8> = 1...15
    public let rawValue: UInt8

    public init?(_ rawValue: some BinaryInteger) {
        guard let v = UInt8(exactly: rawValue), KeyID.range.contains(v) else { return nil }
        self.rawValue = v
    }

    /// The next key ID in rotation order (15 wraps to 1).
    public var next: KeyID { KeyID(rawValue == 15 ? 1 : rawValue + 1)! }

    /// The previous key ID in rotation order (1 wraps to 15).
    public var previous: KeyID { KeyID(rawValue == 1 ? 15 : rawValue - 1)! }

    /// Steps forward from `self` to `other` on the ring (0…14).
    public func distance(to other: KeyID) -> Int {
        (Int(other.rawValue) - Int(rawValue) + 15) % 15
    }

    /// True when `other` is a later generation than `self` (1…7 steps ahead on the ring).
    public func isOlder(than other: KeyID) -> Bool {
        (1...7).contains(distance(to: other))
    }

    /// The older of two key IDs with wrap-around: `older(1, 15) == 15`, `older(3, 4) == 3`.
    public static func older(_ a: KeyID, _ b: KeyID) -> KeyID {
        a.isOlder(than: b) ? a : b
    }

    /// Ring order (see the type's documentation); only meaningful for generations within 7 steps.
    public static func < (lhs: KeyID, rhs: KeyID) -> Bool { lhs.isOlder(than: rhs) }

    public var description: String { String(rawValue) }

    public init(from decoder: any Decoder) throws {
        let v = try decoder.singleValueContainer().decode(Int.self)
        guard let id = KeyID(v) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "key ID must be 1…15, got \(v)"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Int(rawValue))
    }
}
