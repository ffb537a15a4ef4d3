import Agent
@testable import AgentDaemon
import AsyncHTTPClient
import Datapath
import Foundation
import IPsecPrimitives
import Keys
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import Registry
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing
import XFRM

/// An in-memory XFRM database (this test needs no kernel).
final class MemoryKernel: XFRMKernel {
    let db = Mutex<(states: [XFRMStateID: XFRMState], policies: [XFRMPolicyID: XFRMPolicy])>(([:], [:]))
    func apply(_ requests: [XFRMRequest]) async -> [Result<Void, any Error>] {
        db.withLock { db in
            requests.map { r in
                switch r {
                case .addState(let s), .updateState(let s): db.states[s.id] = s
                case .deleteState(let id): db.states[id] = nil
                case .addPolicy(let p), .updatePolicy(let p): db.policies[p.id] = p
                case .deletePolicy(let id): db.policies[id] = nil
                }
                return .success(())
            }
        }
    }
    func ownedStates() async throws -> [XFRMState] { db.withLock { Array($0.states.values) } }
    func ownedPolicies() async throws -> [XFRMPolicy] { db.withLock { Array($0.policies.values) } }
    func state(_ id: XFRMStateID) async throws -> XFRMState? { db.withLock { $0.states[id] } }
    func policy(_ id: XFRMPolicyID) async throws -> XFRMPolicy? { db.withLock { $0.policies[id] } }
}

@Suite struct AdminEndpointTests {
    final class Publisher: RecordPublisher {
        let revision = Mutex<Int64>(0)
        func publish(_ record: NodeRecordUpdate) async throws -> Int64 { revision.withLock { $0 += 1; return $0 } }
    }

    static func get(_ port: Int, _ path: String) async throws -> (UInt, String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 4 << 20)
        return (response.status.code, String(buffer: body))
    }

    @Test func runningAgentServesHealthStatusTraceAndValidMetrics() async throws {
        let telemetry = TelemetryRefresher(registry: PrometheusCollectorRegistry(), xfrmStatPath: "/proc/net/xfrm_stat")
        let handle = AgentHandle()
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let kernel = MemoryKernel(), map = InMemoryEncryptMap()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = AdminServer(handle: handle, telemetry: telemetry, listen: ("127.0.0.1", 0), logger: quiet)
            .makeApplication(onListening: { portContinuation.yield($0) })
        let server = Task { try await app.run() }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())

        // Before start-up finished: alive, not ready.
        #expect(try await Self.get(port, "/healthz").0 == 200)
        #expect(try await Self.get(port, "/readyz").0 == 503)

        let key = IPsecKey(id: KeyID(4)!, algorithm: .aesGCM(keyBits: 128, icvBits: 128),
                           encryptionKey: SecretBytes([UInt8](repeating: 0xC3, count: 20)))
        let controller = AgentController(
            local: LocalNode(name: "n1", nodeID: 1, underlay: IPAddress("192.0.2.1")!, podCIDRs: [IPPrefix("10.244.1.0/24")!], bootID: "b1"),
            kernel: kernel, encryptMap: map, publisher: Publisher(), keyOperations: .standard, now: { .zero },
            logger: quiet, metrics: AgentMetrics(factory: telemetry.catalogFactory))
        try await controller.adopt(ownRecord: nil)
        await controller.peersChanged([NodeRecord(name: "n2", nodeID: 2, ipv4: IPAddress("192.0.2.2"), podCIDRs: [IPPrefix("10.244.2.0/24")!],
                                                  bootID: "b2", spi: KeyID(4), encryptSpi: KeyID(4), keyFingerprint: key.fingerprint, revision: 3)],
                                      connected: true)
        await controller.keyFileChanged(.success(key))
        handle.setController(controller)
        handle.update { $0.kernel = kernel; $0.encryptMap = map }

        #expect(try await Self.get(port, "/readyz").0 == 200)
        let (statusCode, status) = try await Self.get(port, "/status")
        #expect(statusCode == 200)
        let decoded = try JSONDecoder().decode(AgentStatus.self, from: Data(status.utf8))
        #expect(decoded.encryptKey == 4 && decoded.peers.first?.egressSpi == 4)
        #expect(!status.lowercased().contains("c3c3"))  // no key bytes

        let (traceCode, trace) = try await Self.get(port, "/trace?to=10.244.2.9")
        #expect(traceCode == 200)
        #expect(try JSONDecoder().decode(EgressTrace.self, from: Data(trace.utf8)).verdict.hasPrefix("encrypted with key 4"))
        #expect(try await Self.get(port, "/trace?to=banana").0 == 400)

        let (metricsCode, metrics) = try await Self.get(port, "/metrics")
        #expect(metricsCode == 200)
        #expect(metrics.contains("ipsec_local_key_id 4"))
        #expect(metrics.contains(#"ipsec_peers_by_advertised_key{key_id="4"} 1"#))
        #expect(metrics.contains(#"ipsec_owned_states{direction="in"} 1"#))
        #expect(metrics.contains("ipsec_rotation_phase_duration_seconds_bucket"))
        #expect(metrics.contains("ipsec_build_info"))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            Issue.record("promtool missing: run scripts/bootstrap")
            return
        }
        let (code, output) = try await Shell.status(["promtool", "check", "metrics"], input: metrics)
        #expect(code == 0, "promtool: \(output)")
    }
}
