import IPsecPrimitives
import Registry
import Testing

@testable import Agent

/// An agent refuses a peer record that claims what is not that peer's, whatever the registry says: the datapath
/// keeps the peer's last good state, and a new peer with such a record gets nothing.
@Suite struct PeerClaimTests {
    static func datapath(_ node: SimNode) throws -> some Equatable {
        [String(describing: node.kernel.states), String(describing: node.kernel.policies), String(describing: try node.map.peers())]
    }

    @Test(arguments: [
        ("0.0.0.0/0", "is a default route"),
        ("10.0.0.0/8", "is broader than /16"),
        ("10.244.1.0/24", "overlaps 10.244.1.0/24, which belongs to node node-1"),  // node 1's own pods
        ("10.244.1.128/25", "overlaps 10.244.1.0/24, which belongs to node node-1"),
        ("10.244.3.0/24", "overlaps 10.244.3.0/24, which belongs to node node-3"),  // another peer's pods
        ("192.0.2.0/24", "contains 192.0.2.1, the underlay address of node node-1"),
    ])
    func forgedPodCIDRsLeaveTheDatapathAlone(cidr: String, problem: String) async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        let node = cluster.node(1)
        let before = try Self.datapath(node)
        var forged = try #require(cluster.registry.record("node-2"))
        forged.podCIDRs = [IPPrefix(cidr)!]
        cluster.registry.put(forged)
        await node.deliver()
        await node.controller.tick()
        #expect(try Self.datapath(node) == before)
        let status = await node.controller.status()
        #expect(status.lastError?.contains("peer record node-2 refused: podCIDRs: \(cidr) \(problem)") == true, "\(status.lastError ?? "nil")")
        #expect(cluster.drops().filter { $0.hasPrefix("node-1") }.isEmpty)

        // The real record again: accepted, nothing to change.
        forged.podCIDRs = [IPPrefix("10.244.2.0/24")!]
        cluster.registry.put(forged)
        await node.deliver()
        #expect(try Self.datapath(node) == before)
    }

    @Test func aNewPeerStealingAnUnderlayGetsNothing() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(1))
        let node = cluster.node(1)
        let before = try Self.datapath(node)
        cluster.registry.put(NodeRecord(name: "intruder", nodeID: 9, ipv4: IPAddress("192.0.2.2"), podCIDRs: [IPPrefix("10.99.0.0/24")!],
                                        bootID: "x", spi: KeyID(1), encryptSpi: KeyID(1)))
        await node.deliver()
        #expect(try Self.datapath(node) == before)
        #expect(await node.controller.status().peers.map(\.name) == ["node-2"])
        #expect(await node.controller.status().lastError?.contains("ipv4: 192.0.2.2 is the underlay address of node node-2") == true)
    }

    @Test func ofTwoRecordsClaimingOnePrefixTheEarlierHoldsIt() async throws {
        let cluster = SimulatedCluster(size: 3)
        try await cluster.start(key: TestKeys.key(1))
        // node-3 moves onto node-2's prefix: node-2 stored it first, so node-3 keeps its old (good) record.
        var moved = try #require(cluster.registry.record("node-3"))
        moved.podCIDRs = [IPPrefix("10.244.2.0/25")!]
        cluster.registry.put(moved)
        try await cluster.settle()
        let peers = await cluster.node(1).controller.status().peers
        #expect(peers.count == 2)
        #expect(cluster.drops().isEmpty)
        #expect(await cluster.converged(on: KeyID(1)!))
    }
}
