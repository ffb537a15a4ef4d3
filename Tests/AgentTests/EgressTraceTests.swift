import Agent
import IPsecPrimitives
import Keys
import Synchronization
import Testing

@Suite struct EgressTraceTests {
    @Test func explainsAnEncryptedPathAndAMissingSA() async throws {
        let cluster = SimulatedCluster(size: 2)
        try await cluster.start(key: TestKeys.key(15))
        let (a, b) = (cluster.node(1), cluster.node(2))
        let pod = IPAddress("10.244.2.7")!
        let ok = await a.controller.trace(to: pod, kernel: a.kernel, encryptMap: a.map)
        #expect(ok.peer == b.name)
        #expect(ok.chosenKey == 15)
        #expect(ok.spi == "0xf0001")
        #expect(ok.mark == "0x2fe00")
        #expect(ok.steps.allSatisfy { $0.ok })
        #expect(ok.verdict.hasPrefix("encrypted with key 15"))

        a.kernel.db.withLock { $0.states = [:] }
        let broken = await a.controller.trace(to: pod, kernel: a.kernel, encryptMap: a.map)
        #expect(broken.verdict == "dropped: missing OUT SA")
        #expect(broken.steps.last?.ok == false)

        let elsewhere = await a.controller.trace(to: IPAddress("10.99.0.1")!, kernel: a.kernel, encryptMap: a.map)
        #expect(elsewhere.peer == nil)
        #expect(elsewhere.verdict.hasPrefix("not encrypted"))
    }
}
