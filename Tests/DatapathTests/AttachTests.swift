import Foundation
import IPsecPrimitives
import Testing
import TestSupport
@testable import Datapath

/// Real packets through the attached program. A "pod" namespace pings peer-CIDR addresses through a
/// veth into a "host" namespace, where the program sits on the veth's tc ingress. The host routes by
/// mark: `ip rule fwmark <mark>/0xFFFFFF00` sends each expected mark to its own sink device, everything
/// else goes to sink d0, so each sink's packet counter shows which mark (if any) the packets carried.
/// Sinks are ifb devices (this kernel has no dummy): NOARP, and a routed packet is counted in
/// rx_packets and dropped.
@Suite("tc attach with real packets", .enabled(if: Privileges.canCreateNamespaces), .serialized)
struct AttachTests {
    static let nodeID: UInt16 = 0x12
    /// Sink d1 receives packets marked with SPI 3, d2 with SPI 4 (node 0x12); d0 everything else.
    static let markToDevice: [(mark: UInt32, device: String, table: Int)] = [
        (0x0012_3E00, "d1", 101),
        (0x0012_4E00, "d2", 102),
    ]
    static let destinations = [IPAddress("10.200.1.5")!, IPAddress("fd00:200::5")!]
    static let packetsPerPing = 3

    @Test("marks forwarded IPv4 and IPv6 packets by the maps, and stops when detached")
    func marksRealPackets() async throws {
        try await NetworkNamespace.with(prefix: "ipsa-h") { host in
            try await NetworkNamespace.with(prefix: "ipsa-p") { pod in
                try await Self.buildTopology(host: host, pod: pod)
                try await Self.withPins { pins in
                    let datapath = try BPFDatapath(pinDirectory: pins.path)
                    try await NamespaceThread.run(in: host) { try datapath.attach(interface: "vh") }
                    #expect(try await NamespaceThread.run(in: host) { try datapath.attachedProgramID(interface: "vh") } == datapath.programID)

                    // Local key ready, no peer entry: unmarked.
                    try datapath.setLocalSPI(KeyID(3))
                    for destination in Self.destinations {
                        #expect(try await Self.pingDeltas(host: host, pod: pod, to: destination) == ["d0": Self.packetsPerPing, "d1": 0, "d2": 0], "\(destination)")
                    }

                    // Peer advertises 4, local 3: older is 3.
                    let entry = PeerEncryptEntry(nodeID: Self.nodeID, peerSPI: KeyID(4)!)
                    try datapath.upsertPeer(IPPrefix("10.200.0.0/16")!, entry)
                    try datapath.upsertPeer(IPPrefix("fd00:200::/32")!, entry)
                    let before = try datapath.counters()
                    for destination in Self.destinations {
                        #expect(try await Self.pingDeltas(host: host, pod: pod, to: destination) == ["d0": 0, "d1": Self.packetsPerPing, "d2": 0], "\(destination)")
                    }
                    #expect(try datapath.counters().marked >= before.marked + UInt64(2 * Self.packetsPerPing))

                    // Local rotates to 5, peer still on 4: older is 4.
                    try datapath.setLocalSPI(KeyID(5))
                    for destination in Self.destinations {
                        #expect(try await Self.pingDeltas(host: host, pod: pod, to: destination) == ["d0": 0, "d1": 0, "d2": Self.packetsPerPing], "\(destination)")
                    }

                    // Detached: the program no longer runs, packets are unmarked again.
                    try await NamespaceThread.run(in: host) { try datapath.detach(interface: "vh") }
                    #expect(try await NamespaceThread.run(in: host) { try datapath.attachedProgramID(interface: "vh") } == nil)
                    for destination in Self.destinations {
                        #expect(try await Self.pingDeltas(host: host, pod: pod, to: destination) == ["d0": Self.packetsPerPing, "d1": 0, "d2": 0], "\(destination)")
                    }
                }
            }
        }
    }

    @Test("a second instance re-attaching replaces the filter in place")
    func reattachReplaces() async throws {
        try await NetworkNamespace.with(prefix: "ipsa-h") { host in
            try await host.run("ip", "link", "add", "vh", "type", "veth", "peer", "name", "vh2")
            try await Self.withPins { pins in
                let first = try BPFDatapath(pinDirectory: pins.path)
                let second = try BPFDatapath(pinDirectory: pins.path)
                try await NamespaceThread.run(in: host) { try first.attach(interface: "vh") }
                try await NamespaceThread.run(in: host) { try second.attach(interface: "vh") }
                #expect(try await NamespaceThread.run(in: host) { try first.attachedProgramID(interface: "vh") } == second.programID)
                let filters = try await host.run("tc", "filter", "show", "dev", "vh", "ingress")
                #expect(filters.components(separatedBy: "handle 0xe5").count - 1 == 1, "\(filters)")
            }
        }
    }

    // MARK: Topology

    private static func withPins<R>(_ body: (TestPinDirectory) async throws -> R) async throws -> R {
        let pins = TestPinDirectory()
        defer { pins.remove() }
        return try await body(pins)
    }

    private static func buildTopology(host: NetworkNamespace, pod: NetworkNamespace) async throws {
        try await Shell.run("ip", "-n", host.name, "link", "add", "vh", "type", "veth", "peer", "name", "vp", "netns", pod.name)
        try await host.run("ip", "addr", "add", "10.99.0.1/24", "dev", "vh")
        try await host.run("ip", "-6", "addr", "add", "fd99::1/64", "dev", "vh", "nodad")
        try await host.run("ip", "link", "set", "vh", "up")
        for device in ["d0", "d1", "d2"] {
            try await host.run("ip", "link", "add", device, "type", "ifb")
            try await host.run("ip", "link", "set", device, "addrgenmode", "none")  // no link-local, no stray IPv6 traffic
            try await host.run("ip", "link", "set", device, "up")
        }
        try await host.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                     "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.vh.rp_filter=0")
        try await host.run("ip", "route", "add", "10.200.0.0/16", "dev", "d0")
        try await host.run("ip", "-6", "route", "add", "fd00:200::/32", "dev", "d0")
        for (mark, device, table) in markToDevice {
            let selector = "0x\(String(mark, radix: 16))/0xffffff00"
            for family in ["-4", "-6"] {
                let prefix = family == "-4" ? "10.200.0.0/16" : "fd00:200::/32"
                try await host.run("ip", family, "route", "add", prefix, "dev", device, "table", String(table))
                try await host.run("ip", family, "rule", "add", "fwmark", selector, "lookup", String(table), "pref", String(table))
            }
        }
        try await pod.run("ip", "addr", "add", "10.99.0.2/24", "dev", "vp")
        try await pod.run("ip", "-6", "addr", "add", "fd99::2/64", "dev", "vp", "nodad")
        try await pod.run("ip", "link", "set", "vp", "up")
        try await pod.run("ip", "route", "add", "default", "via", "10.99.0.1")
        try await pod.run("ip", "-6", "route", "add", "default", "via", "fd99::1")
    }

    /// Pings `destination` from the pod (no reply comes back: the sinks swallow the requests) and
    /// returns how many packets each sink device took meanwhile.
    private static func pingDeltas(host: NetworkNamespace, pod: NetworkNamespace, to destination: IPAddress) async throws -> [String: Int] {
        let devices = ["d0", "d1", "d2"]
        var before: [Int] = []
        for device in devices { before.append(try await sinkPackets(host, device)) }
        _ = try await Shell.status(["ip", "netns", "exec", pod.name, "ping", "-n", "-q", "-c", String(packetsPerPing), "-i", "0.2", "-W", "1", destination.description])
        var after: [Int] = []
        for device in devices { after.append(try await sinkPackets(host, device)) }
        return Dictionary(uniqueKeysWithValues: devices.indices.map { (devices[$0], after[$0] - before[$0]) })
    }

    private static func sinkPackets(_ namespace: NetworkNamespace, _ device: String) async throws -> Int {
        let text = try await namespace.run("cat", "/sys/class/net/\(device)/statistics/rx_packets")
        guard let count = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw NamespaceThread.Failure(description: "rx_packets of \(device) in \(namespace.name) is not a number: \(text)")
        }
        return count
    }
}
