import Agent
import AgentDaemon
import Datapath
import IPsecPrimitives
import Keys
import Logging
import Registry
import Synchronization
import TestSupport
import Testing
import XFRM

/// The controller over the real netlink client in a fresh namespace. The host kernel has no ESP, so SAs are
/// kept in memory (`PoliciesOnlyKernel`); every policy is in the kernel.
@Suite(.enabled(if: Privileges.canCreateNamespaces, "needs root and ip netns"))
struct HostReconcileTests {
    final class Publisher: RecordPublisher {
        let revision = Mutex<Int64>(0)
        func publish(_ record: NodeRecordUpdate) async throws -> Int64 { revision.withLock { $0 += 1; return $0 } }
    }

    static func key(_ id: Int) -> IPsecKey {
        IPsecKey(id: KeyID(id)!, algorithm: .aesGCM(keyBits: 128, icvBits: 128),
                 encryptionKey: SecretBytes([UInt8](repeating: UInt8(id), count: 20)))
    }

    /// With the kernel's default thresholds (policies on the inexact lists) and with the agent's (hashed).
    @Test(arguments: [false, true])
    func reconcileRepairsDeletedPoliciesAndLeavesForeignOnes(hashed: Bool) async throws {
        try await NetworkNamespace.with(prefix: "reconcile") { ns in
            let adapter = XFRMClientKernel(client: try XFRMClient(networkNamespacePath: ns.path))
            if hashed {
                let (before, after) = try await adapter.hashPolicies(podCIDRs: [IPPrefix("10.244.1.0/24")!])
                #expect(before == .kernelDefault)
                #expect(after.ipv4 == .init(local: 0, remote: 24) && after.ipv6 == before.ipv6)
                #expect(try await ns.run("ip", "-s", "-s", "xfrm", "policy", "count").contains("IPv4 thresholds: local 0 remote 24"))
                // Idempotent: a restarted agent finds them set.
                let again = try await adapter.hashPolicies(podCIDRs: [IPPrefix("10.244.1.0/24")!])
                #expect(again.before == again.after)
            }
            let kernel = PoliciesOnlyKernel(adapter)
            let local = LocalNode(name: "n1", nodeID: 1, underlay: IPAddress("192.0.2.1")!,
                                  podCIDRs: [IPPrefix("10.244.1.0/24")!], bootID: "b1")
            let controller = AgentController(
                local: local, kernel: kernel, encryptMap: InMemoryEncryptMap(), publisher: Publisher(),
                keyOperations: .standard, now: { .zero },
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            let peers = (2...4).map { i in
                NodeRecord(name: "n\(i)", nodeID: UInt16(i), ipv4: IPAddress("192.0.2.\(i)"),
                           podCIDRs: [IPPrefix("10.244.\(i).0/24")!], bootID: "b\(i)", spi: KeyID(1), encryptSpi: KeyID(1),
                           keyFingerprint: Self.key(1).fingerprint, revision: 1)
            }
            try await controller.adopt(ownRecord: nil)
            await controller.peersChanged(peers, connected: true)
            await controller.keyFileChanged(.success(Self.key(1)))
            #expect(await controller.status().encryptKey == 1)

            func kernelPolicies() async throws -> [String] {
                try await ns.run("ip", "xfrm", "policy", "show").split(separator: "\n").filter { $0.hasPrefix("src") }.map(String.init)
            }
            // 3 peers × (OUT + IN + FWD) + 2 drop policies, all in the kernel.
            let programmed = try await kernelPolicies()
            #expect(programmed.count == 11)

            // An operator wipes every policy, then someone else installs one of their own.
            try await ns.run("ip", "xfrm", "policy", "deleteall")
            try await ns.run("ip", "xfrm", "policy", "add", "src", "198.51.100.0/24", "dst", "198.51.100.0/24", "dir", "out",
                       "priority", "10", "action", "block")
            let report = await controller.reconcile()
            #expect(report.repairs["policy"]?["add"] == 11)
            #expect(report.errors == 0)
            let repaired = try await kernelPolicies()
            #expect(repaired.count == 12)
            #expect(Set(programmed).isSubset(of: Set(repaired)))
            #expect(repaired.contains { $0.contains("198.51.100.0/24") })
            // Nothing left to do, and the foreign policy survives further passes.
            #expect(await controller.reconcile().totalRepairs == 0)
            #expect(try await kernelPolicies().contains { $0.contains("198.51.100.0/24") })
        }
    }
}
