/// Packet counts from the program's per-CPU `encrypt_counters` map, summed over CPUs.
/// Monotonic while the pinned map lives (they survive agent restarts).
public struct EncryptCounters: Hashable, Sendable {
    /// Packets to a peer CIDR marked with a usable key ID.
    public var marked: UInt64
    /// Packets left alone: not IPv4/IPv6, or no peer entry for the destination.
    public var unmarked: UInt64
    /// Packets to a peer CIDR while no usable key existed: marked with SPI 0, dropped by the OUT block policy.
    public var notReady: UInt64

    public init(marked: UInt64 = 0, unmarked: UInt64 = 0, notReady: UInt64 = 0) {
        self.marked = marked
        self.unmarked = unmarked
        self.notReady = notReady
    }
}
