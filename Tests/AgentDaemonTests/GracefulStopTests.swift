import Foundation
import TestSupport
import Testing

/// SIGTERM ends a running `ipsec-agent run` with exit status 0 (not by the 10 s escalation, which exits 1), in each
/// phase an operator can stop it in, well within the 2 s an operator is promised (each stop's time is printed).
/// The real binary, the embedded registry on loopback, a namespace of its own (the host kernel has no ESP; the
/// agent has no peers here, so it installs no SA).
@Suite(.serialized, .enabled(if: Privileges.canCreateNamespaces && AgentProcess.available, "needs root, ip netns and the built ipsec-agent"))
struct GracefulStopTests {
    /// A node's files: secret, credential, key file, config; the registry and the agent as child processes.
    final class Node: @unchecked Sendable {
        let directory: String
        let namespace: NetworkNamespace
        let registryPort = Int.random(in: 20_000...40_000)
        var registry: AgentProcess?
        /// Mutual TLS between agent and registry (certificates from `registry tls-init`).
        let tls: Bool

        init(tls: Bool = false) async throws {
            self.tls = tls
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("stop-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
            try FileManager.default.createDirectory(atPath: "\(directory)/keys", withIntermediateDirectories: true)
            namespace = try await NetworkNamespace.create(prefix: "stop")
            let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            try write("secret", secret)
            try write("credential", try await Shell.run(AgentProcess.binary, "registry", "credential", "--secret-file", "\(directory)/secret", "--node", "n1"))
            try await Shell.run(AgentProcess.binary, "key", "generate", "--spi", "1", "--out", "\(directory)/keys/keys")
            if tls {
                try await Shell.run(AgentProcess.binary, "registry", "tls-init", "--dir", "\(directory)/tls", "--server-name", "127.0.0.1", "--node", "n1")
            }
            let tlsFiles = "{ca: \(directory)/tls/ca.pem, certificate: \(directory)/tls/n1.pem, key: \(directory)/tls/n1-key.pem}"
            try write("config.yaml", """
                node: n1
                underlay: 192.0.2.1
                podCIDRs: [10.244.1.0/24]
                keyFile: \(directory)/keys/keys
                registry:
                  embedded: \(tls ? "https" : "http")://127.0.0.1:\(registryPort)
                  \(tls ? "tls: \(tlsFiles)" : "credentialFile: \(directory)/credential")
                bpfPinDirectory: /sys/fs/bpf/\(namespace.name)
                networkNamespace: \(namespace.name)
                adminListen: 127.0.0.1:\(registryPort + 1)
                """)
        }

        func write(_ name: String, _ text: String) throws {
            let path = "\(directory)/\(name)"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o600)
        }

        func startRegistry() async throws {
            let tlsArguments = tls ? ["--tls-cert", "\(directory)/tls/registry.pem", "--tls-key", "\(directory)/tls/registry-key.pem",
                                      "--client-ca", "\(directory)/tls/ca.pem"] : []
            let registry = try AgentProcess(["registry", "serve", "--listen", "127.0.0.1:\(registryPort)", "--data", "\(directory)/data",
                                             "--secret-file", "\(directory)/secret"] + tlsArguments, log: "\(directory)/registry.log")
            self.registry = registry
            #expect(try await registry.waitForLog("listening"), "\(registry.log)")
        }

        func startAgent() throws -> AgentProcess {
            try AgentProcess(["run", "--config", "\(directory)/config.yaml"], log: "\(directory)/agent.log")
        }

        func destroy() {
            registry?.kill9()
            namespace.destroy()
            _ = try? Shell.blockingStatus(["rm", "-rf", "/sys/fs/bpf/\(namespace.name)", directory])
        }
    }

    static func expectCleanStop(_ agent: AgentProcess, _ phase: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let stopped = try await agent.stop()
        if stopped == nil { _ = try await offThePool { agent.kill9() } }
        #expect(stopped != nil, "\(phase): still running 10 s after SIGTERM\n\(agent.log)", sourceLocation: sourceLocation)
        guard let stopped else { return }
        #expect(stopped.status == 0, "\(phase): exit status \(stopped.status)\n\(agent.log)", sourceLocation: sourceLocation)
        #expect(agent.log.contains("agent stopped"), "\(phase)\n\(agent.log)", sourceLocation: sourceLocation)
        // The operator's contract is "within 2 s" (systemd's TimeoutStopSec counts on it); the bound is doubled for a
        // loaded machine. It is a deadline, not a speed target: stops take milliseconds here.
        #expect(stopped.seconds < 4, "\(phase): SIGTERM took \(stopped.seconds) s", sourceLocation: sourceLocation)
        print("graceful stop, \(phase): \(String(format: "%.3f", stopped.seconds)) s")
    }

    @Test func beforeRegistrationWithTheRegistryUnreachable() async throws {
        let node = try await Node()
        defer { node.destroy() }
        let agent = try node.startAgent()
        #expect(try await agent.waitForLog("registry not reachable yet"), "\(agent.log)")
        try await Self.expectCleanStop(agent, "before registration")
    }

    @Test func registeredAndIdle() async throws {
        let node = try await Node()
        defer { node.destroy() }
        try await node.startRegistry()
        let agent = try node.startAgent()
        #expect(try await agent.waitForLog("rotation to key 1 complete"), "\(agent.log)")
        try await Self.expectCleanStop(agent, "registered, idle")
    }

    /// Over mutual TLS: the open TLS watch must not hold the stop (shutting its HTTP client down took 5 s).
    @Test func registeredOverMutualTLS() async throws {
        let node = try await Node(tls: true)
        defer { node.destroy() }
        try await node.startRegistry()
        let agent = try node.startAgent()
        #expect(try await agent.waitForLog("rotation to key 1 complete"), "\(agent.log)")
        try await Self.expectCleanStop(agent, "registered over mutual TLS")
    }

    @Test func registeredWithTheRegistryGone() async throws {
        let node = try await Node()
        defer { node.destroy() }
        try await node.startRegistry()
        let agent = try node.startAgent()
        #expect(try await agent.waitForLog("rotation to key 1 complete"), "\(agent.log)")
        _ = try await offThePool { node.registry?.kill9() }
        try await Task.sleep(for: .seconds(1))
        try await Self.expectCleanStop(agent, "registry unreachable after registration")
    }

    @Test func whileTheKeyFileIsBeingReplaced() async throws {
        let node = try await Node()
        defer { node.destroy() }
        try await node.startRegistry()
        let agent = try node.startAgent()
        #expect(try await agent.waitForLog("rotation to key 1 complete"), "\(agent.log)")
        let directory = node.directory
        for id in 2...3 { try await Shell.run(AgentProcess.binary, "key", "generate", "--spi", "\(id)", "--out", "\(directory)/key\(id)") }
        // Replace the key file by rename every few milliseconds, before, during and after the signal.
        let keys = try (2...3).map { try Data(contentsOf: URL(fileURLWithPath: "\(directory)/key\($0)")) }
        let churn = Task.detached {
            var id = 2
            while !Task.isCancelled {
                // Written in-process: a child process per write would block the test pool's two threads.
                FileManager.default.createFile(atPath: "\(directory)/keys/.new", contents: keys[id - 2], attributes: [.posixPermissions: 0o600])
                rename("\(directory)/keys/.new", "\(directory)/keys/keys")
                id = id == 2 ? 3 : 2
                try? await Task.sleep(for: .milliseconds(3))
            }
        }
        defer { churn.cancel() }
        try await Task.sleep(for: .milliseconds(300))
        try await Self.expectCleanStop(agent, "key file being replaced")
    }
}
