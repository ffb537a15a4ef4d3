import Glibc
import IPsecPrimitives
import Synchronization
import Testing
import TestSupport
@testable import Datapath

/// The `EncryptMap` behaviour both implementations must share, so other modules' tests using
/// `InMemoryEncryptMap` see what the agent will see from `BPFDatapath`.
@Suite("EncryptMap contract")
struct EncryptMapContractTests {
    enum Implementation: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case bpf, inMemory
        var testDescription: String { rawValue }

        /// Runs `body` with a fresh map; the BPF one only where maps can be created (root).
        func withMap(_ body: (any EncryptMap) throws -> Void) throws {
            switch self {
            case .inMemory:
                try body(InMemoryEncryptMap())
            case .bpf:
                guard Privileges.canCreateNamespaces else { return }
                try TestPinDirectory.with { pins in try body(BPFDatapath(pinDirectory: pins.path)) }
            }
        }
    }

    @Test("starts empty and not ready", arguments: Implementation.allCases)
    func startsEmpty(_ implementation: Implementation) throws {
        try implementation.withMap { map throws in
            #expect(try map.localSPI() == nil)
            #expect(try map.peers().isEmpty)
        }
    }

    @Test("stores and clears the local SPI", arguments: Implementation.allCases)
    func localSPIRoundTrip(_ implementation: Implementation) throws {
        try implementation.withMap { map in
            for raw in [1, 7, 15] as [UInt8] {
                try map.setLocalSPI(KeyID(raw))
                #expect(try map.localSPI() == KeyID(raw))
            }
            try map.setLocalSPI(nil)
            #expect(try map.localSPI() == nil)
        }
    }

    @Test("upserts, replaces, lists and deletes peers of both families", arguments: Implementation.allCases)
    func peersRoundTrip(_ implementation: Implementation) throws {
        try implementation.withMap { map in
            let entries: [IPPrefix: PeerEncryptEntry] = [
                IPPrefix("10.200.0.0/16")!: PeerEncryptEntry(nodeID: 1, peerSPI: KeyID(3)!),
                IPPrefix("10.200.7.0/24")!: PeerEncryptEntry(nodeID: 2, peerSPI: KeyID(15)!),
                IPPrefix("192.0.2.1/32")!: PeerEncryptEntry(nodeID: 0xFFFF, peerSPI: KeyID(1)!),
                IPPrefix("0.0.0.0/0")!: PeerEncryptEntry(nodeID: 4, peerSPI: KeyID(8)!),
                IPPrefix("fd00:200::/32")!: PeerEncryptEntry(nodeID: 5, peerSPI: KeyID(9)!),
                IPPrefix("fd00:200:7::9/128")!: PeerEncryptEntry(nodeID: 6, peerSPI: KeyID(2)!),
            ]
            for (prefix, entry) in entries { try map.upsertPeer(prefix, entry) }
            #expect(try map.peers() == entries)

            let replaced = PeerEncryptEntry(nodeID: 1, peerSPI: KeyID(4)!)
            try map.upsertPeer(IPPrefix("10.200.0.0/16")!, replaced)
            #expect(try map.peers()[IPPrefix("10.200.0.0/16")!] == replaced)
            #expect(try map.peers().count == entries.count)

            try map.deletePeer(IPPrefix("fd00:200::/32")!)
            try map.deletePeer(IPPrefix("fd00:200::/32")!)  // idempotent
            try map.deletePeer(IPPrefix("10.200.0.0/17")!)  // never present
            var expected = entries
            expected[IPPrefix("10.200.0.0/16")!] = replaced
            expected[IPPrefix("fd00:200::/32")!] = nil
            #expect(try map.peers() == expected)
        }
    }

    @Test("lists thousands of peers in batches, the same as one by one")
    func batchedListing() throws {
        guard Privileges.canCreateNamespaces else { return }
        try TestPinDirectory.with { pins in
            let map = try BPFDatapath(pinDirectory: pins.path)
            var entries: [IPPrefix: PeerEncryptEntry] = [:]
            for index in 0..<(BPFDatapath.readBatch * 2 + 123) {  // three batches, the last one partial
                let prefix = IPPrefix(address: .v4(0x0A00_0000 | UInt32(index) << 8), length: 24)!
                entries[prefix] = PeerEncryptEntry(nodeID: UInt16(index % 65_000 + 1), peerSPI: KeyID(UInt8(index % 15 + 1))!)
            }
            entries[IPPrefix("fd00:200::/48")!] = PeerEncryptEntry(nodeID: 7, peerSPI: KeyID(3)!)
            for (prefix, entry) in entries { try map.upsertPeer(prefix, entry) }
            #expect(try map.peers() == entries)
            let fds = map.object.withLock { ($0.peerV4MapFD, $0.peerV6MapFD) }
            var batched: [IPPrefix: PeerEncryptEntry] = [:]
            var oneByOne: [IPPrefix: PeerEncryptEntry] = [:]
            // The host kernel has batch operations on LPM tries; the fallback must agree with them.
            #expect(try BPFDatapath.readPeersBatched(mapFD: fds.0, family: .v4, into: &batched))
            #expect(try BPFDatapath.readPeersBatched(mapFD: fds.1, family: .v6, into: &batched))
            try BPFDatapath.readPeersOneByOne(mapFD: fds.0, family: .v4, into: &oneByOne)
            try BPFDatapath.readPeersOneByOne(mapFD: fds.1, family: .v6, into: &oneByOne)
            #expect(batched == entries)
            #expect(oneByOne == entries)
        }
    }

    @Test("rejects a new prefix when a family is full, naming the map", arguments: Implementation.allCases)
    func capacity(_ implementation: Implementation) throws {
        try implementation.withMap { map in
            for index in 0..<BPFDatapath.maxPeerPrefixes {
                let address = IPAddress.v4(0x0A00_0000 | UInt32(index))
                try map.upsertPeer(IPPrefix(host: address), PeerEncryptEntry(nodeID: 1, peerSPI: KeyID(1)!))
            }
            let error = #expect(throws: DatapathError.self) {
                try map.upsertPeer(IPPrefix("192.0.2.0/24")!, PeerEncryptEntry(nodeID: 1, peerSPI: KeyID(1)!))
            }
            #expect(error == .mapOperation(map: "peer_v4", operation: "update", key: "192.0.2.0/24", errno: ENOSPC))
            // Replacing an existing entry and the other family still work.
            try map.upsertPeer(IPPrefix("10.0.0.0/32")!, PeerEncryptEntry(nodeID: 2, peerSPI: KeyID(2)!))
            try map.upsertPeer(IPPrefix("fd00::/64")!, PeerEncryptEntry(nodeID: 3, peerSPI: KeyID(3)!))
            #expect(try map.peers().count == BPFDatapath.maxPeerPrefixes + 1)
        }
    }
}
