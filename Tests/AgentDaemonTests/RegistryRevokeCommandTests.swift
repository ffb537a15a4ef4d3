import Foundation
import Testing
import TestSupport

/// `ipsec-agent registry revoke --certificate` against a running `registry serve` with mutual TLS, as an operator
/// runs them: the certificate is refused afterwards, and a certificate that names another node is not sent.
@Suite(.enabled(if: AgentProcess.available, "needs .build/debug/ipsec-agent (swift build)"), .timeLimit(.minutes(2)))
struct RegistryRevokeCommandTests {
    @Test func revokingACertificateLocksItOutAndChecksTheName() async throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("revoke-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func write(_ name: String, _ text: String) throws {
            try text.write(toFile: "\(directory)/\(name)", atomically: true, encoding: .utf8)
            chmod("\(directory)/\(name)", 0o600)
        }
        let binary = AgentProcess.binary
        try write("secret", (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined())
        try write("admin.cred", try await Shell.run(binary, "registry", "credential", "--secret-file", "\(directory)/secret", "--node", "_admin"))
        try await Shell.run(binary, "registry", "tls-init", "--dir", "\(directory)/tls", "--server-name", "127.0.0.1", "--node", "node-a", "--node", "ops")
        let port = Int.random(in: 20_000...40_000)
        let tls = "\(directory)/tls"
        let registry = try AgentProcess(
            ["registry", "serve", "--listen", "127.0.0.1:\(port)", "--data", "\(directory)/data", "--secret-file", "\(directory)/secret",
             "--tls-cert", "\(tls)/registry.pem", "--tls-key", "\(tls)/registry-key.pem", "--client-ca", "\(tls)/ca.pem"],
            log: "\(directory)/registry.log")
        defer { registry.kill9() }
        #expect(try await registry.waitForLog("listening"), "\(registry.log)")

        func list(as node: String) async throws -> String {
            try await Shell.run("curl", "-s", "--max-time", "10", "--cacert", "\(tls)/ca.pem", "--cert", "\(tls)/\(node).pem",
                                "--key", "\(tls)/\(node)-key.pem", "https://127.0.0.1:\(port)/v1/nodes")
        }
        func revoke(_ extra: [String]) async throws -> (Int32, String) {
            try await Shell.status([binary, "registry", "revoke", "--url", "https://127.0.0.1:\(port)", "--ca", "\(tls)/ca.pem",
                                    "--client-cert", "\(tls)/ops.pem", "--client-key", "\(tls)/ops-key.pem",
                                    "--admin-credential-file", "\(directory)/admin.cred"] + extra)
        }
        #expect(try await list(as: "node-a").contains(#""records":[]"#))
        // A certificate that names node-a is not revoked as ops's: refused before anything is sent.
        let (mismatch, mismatchOutput) = try await revoke(["--node", "ops", "--certificate", "\(tls)/node-a.pem"])
        #expect(mismatch != 0 && mismatchOutput.contains("names node-a, not --node ops"), "\(mismatchOutput)")
        #expect(try await list(as: "node-a").contains(#""records":[]"#))
        let (status, output) = try await revoke(["--node", "node-a", "--certificate", "\(tls)/node-a.pem"])
        #expect(status == 0 && output.contains("revoked the client certificate"), "\(output)")
        let refused = try await list(as: "node-a")
        #expect(refused.contains("has been revoked"), "\(refused)")
        #expect(try await list(as: "ops").contains(#""records":[]"#))  // other certificates are untouched
    }
}
