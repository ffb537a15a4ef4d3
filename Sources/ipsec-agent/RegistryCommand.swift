import ArgumentParser
import Foundation
import IPsecPrimitives
import Logging
import Registry
import RegistryServer

/// `ipsec-agent registry …`: the embedded node registry server and its credentials.
struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Embedded node registry: run the server, derive credentials.",
        subcommands: [Serve.self, Credential.self, TLSInit.self, Revoke.self]
    )

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the embedded registry server (HTTP/JSON, SQLite).")

        @Option(help: "Address to listen on: HOST:PORT or [IPV6]:PORT.")
        var listen: String = "127.0.0.1:7470"

        @Option(help: "Directory for registry.sqlite (created if missing).")
        var data: String

        @Option(help: "Cluster secret file (at least 16 bytes).")
        var secretFile: String

        @Option(help: "Seconds without a heartbeat before a node's lease expires.")
        var leaseTTL: Int = 30

        @Flag(help: "Only warn (instead of refusing) when group or others can access the secret file.")
        var insecureFilePermissions = false

        @Option(help: "PEM certificate (chain) to serve TLS with; then every connection is TLS.")
        var tlsCert: String?

        @Option(help: "PEM private key of --tls-cert (mode 0600).")
        var tlsKey: String?

        @Option(help: "PEM CA whose client certificates are required (mutual TLS); a certificate's name is its node.")
        var clientCA: String?

        @Flag(help: "Allow plain HTTP on a non-loopback address (anyone on the path sees credentials and records).")
        var insecure = false

        @Option(
            name: .customLong("minimum-prefix-ipv4"),
            help: "Shortest IPv4 pod CIDR a node may claim (a default route is always refused).")
        var minimumPrefixIPv4: Int = 16

        @Option(name: .customLong("minimum-prefix-ipv6"), help: "Shortest IPv6 pod CIDR a node may claim.")
        var minimumPrefixIPv6: Int = 48

        func validate() throws {
            guard RegistryServer.parseListenAddress(listen) != nil else {
                throw ValidationError("--listen: expected HOST:PORT or [IPV6]:PORT, got \"\(listen)\"")
            }
            guard (1...86_400).contains(leaseTTL) else {
                throw ValidationError("--lease-ttl: expected 1…86400 seconds, got \(leaseTTL)")
            }
            guard (tlsCert == nil) == (tlsKey == nil) else {
                throw ValidationError("--tls-cert and --tls-key go together")
            }
            guard clientCA == nil || tlsCert != nil else {
                throw ValidationError("--client-ca needs --tls-cert and --tls-key")
            }
            if tlsCert == nil, !insecure, let address = ListenAddress(listen), !address.isLoopback {
                throw ValidationError(
                    "--listen \(listen) is not a loopback address: serve TLS (--tls-cert, --tls-key; "
                        + "`ipsec-agent registry tls-init` makes them) or pass --insecure to accept plain HTTP")
            }
            guard (1...32).contains(minimumPrefixIPv4) else {
                throw ValidationError("--minimum-prefix-ipv4: expected 1…32, got \(minimumPrefixIPv4)")
            }
            guard (1...128).contains(minimumPrefixIPv6) else {
                throw ValidationError("--minimum-prefix-ipv6: expected 1…128, got \(minimumPrefixIPv6)")
            }
        }

        func run() async throws {
            let (host, port) = RegistryServer.parseListenAddress(listen)!
            let logger = Logger(label: "ipsec-agent.registry")
            let credentials = try RegistryCredentials(
                secretFile: secretFile, shared: insecureFilePermissions ? .warn : .refuse)
            if let warning = credentials.warning { logger.warning("\(warning)") }
            var configuration = RegistryServer.Configuration(
                host: host, port: port, dataDirectory: data, leaseTTL: .seconds(leaseTTL))
            configuration.claims = ClaimPolicy(
                minimumIPv4PrefixLength: minimumPrefixIPv4, minimumIPv6PrefixLength: minimumPrefixIPv6)
            if let tlsCert, let tlsKey {
                configuration.tls = try RegistryTLS.server(certificate: tlsCert, key: tlsKey, clientCA: clientCA)
            } else if insecure, let address = ListenAddress(listen), !address.isLoopback {
                logger.warning(
                    "serving plain HTTP on a non-loopback address (--insecure): credentials and records cross the network in the clear"
                )
            }
            let server = RegistryServer(configuration: configuration, credentials: credentials)
            try await server.runUntilSignalled()
        }
    }

    struct Credential: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a node's registry credential (HMAC-SHA256 of the cluster secret and the node name).")

        @Option(help: "Cluster secret file.")
        var secretFile: String

        @Option(help: "Node name, or \(RegistryCredentials.adminName) for the admin credential.")
        var node: String

        @Flag(help: "Only warn (on stderr) instead of refusing when group or others can access the secret file.")
        var insecureFilePermissions = false

        @Option(help: "Credential generation (0 = the first; `registry revoke` prints the next one).")
        var generation: Int64 = 0

        func validate() throws {
            guard node == RegistryCredentials.adminName || NodeRecord.isValidName(node) else {
                throw ValidationError(
                    "--node: \"\(node)\" is not a DNS-like node name (or \(RegistryCredentials.adminName))")
            }
        }

        func run() throws {
            let credentials = try RegistryCredentials(
                secretFile: secretFile, shared: insecureFilePermissions ? .warn : .refuse)
            if let warning = credentials.warning { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            guard generation >= 0 else { throw ValidationError("--generation: expected 0 or more, got \(generation)") }
            print(credentials.credential(for: node, generation: generation))
        }
    }

    struct TLSInit: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tls-init",
            abstract: "Make a CA, the registry's TLS certificate and one client certificate per node (PEM files).",
            discussion: """
                Writes DIR/ca.pem and ca-key.pem (made once; an existing pair in DIR is reused to issue more), \
                DIR/registry.pem and registry-key.pem (for --tls-cert/--tls-key; its names are the --server-name \
                values), and DIR/NODE.pem and NODE-key.pem per --node (a node's certificate names the node: with \
                --client-ca it replaces the bearer credential). Keys are written mode 0600. For a test or small \
                cluster; a larger one should use its own PKI.
                """)

        @Option(help: "Directory for the PEM files (created if missing).")
        var dir: String

        @Option(help: "A DNS name or IP address agents use to reach the registry (repeatable).")
        var serverName: [String] = []

        @Option(help: "A node to make a client certificate for (repeatable).")
        var node: [String] = []

        func validate() throws {
            for name in node where !NodeRecord.isValidName(name) {
                throw ValidationError("--node: \"\(name)\" is not a DNS-like node name")
            }
        }

        func run() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let caPath = "\(dir)/ca.pem", caKeyPath = "\(dir)/ca-key.pem"
            let ca: RegistryCertificateAuthority
            if FileManager.default.fileExists(atPath: caPath) {
                let key = try SecretFile.read(path: caKeyPath, role: "CA key file").bytes
                ca = try RegistryCertificateAuthority(
                    certificatePEM: try String(contentsOfFile: caPath, encoding: .utf8),
                    keyPEM: String(decoding: key, as: UTF8.self))
            } else {
                ca = try RegistryCertificateAuthority()
                try Self.write(caPath, try ca.certificatePEM, mode: 0o644)
                try Self.write(caKeyPath, ca.keyPEM, mode: 0o600)
            }
            if !serverName.isEmpty {
                let issued = try ca.issue(
                    commonName: serverName[0], dnsNames: serverName.filter { IPAddress($0) == nil },
                    ipAddresses: serverName.compactMap { IPAddress($0) })
                try Self.write("\(dir)/registry.pem", issued.certificatePEM, mode: 0o644)
                try Self.write("\(dir)/registry-key.pem", issued.keyPEM, mode: 0o600)
            }
            for name in node {
                let issued = try ca.issue(commonName: name, dnsNames: [name], ipAddresses: [])
                try Self.write("\(dir)/\(name).pem", issued.certificatePEM, mode: 0o644)
                try Self.write("\(dir)/\(name)-key.pem", issued.keyPEM, mode: 0o600)
            }
            print(
                "wrote \(dir): ca.pem\(serverName.isEmpty ? "" : ", registry.pem")\(node.map { ", \($0).pem" }.joined())"
            )
        }

        /// Writes through a temporary file created with `mode`, then renames it into place.
        static func write(_ path: String, _ text: String, mode: mode_t) throws {
            let temporary = path + ".tmp"
            unlink(temporary)
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
            guard fd >= 0 else {
                throw ValidationError("cannot create \(temporary): \(String(cString: strerror(errno)))")
            }
            let bytes = Array(text.utf8)
            let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard written == bytes.count, rename(temporary, path) == 0 else {
                throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Revoke a node's registry credentials or one of its client certificates (admin); the cluster secret stays.",
            discussion: """
                Without --certificate: the registry then accepts only bearer credentials of the printed generation \
                or later for that node. Give the node its new credential with \
                `ipsec-agent registry credential --secret-file S --node NAME --generation G`. \
                With --certificate FILE (mutual TLS): that certificate is refused from now on, by the SHA-256 of its \
                signed part (TBSCertificate); issue the node a new one (`registry tls-init --dir DIR --node NAME` with the same CA). \
                Either way the node's live record is deleted, so the holder of the old credential is out at once.
                """)

        @Option(help: "The registry's URL (https://HOST:PORT).")
        var url: String

        @Option(help: "File holding the admin credential (`registry credential --node _admin`), mode 0600.")
        var adminCredentialFile: String

        @Option(help: "PEM CA of the registry's certificate (for https).")
        var ca: String?

        @Option(help: "The node whose credentials are revoked.")
        var node: String

        @Option(help: "A client certificate (PEM) of the node to revoke instead of its bearer credentials.")
        var certificate: String?

        @Option(help: "With mutual TLS: a client certificate (PEM) for this connection (any the registry trusts).")
        var clientCert: String?

        @Option(help: "With mutual TLS: the key file of --client-cert, mode 0600.")
        var clientKey: String?

        func validate() throws {
            guard (clientCert == nil) == (clientKey == nil) else {
                throw ValidationError("--client-cert and --client-key go together")
            }
            guard clientCert == nil || ca != nil else { throw ValidationError("--client-cert needs --ca (https)") }
        }

        func run() async throws {
            let credential = String(
                decoding: try SecretFile.read(path: adminCredentialFile, role: "admin credential file").bytes,
                as: UTF8.self
            )
            .trimmingCharacters(in: .whitespacesAndNewlines)
            // Checked before anything is sent: the file is a certificate naming --node.
            let revokedCertificate = try certificate.map { try Self.fingerprint($0, of: node) }
            let pool = RegistryHTTPConnections(
                tls: try ca.map { try RegistryTLS.client(ca: $0, certificate: clientCert, key: clientKey) })
            let client = EmbeddedRegistryClient(
                baseURL: url, nodeName: RegistryCredentials.adminName, credential: credential, connections: pool)
            let report: [String]
            do {
                if let certificate, let revokedCertificate {
                    try await client.revokeCertificate(sha256: revokedCertificate, of: node)
                    report = ["revoked the client certificate \(certificate) of \(node) (sha256 \(revokedCertificate))"]
                } else {
                    let generation = try await client.revoke(name: node)
                    report = [
                        "revoked the credentials of \(node); the registry now requires generation \(generation) or later:",
                        "  ipsec-agent registry credential --secret-file SECRET --node \(node) --generation \(generation)",
                    ]
                }
            } catch {
                try? await pool.shutdown()
                throw error
            }
            try? await pool.shutdown()
            for line in report { print(line) }
        }

        /// The revocation fingerprint of the certificate in `path`, after checking that it names `node`.
        static func fingerprint(_ path: String, of node: String) throws -> String {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ValidationError("--certificate \(path): cannot read it (\(error.localizedDescription))")
            }
            guard let (sha256, named) = try? RegistryCertificateAuthority.fingerprintAndNodeName(ofPEM: text) else {
                throw ValidationError("--certificate \(path): not a PEM certificate")
            }
            guard named == node else {
                throw ValidationError("--certificate \(path) names \(named ?? "no node"), not --node \(node)")
            }
            return sha256
        }
    }
}
