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
        let ca: RegistryCertificateAuthority
        init(nodes: [String] = ["node-a", "node-b"]) throws {
            ca = try RegistryCertificateAuthority()
            try write("ca.pem", try ca.certificatePEM)
            let server = try ca.issue(commonName: "registry", dnsNames: ["localhost"], ipAddresses: [IPAddress("127.0.0.1")!])
            try write("registry.pem", server.certificatePEM)
            try write("registry-key.pem", server.keyPEM)
            for node in nodes { try issue(node) }
        }
        /// (Re-)issues `node`'s client certificate as NODE.pem and NODE-key.pem; returns its SHA-256.
        @discardableResult
        func issue(_ node: String) throws -> String {
            let issued = try ca.issue(commonName: node, dnsNames: [node], ipAddresses: [])
            try write("\(node).pem", issued.certificatePEM)
            try write("\(node)-key.pem", issued.keyPEM)
            return try RegistryCertificateAuthority.fingerprintAndNodeName(ofPEM: issued.certificatePEM).sha256
        }
        func path(_ name: String) -> String { "\(directory)/\(name)" }
        func write(_ name: String, _ text: String) throws {
            try text.write(toFile: path(name), atomically: true, encoding: .utf8)
            chmod(path(name), 0o600)
        }
        func serverTLS(mutual: Bool = false) throws -> TLSConfiguration {
            try RegistryTLS.server(certificate: path("registry.pem"), key: path("registry-key.pem"), clientCA: mutual ? path("ca.pem") : nil)
        }
        /// A client as `name`; with `certificate`, presenting `certificateOf`'s client certificate (default: `name`'s).
        func client(_ name: String, baseURL: String, ca: String? = nil, certificate: Bool = false, certificateOf: String? = nil,
                    credential: String = "", timeout: Duration = .seconds(30)) throws
            -> (EmbeddedRegistryClient, RegistryHTTPConnections)
        {
            let holder = certificateOf ?? name
            let tls = try RegistryTLS.client(ca: ca ?? path("ca.pem"), certificate: certificate ? path("\(holder).pem") : nil,
                                             key: certificate ? path("\(holder)-key.pem") : nil)
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

    /// The admin revokes one client certificate of node-a (mutual TLS, where the certificate is the credential):
    /// it is refused at once and node-a's record deleted, a certificate issued to node-a afterwards is accepted,
    /// node-b is untouched, and the revocation survives a registry restart.
    @Test func aRevokedCertificateIsRefusedAndAReissuedOneAccepted() async throws {
        let files = try Files()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let directory = TestRegistryServer.makeDirectory()
        let old = try RegistryCertificateAuthority.fingerprintAndNodeName(ofPEM: String(contentsOfFile: files.path("node-a.pem"), encoding: .utf8))
        #expect(old.nodeName == "node-a")
        try await TestRegistryServer.with(directory: directory, tls: try files.serverTLS(mutual: true)) { server in
            try await Pools.with { pools in
                let a = pools.keep(try files.client("node-a", baseURL: server.baseURL, certificate: true))
                let b = pools.keep(try files.client("node-b", baseURL: server.baseURL, certificate: true))
                _ = try await a.publish(Self.record("node-a"))
                _ = try await b.publish(Self.record("node-b"))
                // The admin: its credential, through the handshake with any certificate the registry trusts.
                let admin = pools.keep(try files.client(
                    RegistryCredentials.adminName, baseURL: server.baseURL, certificate: true, certificateOf: "node-b",
                    credential: TestRegistryServer.credentials.credential(for: RegistryCredentials.adminName)))
                // node-b's certificate is not the admin credential.
                await #expect(throws: (any Error).self) { try await b.revokeCertificate(sha256: old.sha256, of: "node-a") }
                try await admin.revokeCertificate(sha256: old.sha256, of: "node-a")
                do {
                    _ = try await a.list()
                    Issue.record("a revoked certificate was accepted")
                } catch {
                    #expect("\(error)".contains("has been revoked"), "\(error)")
                }
                #expect(try await b.list().records.map(\.name) == ["node-b"])  // node-a's record went with it
                // The same certificate with its ECDSA signature re-encoded as (r, n − s): still valid for TLS, a
                // different DER, and still revoked (revocation names what the CA signed, not the whole DER).
                let original = try String(contentsOfFile: files.path("node-a.pem"), encoding: .utf8)
                let malleated = try MalleatedCertificate.flip(pem: original)
                #expect(malleated != original)
                #expect(try RegistryCertificateAuthority.fingerprintAndNodeName(ofPEM: malleated).sha256 == old.sha256)
                try files.write("malleated-a.pem", malleated)
                try FileManager.default.copyItem(atPath: files.path("node-a-key.pem"), toPath: files.path("malleated-a-key.pem"))
                let disguised = pools.keep(try files.client("node-a", baseURL: server.baseURL, certificate: true, certificateOf: "malleated-a"))
                do {
                    _ = try await disguised.list()
                    Issue.record("a re-encoded revoked certificate was accepted")
                } catch {
                    #expect("\(error)".contains("has been revoked"), "\(error)")
                }
                // A malformed fingerprint is refused, naming the field.
                do {
                    try await admin.revokeCertificate(sha256: "ABC", of: "node-a")
                    Issue.record("a malformed fingerprint was accepted")
                } catch {
                    #expect("\(error)".contains("sha256"), "\(error)")
                }
            }
        }
        // node-a gets a new certificate from the same CA; after a restart the old one is still refused.
        for suffix in [".pem", "-key.pem"] {
            try FileManager.default.copyItem(atPath: files.path("node-a" + suffix), toPath: files.path("revoked-a" + suffix))
        }
        let reissued = try files.issue("node-a")
        #expect(reissued != old.sha256)
        try await TestRegistryServer.with(directory: directory, tls: try files.serverTLS(mutual: true)) { server in
            try await Pools.with { pools in
                let revoked = pools.keep(try files.client("node-a", baseURL: server.baseURL, certificate: true, certificateOf: "revoked-a"))
                await #expect(throws: (any Error).self) { try await revoked.list() }
                let a = pools.keep(try files.client("node-a", baseURL: server.baseURL, certificate: true))
                _ = try await a.publish(Self.record("node-a"))
                #expect(try await a.list().records.map(\.name) == ["node-a", "node-b"])
            }
        }
    }
}
