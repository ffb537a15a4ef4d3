/// The order in which a node tries free node IDs: it starts at a slot derived from a stable hash
/// of its name and walks up the range, wrapping around. Different names start at different places,
/// so nodes registering together rarely race for the same ID, and a node that lost its lease
/// tends to get its old ID back.
struct NodeIDProbe: Sendable {
    let range: ClosedRange<UInt16>
    let start: UInt16

    init(name: String, range: ClosedRange<UInt16>) {
        self.range = range
        let count = UInt64(range.upperBound - range.lowerBound) + 1
        start = range.lowerBound + UInt16(Self.fnv1a(name) % count)
    }

    /// The `index`-th ID of the probe sequence (0 = the start slot), for `index` in 0..<count.
    func id(at index: Int) -> UInt16 {
        let count = Int(range.upperBound - range.lowerBound) + 1
        let offset = (Int(start - range.lowerBound) + index) % count
        return range.lowerBound + UInt16(offset)
    }

    var count: Int { Int(range.upperBound - range.lowerBound) + 1 }

    /// 64-bit FNV-1a: stable across processes and platforms, unlike `Hasher`.
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }
}
