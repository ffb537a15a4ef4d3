import Foundation
import IPsecPrimitives
import Testing
import TestSupport
@testable import Datapath

/// Maps are pinned: key state outlives the instance (an agent restart) and is shared with the next one.
@Suite("Pinned maps", .enabled(if: Privileges.canCreateNamespaces))
struct PinnedMapsTests {
    let prefix4 = IPPrefix("10.200.0.0/16")!
    let prefix6 = IPPrefix("fd00:200::/32")!
    let entry = PeerEncryptEntry(nodeID: 0x77, peerSPI: KeyID(12)!)

    @Test("pins the four maps by name in the pin directory")
    func pinsByName() throws {
        try TestPinDirectory.with { pins in
            _ = try BPFDatapath(pinDirectory: pins.path)
            let names = try FileManager.default.contentsOfDirectory(atPath: pins.path).sorted()
            #expect(names == ["encrypt_counters", "encrypt_state", "peer_v4", "peer_v6"])
        }
    }

    @Test("a second instance finds what the first wrote, while both live and after the first is gone")
    func secondInstanceReusesMaps() throws {
        try TestPinDirectory.with { pins in
            var first: BPFDatapath? = try BPFDatapath(pinDirectory: pins.path)
            try first?.setLocalSPI(KeyID(11))
            try first?.upsertPeer(prefix4, entry)
            try first?.upsertPeer(prefix6, entry)

            let second = try BPFDatapath(pinDirectory: pins.path)
            #expect(second.programID != first?.programID)
            #expect(try second.localSPI() == KeyID(11))
            #expect(try second.peers() == [prefix4: entry, prefix6: entry])

            // A write through one is seen by the other: the very same maps.
            try second.setLocalSPI(KeyID(13))
            #expect(try first?.localSPI() == KeyID(13))

            first = nil
            let third = try BPFDatapath(pinDirectory: pins.path)
            #expect(try third.localSPI() == KeyID(13))
            #expect(try third.peers() == [prefix4: entry, prefix6: entry])
            // Its program reads the reused maps: older(13, 12) = 12.
            #expect(try third.run(frame: Frames.ipv4(to: IPAddress("10.200.3.4")!)).mark == 0x0077_CE00)
        }
    }

    @Test("after removePins the next instance starts empty")
    func removePinsStartsOver() throws {
        try TestPinDirectory.with { pins in
            do {
                let datapath = try BPFDatapath(pinDirectory: pins.path)
                try datapath.setLocalSPI(KeyID(2))
                try datapath.upsertPeer(prefix4, entry)
            }
            try BPFDatapath.removePins(pinDirectory: pins.path)
            #expect(!FileManager.default.fileExists(atPath: pins.path))
            let fresh = try BPFDatapath(pinDirectory: pins.path)
            #expect(try fresh.localSPI() == nil)
            #expect(try fresh.peers().isEmpty)
        }
    }
}
