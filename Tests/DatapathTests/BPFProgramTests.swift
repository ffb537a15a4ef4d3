import IPsecPrimitives
import Testing
import TestSupport
@testable import Datapath

/// The C program's key selection, run in the kernel with BPF_PROG_TEST_RUN on crafted frames.
@Suite("BPF program key selection", .enabled(if: Privileges.canCreateNamespaces))
struct BPFProgramTests {
    static let tcActOK: UInt32 = 0

    @Test("marks packets by the wrap rule", arguments: MarkScenario.all)
    func marksPackets(_ scenario: MarkScenario) throws {
        try TestPinDirectory.with { pins in
            let datapath = try BPFDatapath(pinDirectory: pins.path)
            try scenario.apply(to: datapath)
            let result = try datapath.run(frame: Frames.ip(to: scenario.destinationAddress))
            #expect(result.verdict == BPFProgramTests.tcActOK)
            #expect(result.mark == scenario.expectedMark ?? 0, "mark 0x\(String(result.mark, radix: 16))")
        }
    }

    @Test("agrees with KeyID.older for every pair of key IDs, IPv4 and IPv6")
    func agreesWithSwiftRuleForAllPairs() throws {
        try TestPinDirectory.with { pins in
            let datapath = try BPFDatapath(pinDirectory: pins.path)
            let v4 = IPPrefix("10.200.0.0/16")!, v6 = IPPrefix("fd00:200::/32")!
            for local in KeyID.range {
                for peer in KeyID.range {
                    let entry = PeerEncryptEntry(nodeID: 0x0A0B, peerSPI: KeyID(peer)!)
                    try datapath.setLocalSPI(KeyID(local))
                    try datapath.upsertPeer(v4, entry)
                    try datapath.upsertPeer(v6, entry)
                    let expected = EncryptMark.value(spi: KeyID.older(KeyID(local)!, KeyID(peer)!), nodeID: 0x0A0B)
                    #expect(try datapath.run(frame: Frames.ipv4(to: IPAddress("10.200.1.1")!)).mark == expected, "local \(local) peer \(peer)")
                    #expect(try datapath.run(frame: Frames.ipv6(to: IPAddress("fd00:200::1")!)).mark == expected, "local \(local) peer \(peer)")
                }
            }
        }
    }

    @Test("leaves the mark of unmatched and non-IP packets alone")
    func unmatchedKeepTheirMark() throws {
        try TestPinDirectory.with { pins in
            let datapath = try BPFDatapath(pinDirectory: pins.path)
            try datapath.setLocalSPI(KeyID(3))
            try datapath.upsertPeer(IPPrefix("10.200.0.0/16")!, PeerEncryptEntry(nodeID: 0x12, peerSPI: KeyID(3)!))
            let outside = try datapath.run(frame: Frames.ipv4(to: IPAddress("10.201.0.1")!), mark: 0x55)
            #expect(outside.mark == 0x55)
            #expect(outside.verdict == BPFProgramTests.tcActOK)
            // ARP asking for an address inside the peer CIDR: not an IP packet, so not marked.
            let arp = try datapath.run(frame: Frames.arp(asking: IPAddress("10.200.0.1")!), mark: 0x55)
            #expect(arp.mark == 0x55)
            #expect(arp.verdict == BPFProgramTests.tcActOK)
        }
    }

    @Test("replaces an earlier mark on packets to a peer")
    func overwritesEarlierMark() throws {
        try TestPinDirectory.with { pins in
            let datapath = try BPFDatapath(pinDirectory: pins.path)
            try datapath.setLocalSPI(KeyID(3))
            try datapath.upsertPeer(IPPrefix("10.200.0.0/16")!, PeerEncryptEntry(nodeID: 0x12, peerSPI: KeyID(3)!))
            let result = try datapath.run(frame: Frames.ipv4(to: IPAddress("10.200.0.1")!), mark: 0xABCD_0042)
            #expect(result.mark == 0x0012_3E00)
        }
    }

    @Test("follows map changes: local SPI cleared, peer deleted")
    func followsMapChanges() throws {
        try TestPinDirectory.with { pins in
            let datapath = try BPFDatapath(pinDirectory: pins.path)
            let prefix = IPPrefix("fd00:200::/32")!
            let frame = Frames.ipv6(to: IPAddress("fd00:200::1")!)
            try datapath.setLocalSPI(KeyID(9))
            try datapath.upsertPeer(prefix, PeerEncryptEntry(nodeID: 0x12, peerSPI: KeyID(9)!))
            #expect(try datapath.run(frame: frame).mark == 0x0012_9E00)
            try datapath.setLocalSPI(nil)
            #expect(try datapath.run(frame: frame).mark == 0x0012_0E00)
            try datapath.deletePeer(prefix)
            #expect(try datapath.run(frame: frame).mark == 0)
        }
    }

    @Test("counts marked, unmarked and not-ready packets")
    func countsOutcomes() throws {
        try TestPinDirectory.with { pins in
            let datapath = try BPFDatapath(pinDirectory: pins.path)
            #expect(try datapath.counters() == EncryptCounters())
            try datapath.upsertPeer(IPPrefix("10.200.0.0/16")!, PeerEncryptEntry(nodeID: 0x12, peerSPI: KeyID(3)!))
            let toPeer = Frames.ipv4(to: IPAddress("10.200.0.1")!)
            _ = try datapath.run(frame: toPeer)  // local SPI 0: not ready
            try datapath.setLocalSPI(KeyID(3))
            _ = try datapath.run(frame: toPeer)
            _ = try datapath.run(frame: toPeer)
            _ = try datapath.run(frame: Frames.ipv4(to: IPAddress("192.0.2.1")!))
            #expect(try datapath.counters() == EncryptCounters(marked: 2, unmarked: 1, notReady: 1))
        }
    }
}
