import IPsecPrimitives
import Testing
@testable import Datapath

/// The fake answers like the BPF program: the same scenarios `BPFProgramTests` runs in the kernel.
@Suite("InMemoryEncryptMap")
struct InMemoryEncryptMapTests {
    @Test("predicts the program's mark", arguments: MarkScenario.all)
    func marksLikeTheProgram(_ scenario: MarkScenario) throws {
        let map = InMemoryEncryptMap()
        try scenario.apply(to: map)
        #expect(map.mark(forDestination: scenario.destinationAddress) == scenario.expectedMark)
    }

    @Test("follows map changes: local SPI cleared, peer deleted")
    func followsMapChanges() throws {
        let map = InMemoryEncryptMap()
        let prefix = IPPrefix("fd00:200::/32")!
        let destination = IPAddress("fd00:200::1")!
        try map.setLocalSPI(KeyID(9))
        try map.upsertPeer(prefix, PeerEncryptEntry(nodeID: 0x12, peerSPI: KeyID(9)!))
        #expect(map.mark(forDestination: destination) == 0x0012_9E00)
        try map.setLocalSPI(nil)
        #expect(map.mark(forDestination: destination) == 0x0012_0E00)
        try map.deletePeer(prefix)
        #expect(map.mark(forDestination: destination) == nil)
    }
}
