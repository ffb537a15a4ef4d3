import Agent
import Datapath
import IPsecPrimitives
import Keys
import Registry
import Synchronization
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

    /// An idle cluster is quiet: a peer's acknowledgement is not itself acknowledged (it was, and every pair of
    /// idle agents republished each other's records at the acknowledgement interval forever).
    @Test func idleClusterPublishesNothing() async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        for n in cluster.nodes { n.log.clear() }
        try await cluster.settle()
        for n in cluster.nodes { #expect(n.log.all.isEmpty, "\(n.name): \(n.log.all.prefix(3))") }
    }

    /// A key ID that peers would read as older (more than 7 steps ahead, or behind) is refused: mid-life against
    /// the held key, and after a restart against the advertised ID (the key material is gone, the ID is not).
    @Test func keyIDsOutOfOrderAreRefusedAndChangeNothing() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(1))
        let node = cluster.node(1)
        let before = (node.kernel.states, node.kernel.policies, try node.map.peers())
        node.log.clear()
        await node.dropKey(TestKeys.key(9))  // 8 steps
        #expect(node.log.all.isEmpty)
        var status = await node.controller.status()
        #expect(status.currentKey == 1)
        #expect(status.lastError?.contains("new key ID 9 is 8 steps after the current key ID 1") == true, "\(status.lastError ?? "")")

        // Restarted with a key file that went backwards (1 → 15): refused before anything is programmed.
        node.keyFile = TestKeys.key(15)
        try await node.restart()
        try await cluster.settle()
        let keyChanges = node.log.all.filter {
            switch $0 {
            case .xfrm(.addState, _), .xfrm(.deleteState, _), .xfrm(.deletePolicy, _), .deletePeer: return true
            case .publish(let update): return update.spi != KeyID(1)
            default: return false
            }
        }
        #expect(keyChanges.isEmpty, "\(keyChanges)")
        #expect((node.kernel.states, node.kernel.policies, try node.map.peers()) == before)
        #expect(cluster.registry.record(node.name)?.spi == KeyID(1))
        status = await node.controller.status()
        #expect(status.lastError?.contains("new key ID 15 is 14 steps after the current key ID 1") == true, "\(status.lastError ?? "")")

        // The next key in order is taken as usual.
        for n in cluster.nodes { await n.dropKey(TestKeys.key(2)) }
        try await cluster.settle()
        #expect(await cluster.converged(on: KeyID(2)!))
        #expect(cluster.drops().isEmpty)
    }
}
