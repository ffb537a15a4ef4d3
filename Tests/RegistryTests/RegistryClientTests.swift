import IPsecPrimitives
import Registry
import Testing

@Suite(.timeLimit(.minutes(1))) struct RegistryClientTests {
    private func peer(_ name: String, spi: UInt8 = 1) -> NodeRecord {
        NodeRecord(name: name, ipv4: IPAddress("10.0.0.\(name.count)"), spi: KeyID(spi))
    }

    private func makeClient(_ registry: InMemoryNodeRegistry, _ clock: ManualClock) -> RegistryClient {
        RegistryClient(
            registry: registry, nodeName: "node-1", leaseTTL: .seconds(30),
            backoff: .init(jitter: 0.2), clock: clock, random: { 0 })
    }

    @Test func listsThenWatchesAndExcludesItself() async throws {
        let registry = InMemoryNodeRegistry()
        await registry.seed(peer("peer-a"))
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var updates = client.updates.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }

        let acknowledged = try await client.publish(NodeRecord(name: "node-1", spi: KeyID(3)))
        #expect(acknowledged.nodeID != 0)
        #expect(await registry.record(named: "node-1")?.spi == KeyID(3))
        _ = await updates.collect { $0.isConnected }
        #expect(await client.peers.keys.sorted() == ["peer-a"])

        await registry.seed(peer("peer-b"))
        let seen = await updates.collect { $0.peerNames == ["peer-a", "peer-b"] }
        #expect(seen.allSatisfy { $0.peerNames?.contains("node-1") != true })
        await registry.delete(name: "peer-a")
        _ = await updates.collect { $0.peerNames == ["peer-b"] }
        #expect(await client.watchEventCount >= 2)
        #expect(await client.reconnectCount == 0)
    }

    /// A consumer busy while many updates arrive gets one view for all of them (the agent makes one pass over
    /// every peer per view), and then the next change's view at once, not the backlog's stale ones.
    @Test func viewsCoalesceTheUpdatesQueuedWhileTheConsumerIsBusy() async throws {
        let registry = InMemoryNodeRegistry()
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var views = client.views.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }
        _ = try await client.publish(NodeRecord(name: "node-1", spi: KeyID(3)))
        var view = await views.next()
        while view?.connectionState != .connected { view = await views.next() }

        // 100 peers arrive while the consumer reads nothing: 100 updates queue up.
        for i in 0..<100 { await registry.seed(peer("peer-\(i)")) }
        while await client.peers.count < 100 { try await Task.sleep(for: .milliseconds(5)) }
        let covered = await views.next()
        #expect(covered?.peers.count == 100)
        #expect(covered?.connectionState == .connected)

        // The 99 updates still queued are covered by that view: the next view is the next change's.
        await registry.seed(peer("peer-new"))
        let next = await views.next()
        #expect(next?.peers.count == 101)
        #expect(next?.peers["peer-new"] != nil)
        #expect((next?.version ?? 0) > (covered?.version ?? .max))
    }

    @Test func backsOffOneTwoFourEightEightThenResetsAfterAHealthyPeriod() async throws {
        let registry = InMemoryNodeRegistry()
        await registry.failNextCalls(5)
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var updates = client.updates.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }

        var delays: [Duration] = []
        for _ in 0..<5 {
            await clock.waitForSleepers(1)
            let pending = clock.pendingDelays
            #expect(pending.count == 1)
            delays.append(pending[0])
            // Just before the deadline nothing happens…
            clock.advance(by: pending[0] - .milliseconds(1))
            #expect(clock.pendingDelays == [.milliseconds(1)])
            clock.advance(by: .milliseconds(1))
        }
        #expect(delays == [1, 2, 4, 8, 8].map { Duration.seconds($0) })
        _ = await updates.collect { $0.isConnected }
        #expect(await client.reconnectCount == 5)
        #expect(await registry.listCount == 6)

        // Healthy for 8 s (the current backoff), then the connection drops: the backoff is back to 1 s.
        await clock.waitForSleepers(1)  // the session's heartbeat timer
        clock.advance(by: .seconds(8))
        await registry.waitUntilWatched()
        await registry.endWatches()
        _ = await updates.collect { $0.isUnreachable }
        await clock.waitForSleepers(1)
        #expect(clock.pendingDelays == [.seconds(1)])
    }

    @Test func flappingConnectionKeepsDoubling() async throws {
        let registry = InMemoryNodeRegistry()
        await registry.failNextCalls(2)
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var updates = client.updates.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }
        for expected in [1, 2] {
            await clock.waitForSleepers(1)
            #expect(clock.pendingDelays == [.seconds(expected)])
            clock.advance(by: .seconds(expected))
        }
        _ = await updates.collect { $0.isConnected }
        // Drops at once (up 0 s < backoff 2 s): the next wait doubles to 4 s.
        await registry.waitUntilWatched()
        await registry.endWatches()
        _ = await updates.collect { $0.isUnreachable }
        await clock.waitForSleepers(1)
        #expect(clock.pendingDelays == [.seconds(4)])
    }

    @Test func keepsLastKnownPeersWhileUnreachableAndRelistsOnReconnect() async throws {
        let registry = InMemoryNodeRegistry()
        await registry.seed(peer("peer-a"))
        await registry.seed(peer("peer-b"))
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var updates = client.updates.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }
        _ = try await client.publish(NodeRecord(name: "node-1", spi: KeyID(2)))
        _ = await updates.collect { $0.isConnected }

        await registry.waitUntilWatched()
        await registry.failNextCalls(3)
        await registry.endWatches()
        let outage = await updates.collect { $0.isUnreachable }
        #expect(outage.compactMap(\.peerNames).isEmpty)
        // peer-b leaves while we cannot see the registry.
        await registry.delete(name: "peer-b")
        // Three failed attempts (1 s, 2 s, 4 s), the fourth (after 8 s) succeeds.
        for _ in 0..<4 {
            await clock.waitForSleepers(1)
            #expect(await client.peers.keys.sorted() == ["peer-a", "peer-b"])
            if case .unreachable = await client.connectionState {} else { Issue.record("expected unreachable") }
            clock.advance(by: clock.pendingDelays[0])
        }
        let recovery = await updates.collect { $0.isConnected }
        // Before reconnecting, no update ever dropped peer-b; the fresh list then is authoritative.
        #expect(recovery.compactMap(\.peerNames) == [["peer-a"]])
        #expect(await client.peers.keys.sorted() == ["peer-a"])
        // The remembered record was published again on reconnect.
        #expect(await registry.publishCount >= 2)
        #expect(await registry.record(named: "node-1")?.spi == KeyID(2))
        #expect(await client.reconnectCount == 4)
    }

    @Test func publishDuringOutageReturnsOnceReconnectedAndAcknowledged() async throws {
        let registry = InMemoryNodeRegistry()
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var updates = client.updates.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }
        _ = await updates.collect { $0.isConnected }
        await registry.waitUntilWatched()
        await registry.failNextCalls(2)
        await registry.endWatches()
        _ = await updates.collect { $0.isUnreachable }

        let publish = Task { try await client.publish(NodeRecord(name: "node-1", spi: KeyID(7))) }
        // The run loop's reconnect attempt fails too (second injected failure); then it succeeds.
        while await registry.publishCount < 1 { await Task.yield() }
        #expect(await registry.record(named: "node-1") == nil)
        await clock.waitForSleepers(1)
        clock.advance(by: clock.pendingDelays[0])
        await clock.waitForSleepers(1)
        clock.advance(by: clock.pendingDelays[0])
        let acknowledged = try await publish.value
        #expect(acknowledged.spi == KeyID(7))
        #expect(acknowledged.nodeID != 0)
        #expect(await registry.record(named: "node-1") == acknowledged)
    }

    @Test func publishOfARefusedRecordThrowsAtOnce() async throws {
        let registry = InMemoryNodeRegistry()
        let client = makeClient(registry, ManualClock())
        var bad = NodeRecord(name: "node-1")
        bad.podCIDRs = (0..<65).map { IPPrefix("10.3.\($0).0/24")! }
        await #expect(throws: RegistryError.self) { try await client.publish(bad) }
        await #expect(throws: RegistryError.self) { try await client.publish(NodeRecord(name: "node-2")) }
        #expect(await registry.record(named: "node-1") == nil)
        #expect(await registry.record(named: "node-2") == nil)
    }

    @Test func resyncListsAgainWithoutReconnecting() async throws {
        let registry = InMemoryNodeRegistry()
        await registry.seed(peer("peer-a"))
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var updates = client.updates.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }
        _ = await updates.collect { $0.isConnected }

        await registry.waitUntilWatched()
        await registry.forceResync()
        await registry.seed(peer("peer-c"))
        _ = await updates.collect { $0.peerNames == ["peer-a", "peer-c"] }
        while await client.resyncCount < 1 { await Task.yield() }
        #expect(await client.reconnectCount == 0)
        #expect(await client.connectionState == .connected)
        #expect(await registry.listCount == 2)
    }

    @Test func heartbeatsEveryThirdOfTheLease() async throws {
        let registry = InMemoryNodeRegistry()
        let clock = ManualClock()
        let client = makeClient(registry, clock)
        var updates = client.updates.makeAsyncIterator()
        let run = Task { await client.run() }
        defer { run.cancel() }
        _ = try await client.publish(NodeRecord(name: "node-1"))
        _ = await updates.collect { $0.isConnected }
        await clock.waitForSleepers(1)
        #expect(clock.pendingDelays == [.seconds(10)])
        clock.advance(by: .seconds(10))
        await clock.waitForSleepers(1)
        #expect(await registry.heartbeatCount == 1)

        // A heartbeat refused because the lease expired ends the session; reconnecting publishes again.
        await registry.expireLease(of: "node-1")
        _ = await updates.collect { $0.isUnreachable }
        await clock.waitForSleepers(1)
        clock.advance(by: clock.pendingDelays[0])
        _ = await updates.collect { $0.isConnected }
        #expect(await registry.record(named: "node-1") != nil)
    }
}
