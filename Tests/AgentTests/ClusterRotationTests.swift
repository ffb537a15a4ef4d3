import Agent
import Datapath
import IPsecPrimitives
import Keys
import Synchronization
import Testing
import TestSupport
import XFRM

/// Whole-cluster properties over many interleavings: after every single step, no packet between any two pods
/// would be dropped, and every rotation ends with exactly one key in use per peer.
@Suite struct ClusterRotationTests {
    /// Runs one rotation to `key` with key files arriving at random times and registry deliveries, ticks and
    /// reconciles in random order; checks the zero-drop invariant after every step.
    static func rotate(_ cluster: SimulatedCluster, to key: IPsecKey, rng: inout SeededRandom,
                       restart: (step: Int, node: Int)? = nil, lostAcks: (node: Int, untilStep: Int)? = nil,
                       maxSteps: Int = 400) async throws -> [String] {
        var pending = Set(cluster.nodes.indices)
        var violations: [String] = []
        for step in 0..<maxSteps {
            if let restart, restart.step == step { try await cluster.nodes[restart.node].restart() }
            if let lostAcks {
                let name = cluster.nodes[lostAcks.node].name
                cluster.registry.state.withLock { s in
                    if step < lostAcks.untilStep { s.acksLostFor.insert(name) } else { s.acksLostFor.remove(name) }
                }
            }
            let i = Int.random(in: cluster.nodes.indices, using: &rng)
            let node = cluster.nodes[i]
            switch Int.random(in: 0..<10, using: &rng) {
            case 0...2 where pending.contains(i):
                pending.remove(i)
                await node.dropKey(key)
            case 0...5:
                await node.deliver()
            case 6...7:
                cluster.clock.advance(by: .milliseconds(Int64.random(in: 100...900, using: &rng)))
                await node.controller.tick()
            default:
                await node.controller.reconcile()
            }
            violations += cluster.drops().map { "step \(step): \($0)" }
            if pending.isEmpty, await cluster.converged(on: key.id) { return violations }
        }
        for n in cluster.nodes where pending.contains(cluster.nodes.firstIndex { $0 === n }!) { await n.dropKey(key) }
        try await cluster.settle()
        violations += cluster.drops().map { "after settle: \($0)" }
        return violations
    }

    @Test func firstKeyConverges() async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        #expect(await cluster.converged(on: KeyID(1)!))
        #expect(cluster.drops().isEmpty)
    }

    @Test(arguments: 1...12)
    func rotationUnderRandomRegistryLagNeverDrops(seed: UInt64) async throws {
        var rng = SeededRandom(seed: seed)
        let cluster = SimulatedCluster(size: 4)
        try await cluster.start(key: TestKeys.key(1))
        let violations = try await Self.rotate(cluster, to: TestKeys.key(2), rng: &rng)
        #expect(violations.isEmpty, "\(violations.prefix(5))")
        #expect(await cluster.converged(on: KeyID(2)!))
    }

    /// A node's publishes land in the registry but it hears no acknowledgement (its timeout fires first): it
    /// must never publish an older `spi` afterwards, or peers that already reclaimed the old key's SAs would
    /// send with it again (found by the e2e's registry-outage scenario).
    @Test(arguments: 1...10)
    func rotationWithLostAcknowledgementsNeverDrops(seed: UInt64) async throws {
        var rng = SeededRandom(seed: seed)
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        let violations = try await Self.rotate(cluster, to: TestKeys.key(2), rng: &rng,
                                               lostAcks: (node: Int(seed % 3), untilStep: 60))
        #expect(violations.isEmpty, "\(violations.prefix(5))")
        #expect(await cluster.converged(on: KeyID(2)!))
    }

    @Test func sixteenRotationsWrapFifteenToOne() async throws {
        var rng = SeededRandom(seed: 99)
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        var key = KeyID(1)!
        for _ in 0..<16 {
            key = key.next
            let violations = try await Self.rotate(cluster, to: TestKeys.key(Int(key.rawValue)), rng: &rng)
            #expect(violations.isEmpty, "rotation to \(key): \(violations.prefix(3))")
            #expect(await cluster.converged(on: key), "rotation to \(key) did not converge")
        }
        #expect(key == KeyID(2)!)  // 1 → 2 … 15 → 1 → 2: sixteen steps, one wrap
    }

    @Test(arguments: Array(stride(from: 0, through: 60, by: 4)))
    func restartAtAnyStepConverges(step: Int) async throws {
        var rng = SeededRandom(seed: UInt64(1000 + step))
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(5))
        let violations = try await Self.rotate(cluster, to: TestKeys.key(6), rng: &rng, restart: (step, step % 3))
        #expect(violations.isEmpty, "\(violations.prefix(5))")
        #expect(await cluster.converged(on: KeyID(6)!))
    }

    @Test func restartAdoptsWithoutFlushing() async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        let node = cluster.node(2)
        node.log.clear()
        try await node.restart()
        await node.deliver()
        await node.controller.reconcile()
        let removals = node.log.all.filter {
            if case .xfrm(let r, _) = $0 {
                switch r {
                case .deleteState, .deletePolicy: return true
                default: return false
                }
            }
            if case .deletePeer = $0 { return true }
            return false
        }
        #expect(removals.isEmpty)
        #expect(cluster.drops().isEmpty)
        #expect(await cluster.converged(on: KeyID(1)!))
    }
}
