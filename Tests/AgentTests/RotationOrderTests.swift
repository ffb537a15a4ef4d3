import Agent
import Datapath
import IPsecPrimitives
import Keys
import Testing
import XFRM

/// The one promise, checked effect by effect on one node of a three-node cluster.
@Suite struct RotationOrderTests {
    private func index(_ log: [EffectLog.Effect], _ match: (EffectLog.Effect) -> Bool) -> Int? {
        log.firstIndex(where: match)
    }

    @Test func advertiseFollowsEveryAcknowledgedSAAndBPFFollowsAdvertise() async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        let node = cluster.node(1)
        node.log.clear()
        await node.dropKey(TestKeys.key(2))
        let log = node.log.all

        let advertise = try #require(index(log) { if case .publish(let u) = $0 { u.spi == KeyID(2) } else { false } })
        let bpf = try #require(index(log) { $0 == .setLocalSPI(KeyID(2)) })
        let newStateAdds = log.enumerated().filter {
            if case .xfrm(.addState(let s), _) = $0.element { DatapathLayout.decode(spi: s.spi)?.key == KeyID(2) } else { false }
        }
        // Two peers, one IN and one OUT SA each.
        #expect(newStateAdds.count == 4)
        #expect(newStateAdds.allSatisfy { $0.offset < advertise })
        #expect(newStateAdds.allSatisfy { if case .xfrm(_, let ok) = $0.element { ok } else { false } })
        let newPolicyAdds = log.enumerated().filter {
            if case .xfrm(.addPolicy(let p), _) = $0.element { p.mark.map { $0.value >> 12 & 0xF } == 2 } else { false }
        }
        #expect(newPolicyAdds.count == 2)
        #expect(newPolicyAdds.allSatisfy { $0.offset < advertise })
        #expect(advertise < bpf)
        // encryptSpi is published only after the map switched.
        let encryptPublish = try #require(index(log) { if case .publish(let u) = $0 { u.encryptSpi == KeyID(2) } else { false } })
        #expect(bpf < encryptPublish)
        #expect(cluster.drops().isEmpty)
    }

    @Test func failedSAInstallBlocksAdvertiseUntilRepaired() async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        let node = cluster.node(1)
        node.kernel.db.withLock { $0.failAddsTo = [cluster.node(3).local.underlay] }
        await node.dropKey(TestKeys.key(2))
        #expect(cluster.registry.record(node.name)?.spi == KeyID(1))
        #expect(try node.map.localSPI() == KeyID(1))
        #expect(await node.controller.status().phase == .xfrm)

        node.kernel.db.withLock { $0.failAddsTo = [] }
        await node.controller.tick()
        #expect(cluster.registry.record(node.name)?.spi == KeyID(2))
        #expect(try node.map.localSPI() == KeyID(2))
        #expect(cluster.drops().isEmpty)
    }

    @Test func invalidOrConflictingKeysChangeNothing() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(3))
        let node = cluster.node(1)
        let before = (node.kernel.states, node.kernel.policies, try node.map.peers())
        node.log.clear()

        struct Malformed: Error {}
        await node.controller.keyFileChanged(.failure(Malformed()))
        await node.dropKey(TestKeys.key(3, byte: 0x99))  // same key ID, other material
        let otherAlgorithm = IPsecKey(id: KeyID(4)!, algorithm: .aesGCM(keyBits: 256, icvBits: 128),
                                      encryptionKey: SecretBytes([UInt8](repeating: 1, count: 36)))
        await node.dropKey(otherAlgorithm)

        #expect(node.log.all.isEmpty)
        #expect(node.kernel.states == before.0)
        #expect(node.kernel.policies == before.1)
        #expect(try node.map.peers() == before.2)
        let status = await node.controller.status()
        #expect(status.currentKey == 3)
        #expect(status.lastError?.contains("algorithm must not change") == true)
        #expect(status.lastError?.contains(String(repeating: "99", count: 2)) == false)
    }

    @Test func sameKeyFileAgainIsANoOp() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(1))
        cluster.node(1).log.clear()
        await cluster.node(1).dropKey(TestKeys.key(1))
        #expect(cluster.node(1).log.all.isEmpty)
        #expect(await cluster.node(1).controller.status().lastError == nil)
    }
}
