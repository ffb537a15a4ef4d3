import CBPF
import IPsecPrimitives

/// The LPM-trie key of a peer pod CIDR, as the BPF program reads it: prefix length (host order)
/// followed by the address bytes (network order): `ipsec_lpm_v4_key` / `ipsec_lpm_v6_key`.
struct PeerMapKey {
    let family: IPAddress.Family
    /// The raw key bytes, 8 (IPv4) or 20 (IPv6).
    private(set) var bytes: [UInt8]

    static func size(_ family: IPAddress.Family) -> Int {
        family == .v4 ? MemoryLayout<ipsec_lpm_v4_key>.size : MemoryLayout<ipsec_lpm_v6_key>.size
    }

    init(_ prefix: IPPrefix) {
        family = prefix.family
        var length = UInt32(prefix.length)
        bytes = Swift.withUnsafeBytes(of: &length) { Array($0) } + prefix.address.bytes
        precondition(bytes.count == PeerMapKey.size(family))
    }

    /// A key as the map holds it (raw bytes of `size(family)`).
    init(family: IPAddress.Family, bytes: some Collection<UInt8>) {
        self.family = family
        self.bytes = Array(bytes)
        precondition(self.bytes.count == PeerMapKey.size(family))
    }

    /// An all-zero key buffer to receive a key from `get_next_key`.
    init(empty family: IPAddress.Family) {
        self.family = family
        bytes = [UInt8](repeating: 0, count: PeerMapKey.size(family))
    }

    /// The prefix this key holds; nil for a key the datapath could not have written.
    var prefix: IPPrefix? {
        let length = bytes.prefix(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        guard let address = IPAddress(bytes: bytes.dropFirst(4)),
            let prefix = IPPrefix(address: address, length: Int(length)),
            prefix.address == address
        else { return nil }
        return prefix
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeMutableBytes(body)
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes(body)
    }
}
