import Foundation
import IPsecPrimitives
import Registry
import RegistryServer
import Testing

/// `RegistryClient` over the real embedded server (real clock, short backoff): the agent's path end to end.
@Suite(.timeLimit(.minutes(1))) struct RegistryClientOverServerTests {
    @Test func peersSurviveAServerRestartAndTheRecordIsRepublished() async throws {
        let directory = TestRegistryServer.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fastBackoff = ReconnectStateMachine.Configuration(minBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))

        let (port, baseURL) = try await TestRegistryServer.with(directory: directory) { server in
            (server.port, server.baseURL)
        }
        let clientA = RegistryClient(
            registry: TestRegistryServer.client("node-a", baseURL: baseURL), nodeName: "node-a", backoff: fastBackoff)
        let clientB = RegistryClient(
            registry: TestRegistryServer.client("node-b", baseURL: baseURL), nodeName: "node-b", backoff: fastBackoff)
        var updatesA = clientA.updates.makeAsyncIterator()
        let runA = Task { await clientA.run() }
        let runB = Task { await clientB.run() }
        defer {
            runA.cancel()
            runB.cancel()
        }

        try await TestRegistryServer.with(directory: directory, port: port) { _ in
            let a = try await clientA.publish(NodeRecord(name: "node-a", spi: KeyID(1)))
            let b = try await clientB.publish(NodeRecord(name: "node-b", spi: KeyID(1)))
            #expect(a.nodeID != b.nodeID)
            _ = await updatesA.collect { $0.peerNames == ["node-b"] }
            _ = try await clientB.publish(NodeRecord(name: "node-b", spi: KeyID(2)))
            _ = await updatesA.collect { if case .peers(let p) = $0 { p["node-b"]?.spi == KeyID(2) } else { false } }
        }
        // Server down: node-a reports the outage but keeps node-b.
        let outage = await updatesA.collect { $0.isUnreachable }
        #expect(outage.compactMap(\.peerNames).allSatisfy { $0 == ["node-b"] })
        #expect(await clientA.peers["node-b"]?.spi == KeyID(2))

        try await TestRegistryServer.with(directory: directory, port: port) { server in
            _ = await updatesA.collect { $0.isConnected }
            #expect(await clientA.peers["node-b"]?.spi == KeyID(2))
            #expect(await clientA.reconnectCount >= 1)
            // node-a's remembered record is in the registry again (it was also persisted).
            let stored = try await server.client("node-a").list().records.first { $0.name == "node-a" }
            #expect(stored?.spi == KeyID(1))
        }
    }
}
