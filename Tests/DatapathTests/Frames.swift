import IPsecPrimitives

/// Ethernet frames for BPF_PROG_TEST_RUN: just enough header for the program to read the destination.
enum Frames {
    static let source4 = IPAddress("10.99.0.2")!
    static let source6 = IPAddress("fd99::2")!

    /// An Ethernet + IPv4 (+ 8 payload bytes) frame from `source4` to `destination`.
    static func ipv4(to destination: IPAddress) -> [UInt8] {
        precondition(destination.family == .v4)
        var ip: [UInt8] = [0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 1, 0, 0]  // version/IHL, len 28, DF, TTL, ICMP, checksum 0
        ip += source4.bytes + destination.bytes
        return ethernet(type: 0x0800) + ip + [8, 0, 0, 0, 0, 1, 0, 1]
    }

    /// An Ethernet + IPv6 (+ 8 payload bytes) frame from `source6` to `destination`.
    static func ipv6(to destination: IPAddress) -> [UInt8] {
        precondition(destination.family == .v6)
        var ip: [UInt8] = [0x60, 0, 0, 0, 0, 8, 58, 64]  // version, payload length 8, ICMPv6, hop limit
        ip += source6.bytes + destination.bytes
        return ethernet(type: 0x86DD) + ip + [128, 0, 0, 0, 0, 1, 0, 1]
    }

    /// A frame to `destination` in its family.
    static func ip(to destination: IPAddress) -> [UInt8] {
        destination.family == .v4 ? ipv4(to: destination) : ipv6(to: destination)
    }

    /// An ARP request whose target protocol address is `target` (an IPv4 address the program must not read as IP).
    static func arp(asking target: IPAddress) -> [UInt8] {
        var arp: [UInt8] = [0, 1, 0x08, 0x00, 6, 4, 0, 1]
        arp += [2, 0, 0, 0, 0, 2] + source4.bytes + [0, 0, 0, 0, 0, 0] + target.bytes
        return ethernet(type: 0x0806) + arp + [UInt8](repeating: 0, count: 18)
    }

    private static func ethernet(type: UInt16) -> [UInt8] {
        [2, 0, 0, 0, 0, 1] + [2, 0, 0, 0, 0, 2] + [UInt8(type >> 8), UInt8(type & 0xFF)]
    }
}
