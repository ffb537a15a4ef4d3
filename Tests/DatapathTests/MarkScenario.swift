import IPsecPrimitives
import Testing
@testable import Datapath

/// One key-selection case, checked against the BPF program (test run) and `InMemoryEncryptMap` alike.
/// Expected marks are written out by hand from the mark layout, not computed by the code under test.
struct MarkScenario: Sendable, CustomTestStringConvertible {
    let name: String
    let local: KeyID?
    let peers: [(prefix: String, nodeID: UInt16, spi: UInt8)]
    let destination: String
    /// The mark after the program ran on a packet carrying mark 0; nil: left unmarked.
    let expectedMark: UInt32?

    var testDescription: String { name }

    func apply(to map: some EncryptMap) throws {
        try map.setLocalSPI(local)
        for peer in peers {
            try map.upsertPeer(IPPrefix(peer.prefix)!, PeerEncryptEntry(nodeID: peer.nodeID, peerSPI: KeyID(peer.spi)!))
        }
    }

    var destinationAddress: IPAddress { IPAddress(destination)! }

    private static func pair(_ name: String, local: UInt8?, peerSPI: UInt8, node: UInt16 = 0x12, expected: UInt32?) -> [MarkScenario] {
        [
            MarkScenario(name: "\(name) (IPv4)", local: local.flatMap(KeyID.init), peers: [("10.200.0.0/16", node, peerSPI)], destination: "10.200.7.9", expectedMark: expected),
            MarkScenario(name: "\(name) (IPv6)", local: local.flatMap(KeyID.init), peers: [("fd00:200::/32", node, peerSPI)], destination: "fd00:200:7::9", expectedMark: expected),
        ]
    }

    static let all: [MarkScenario] =
        [
            MarkScenario(name: "no peer entry (IPv4)", local: KeyID(3), peers: [("10.201.0.0/16", 0x12, 3)], destination: "10.200.7.9", expectedMark: nil),
            MarkScenario(name: "no peer entry (IPv6)", local: KeyID(3), peers: [("fd00:201::/32", 0x12, 3)], destination: "fd00:200:7::9", expectedMark: nil),
            MarkScenario(name: "IPv4 peer does not match an IPv6 packet", local: KeyID(3), peers: [("0.0.0.0/0", 0x12, 3)], destination: "fd00:200:7::9", expectedMark: nil),
        ]
        + pair("equal SPIs", local: 5, peerSPI: 5, expected: 0x0012_5E00)
        + pair("local newer", local: 4, peerSPI: 3, expected: 0x0012_3E00)
        + pair("peer newer", local: 7, peerSPI: 8, expected: 0x0012_7E00)
        + pair("wrap: local 1, peer 15", local: 1, peerSPI: 15, expected: 0x0012_FE00)
        + pair("wrap: local 15, peer 1", local: 15, peerSPI: 1, expected: 0x0012_FE00)
        + pair("ring edge: peer 7 steps ahead is newer", local: 1, peerSPI: 8, expected: 0x0012_1E00)
        + pair("ring edge: peer 8 steps ahead is older", local: 1, peerSPI: 9, expected: 0x0012_9E00)
        + pair("local SPI 0: not ready, SPI 0", local: nil, peerSPI: 4, expected: 0x0012_0E00)
        + pair("largest node ID", local: 2, peerSPI: 2, node: 0xFFFF, expected: 0xFFFF_2E00)
        + [
            MarkScenario(name: "longest prefix wins (IPv4)", local: KeyID(6),
                         peers: [("10.200.0.0/16", 0x12, 6), ("10.200.7.0/24", 0x34, 6), ("10.200.7.9/32", 0x56, 6)],
                         destination: "10.200.7.10", expectedMark: 0x0034_6E00),
            MarkScenario(name: "host prefix (IPv6)", local: KeyID(6),
                         peers: [("fd00:200::/32", 0x12, 6), ("fd00:200:7::9/128", 0x56, 5)],
                         destination: "fd00:200:7::9", expectedMark: 0x0056_5E00),
        ]
}
