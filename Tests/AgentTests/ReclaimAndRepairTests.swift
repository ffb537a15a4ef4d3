import Agent
import Datapath
import IPsecPrimitives
import Keys
import Registry
import Synchronization
import Testing
import XFRM

@Suite struct ReclaimAndRepairTests {
    private func inbound(_ node: SimNode, from peer: SimNode, key: Int) -> XFRMStateID {
        XFRMStateID(destination: node.local.underlay, spi: DatapathLayout.spi(key: KeyID(key)!, sender: peer.id))
    }

    @Test func oldInboundSAWaitsForThePeersAcknowledgement() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(1))
        let (a, b) = (cluster.node(1), cluster.node(2))
        // b learns key 2 and switches, but never hears that a advertised key 2.
        await a.dropKey(TestKeys.key(2))
        await b.dropKey(TestKeys.key(2))
        #expect(b.kernel.states[inbound(b, from: a, key: 2)] != nil)
        #expect(cluster.registry.record(b.name)?.encryptSpi == KeyID(2))
        // b still sends key 1 to a: its map holds a's old spi.
        #expect(cluster.egress(from: b, to: a) == .encrypted(KeyID(1)!))
        await a.deliver()
        // a sees b's encryptSpi = 2, but b has not acknowledged a's advertisement: the old IN SA stays.
        #expect(a.kernel.states[inbound(a, from: b, key: 1)] != nil)
        #expect(cluster.drops().isEmpty)

        await b.deliver()          // b applies a's record and acknowledges (xfrmRevision)
        cluster.clock.advance(by: .seconds(1))
        await b.controller.tick()
        await a.deliver()
        #expect(a.kernel.states[inbound(a, from: b, key: 1)] == nil)
        #expect(cluster.drops().isEmpty)
        try await cluster.settle()
        #expect(await cluster.converged(on: KeyID(2)!))
    }

    @Test func fallbackReclaimsOnlyWhenCountersStayStill() async throws {
        var settings = AgentController.Settings()
        settings.fallbackTimeout = .seconds(60)
        settings.quietWindow = .seconds(10)
        let cluster = SimulatedCluster(size: 2, settings: settings)
        try await cluster.start(key: TestKeys.key(1))
        let (a, b) = (cluster.node(1), cluster.node(2))
        // b's agent is stuck: it never loads key 2 and never acknowledges. a rotates alone.
        await a.dropKey(TestKeys.key(2))
        await a.deliver()
        let oldIn = inbound(a, from: b, key: 1)

        // Past the timeout but traffic still flows through the old SA: kept.
        for _ in 0..<8 {
            cluster.clock.advance(by: .seconds(10))
            a.kernel.addPackets(5, to: oldIn)
            await a.controller.reconcile()
            await a.controller.tick()
        }
        #expect(a.kernel.states[oldIn] != nil)

        // Traffic stops: after the quiet window it goes, and only the inbound direction.
        for _ in 0..<3 {
            cluster.clock.advance(by: .seconds(6))
            await a.controller.reconcile()
            await a.controller.tick()
        }
        #expect(a.kernel.states[oldIn] == nil)
        let peerRow = try #require(await a.controller.status().peers.first)
        #expect(peerRow.outboundKeys.contains(1))  // b still advertises 1: a keeps sending with it
        #expect(cluster.egress(from: a, to: b) == .encrypted(KeyID(1)!))
    }

    @Test func registryOutageRemovesNothing() async throws {
        var settings = AgentController.Settings()
        settings.peerRemovalGrace = .seconds(5)
        let cluster = SimulatedCluster(size: 3, settings: settings)
        try await cluster.start(key: TestKeys.key(1))
        let a = cluster.node(1)
        let before = (a.kernel.states, a.kernel.policies, try a.map.peers())
        cluster.registry.state.withLock { $0.down = true }
        for _ in 0..<10 {
            await a.deliver()
            cluster.clock.advance(by: .seconds(10))
            await a.controller.tick()
            await a.controller.reconcile()
        }
        #expect(a.kernel.states == before.0)
        #expect(a.kernel.policies == before.1)
        #expect(try a.map.peers() == before.2)
        #expect(await a.controller.status().registryConnected == false)
        #expect(cluster.drops().isEmpty)
    }

    @Test func departedPeerIsRemovedOnlyAfterGrace() async throws {
        var settings = AgentController.Settings()
        settings.peerRemovalGrace = .seconds(30)
        let cluster = SimulatedCluster(size: 3, settings: settings)
        try await cluster.start(key: TestKeys.key(1))
        let (a, gone) = (cluster.node(1), cluster.node(3))
        cluster.registry.state.withLock { s in
            s.revision += 1
            s.records[gone.name] = nil
        }
        await a.deliver()
        cluster.clock.advance(by: .seconds(20))
        await a.controller.tick()
        #expect(a.kernel.states.values.contains { $0.destination == gone.local.underlay })
        cluster.clock.advance(by: .seconds(15))
        await a.controller.tick()
        #expect(!a.kernel.states.values.contains { $0.destination == gone.local.underlay || $0.source == gone.local.underlay })
        #expect(!a.kernel.policies.values.contains { $0.selector.destination == gone.local.podCIDRs[0] || $0.selector.source == gone.local.podCIDRs[0] })
        #expect(try a.map.peers()[gone.local.podCIDRs[0]] == nil)
        #expect(cluster.egress(from: a, to: cluster.node(2)) == .encrypted(KeyID(1)!))
    }

    @Test func reconcileRepairsAFlushAndLeavesForeignObjects() async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        let a = cluster.node(1)
        let foreignState = XFRMState(source: IPAddress("203.0.113.1")!, destination: IPAddress("203.0.113.2")!, spi: 0x20001,
                                     reqid: 7, algorithm: .aead(name: "rfc4106(gcm(aes))", key: SecretBytes([1]), icvBits: 128))
        let foreignPolicy = XFRMPolicy(selector: XFRMSelector(source: IPPrefix("0.0.0.0/0")!, destination: IPPrefix("203.0.113.0/24")!),
                                       direction: .out, priority: 10, templates: [XFRMTemplate(reqid: 7)])
        let wanted = (a.kernel.states, a.kernel.policies)
        // `ip xfrm state flush` + `ip xfrm policy deleteall`, then someone else's objects appear.
        a.kernel.db.withLock { db in
            db.states = [foreignState.id: foreignState]
            db.policies = [foreignPolicy.id: foreignPolicy]
        }
        #expect(!cluster.drops().isEmpty)
        let report = await a.controller.reconcile()
        #expect(report.repairs["state"]?["add"] == wanted.0.count)
        #expect(report.repairs["policy"]?["add"] == wanted.1.count)
        #expect(report.errors == 0)
        #expect(a.kernel.states[foreignState.id] == foreignState)
        #expect(a.kernel.policies[foreignPolicy.id] == foreignPolicy)
        #expect(a.kernel.states.count == wanted.0.count + 1)
        #expect(cluster.drops().isEmpty)
        // A second pass has nothing to do.
        #expect(await a.controller.reconcile().totalRepairs == 0)
    }

    @Test func reconcileReplacesATamperedSA() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(1))
        let (a, b) = (cluster.node(1), cluster.node(2))
        let id = inbound(a, from: b, key: 1)
        a.kernel.db.withLock { db in
            db.states[id]?.algorithm = .aead(name: "rfc4106(gcm(aes))", key: SecretBytes([0xAB]), icvBits: 128)
        }
        #expect(!cluster.drops().isEmpty)
        let report = await a.controller.reconcile()
        #expect(report.repairs["state"]?["replace"] == 1)
        #expect(cluster.drops().isEmpty)
    }

    @Test func fingerprintMismatchBlocksTheSwitch() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(1))
        let (a, b) = (cluster.node(1), cluster.node(2))
        await a.dropKey(TestKeys.key(2))
        await b.dropKey(TestKeys.key(2, byte: 0x77))  // same ID, other key material
        try await cluster.settle()
        #expect(cluster.drops().isEmpty)
        #expect(cluster.egress(from: a, to: b) == .encrypted(KeyID(1)!))
        #expect(cluster.egress(from: b, to: a) == .encrypted(KeyID(1)!))
        #expect(try a.map.peers()[b.local.podCIDRs[0]]?.peerSPI == KeyID(1))
        let status = await a.controller.status()
        #expect(status.phase == .reclaim)
        #expect(status.keysInUse == [1, 2])
    }
}

@Suite struct SequenceResumeTests {
    @Test func flushedOutboundSAsResumePastTheirLastSequence() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(1))
        let (a, b) = (cluster.node(1), cluster.node(2))
        let outID = try #require(a.kernel.states.values.first { $0.mark != nil }).id
        let inID = try #require(a.kernel.states.values.first { $0.mark == nil }).id
        // Traffic moved the OUT SA's sequence; a reconcile pass sees it.
        a.kernel.db.withLock { $0.states[outID]?.outboundSequence = 5_000 }
        await a.controller.reconcile()
        // More traffic after that pass, then `ip xfrm state flush`.
        a.kernel.db.withLock { db in
            db.states[outID]?.outboundSequence = 9_000
            db.states = [:]
        }
        await a.controller.reconcile()
        let resumed = try #require(a.kernel.states[outID])
        #expect(resumed.outboundSequence == 5_000 + AgentController.sequenceJump)
        #expect(resumed.outboundSequence! > 9_000)
        #expect(a.kernel.states[inID]?.outboundSequence == nil)  // inbound SAs do not send
        #expect(cluster.drops().isEmpty)
        _ = b
    }
}
