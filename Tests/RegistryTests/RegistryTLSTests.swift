import Foundation
import IPsecPrimitives
import NIOSSL
import Registry
import RegistryServer
import Testing

/// TLS between the embedded registry and its clients, with certificates from `RegistryCertificateAuthority`
/// (what `ipsec-agent registry tls-init` writes).
@Suite(.timeLimit(.minutes(2))) struct RegistryTLSTests {
    /// A CA, a server certificate for 127.0.0.1 and client certificates for node-a and node-b, as PEM files.
    struct Files {
        let directory = TestRegistryServer.makeDirectory()
        init(nodes: [String] = ["node-a", "node-b"]) throws {
            let ca = try RegistryCertificateAuthority()
            try write("ca.pem", try ca.certificatePEM)
            let server = try ca.issue(commonName: "registry", dnsNames: ["localhost"], ipAddresses: [IPAddress("127.0.0.1")!])
            try write("registry.pem", server.certificatePEM)
            try write("registry-key.pem", server.keyPEM)
            for node in nodes {
                let issued = try ca.issue(commonName: node, dnsNames: [node], ipAddresses: [])
                try write("\(node).pem", issued.certificatePEM)
                try write("\(node)-key.pem", issued.keyPEM)
            }
        }
        func path(_ name: String) -> String { "\(directory)/\(name)" }
        func write(_ name: String, _ text: String) throws {
            try text.write(toFile: path(name), atomically: true, encoding: .utf8)
            chmod(path(name), 0o600)
        }
        func serverTLS(mutual: Bool = false) throws -> TLSConfiguration {
            try RegistryTLS.server(certificate: path("registry.pem"), key: path("registry-key.pem"), clientCA: mutual ? path("ca.pem") : nil)
        }
        func client(_ name: String, baseURL: String, ca: String? = nil, certificate: Bool = false, credential: String = "",
                    timeout: Duration = .seconds(30)) throws
            -> (EmbeddedRegistryClient, RegistryHTTPConnections)
        {
            let tls = try RegistryTLS.client(ca: ca ?? path("ca.pem"), certificate: certificate ? path("\(name).pem") : nil,
                                             key: certificate ? path("\(name)-key.pem") : nil)
            let connections = RegistryHTTPConnections(tls: tls)
            return (EmbeddedRegistryClient(baseURL: baseURL, nodeName: name, credential: credential, connections: connections,
                                           requestTimeout: timeout), connections)
        }
    }

    static func record(_ name: String) -> NodeRecord {
        NodeRecord(name: name, ipv4: ownClaims(of: name).underlay, podCIDRs: [ownClaims(of: name).pods], bootID: "b", spi: KeyID(1))
    }

    /// The connection pools a test made, shut down when it ends — also when it throws: a pool dropped without a
    /// shutdown traps, which would hide the test's own failure behind a crash of the whole run.
    final class Pools: @unchecked Sendable {
        private var pools: [RegistryHTTPConnections] = []
        func keep(_ made: (EmbeddedRegistryClient, RegistryHTTPConnections)) -> EmbeddedRegistryClient {
            pools.append(made.1)
            return made.0
        }
        var last: RegistryHTTPConnections { pools.last! }
        static func with(_ body: (Pools) async throws -> Void) async throws {
            let pools = Pools()
            do { try await body(pools) } catch {
                for pool in pools.pools { try? await pool.shutdown() }
                throw error
            }
            for pool in pools.pools { try await pool.shutdown() }
        }
    }

    @Test func aClientTrustingAnotherCAIsRefusedTheRightOneServed() async throws {
        let files = try Files()
        let stranger = try Files(nodes: [])
        defer { try? FileManager.default.removeItem(atPath: files.directory); try? FileManager.default.removeItem(atPath: stranger.directory) }
        try await TestRegistryServer.with(tls: try files.serverTLS()) { server in
            try await Pools.with { pools in
                #expect(server.baseURL.hasPrefix("https://"))
                let credential = TestRegistryServer.credentials.credential(for: "node-a")
                let wrong = pools.keep(try files.client("node-a", baseURL: server.baseURL, ca: stranger.path("ca.pem"), credential: credential, timeout: .seconds(5)))
                await #expect(throws: (any Error).self) { try await wrong.list() }
                let right = pools.keep(try files.client("node-a", baseURL: server.baseURL, credential: credential))
                _ = try await right.publish(Self.record("node-a"))
                #expect(try await right.list().records.map(\.name) == ["node-a"])
            }
        }
    }

    @Test func withMutualTLSTheCertificateIsTheIdentity() async throws {
        let files = try Files()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        try await TestRegistryServer.with(tls: try files.serverTLS(mutual: true)) { server in
            try await Pools.with { pools in
                // node-a's certificate, no bearer credential: it may write node-a …
                let a = pools.keep(try files.client("node-a", baseURL: server.baseURL, certificate: true))
                let poolA = pools.last
                _ = try await a.publish(Self.record("node-a"))
                // … but not node-b, even with node-b's valid bearer credential in the request.
                let asB = pools.keep(try files.client("node-b", baseURL: server.baseURL, credential: TestRegistryServer.credentials.credential(for: "node-b"), timeout: .seconds(5)))
                await #expect(throws: (any Error).self) { try await asB.list() }  // no certificate: the handshake fails
                let b = EmbeddedRegistryClient(baseURL: server.baseURL, nodeName: "node-b", credential: TestRegistryServer.credentials.credential(for: "node-b"),
                                               connections: poolA, requestTimeout: .seconds(30))
                do {
                    _ = try await b.publish(Self.record("node-b"))
                    Issue.record("node-a's certificate wrote node-b")
                } catch {
                    #expect("\(error)".contains("the client certificate names node-a"), "\(error)")
                }
                #expect(try await a.list().records.map(\.name) == ["node-a"])
            }
        }
    }
}
