/// An address prefix (CIDR), always stored with its host bits cleared.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// Builds a prefix; host bits of `address` are cleared. Nil if `length` exceeds the family's width.
    public init?(address: IPAddress, length: Int) {
        guard length >= 0, length <= address.bitWidth else { return nil }
        self.address = IPPrefix.mask(address, length)
        self.length = length
    }

    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host prefix).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(parts[0]) else { return nil }
        var length = address.bitWidth
        if parts.count == 2 {
            guard let n = Int(parts[1]), String(n) == parts[1] else { return nil }
            length = n
        }
        self.init(address: address, length: length)
    }

    /// The host prefix (/32 or /128) of an address.
    public init(host: IPAddress) {
        self.address = host
        self.length = host.bitWidth
    }

    public var family: IPAddress.Family { address.family }

    public func contains(_ other: IPAddress) -> Bool {
        other.family == address.family && IPPrefix.mask(other, length) == address
    }

    /// True when some address is in both prefixes (one contains the other).
    public func overlaps(_ other: IPPrefix) -> Bool {
        contains(other.address) || other.contains(address)
    }

    public var description: String { "\(address)/\(length)" }

    static func mask(_ a: IPAddress, _ length: Int) -> IPAddress {
        switch a {
        case .v4(let v):
            return .v4(v & ~(UInt32.max >> UInt32(length)))  // smart shift: >> 32 is 0
        case .v6(let v):
            return .v6(v & ~(UInt128.max >> UInt128(length)))
        }
    }
}

extension IPPrefix: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let prefix = IPPrefix(text) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "not an IP prefix: \(text.prefix(64))"))
        }
        self = prefix
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
