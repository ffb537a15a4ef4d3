import ArgumentParser
import Foundation
import Logging
import Registry
import RegistryServer

/// `ipsec-agent registry …`: the embedded node registry server and its credentials.
struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Embedded node registry: run the server, derive credentials.",
        subcommands: [Serve.self, Credential.self]
    )

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the embedded registry server (HTTP/JSON, SQLite).")

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

        @Option(help: "Shortest IPv4 pod CIDR a node may claim (a default route is always refused).")
        var minimumPrefixIPv4: Int = 16

        @Option(help: "Shortest IPv6 pod CIDR a node may claim.")
        var minimumPrefixIPv6: Int = 48

        func validate() throws {
            guard RegistryServer.parseListenAddress(listen) != nil else {
                throw ValidationError("--listen: expected HOST:PORT or [IPV6]:PORT, got \"\(listen)\"")
            }
            guard (1...86_400).contains(leaseTTL) else { throw ValidationError("--lease-ttl: expected 1…86400 seconds, got \(leaseTTL)") }
            guard (1...32).contains(minimumPrefixIPv4) else { throw ValidationError("--minimum-prefix-ipv4: expected 1…32, got \(minimumPrefixIPv4)") }
            guard (1...128).contains(minimumPrefixIPv6) else { throw ValidationError("--minimum-prefix-ipv6: expected 1…128, got \(minimumPrefixIPv6)") }
        }

        func run() async throws {
            let (host, port) = RegistryServer.parseListenAddress(listen)!
            let credentials = try RegistryCredentials(secretFile: secretFile, shared: insecureFilePermissions ? .warn : .refuse)
            if let warning = credentials.warning { Logger(label: "ipsec-agent.registry").warning("\(warning)") }
            var configuration = RegistryServer.Configuration(host: host, port: port, dataDirectory: data, leaseTTL: .seconds(leaseTTL))
            configuration.claims = ClaimPolicy(minimumIPv4PrefixLength: minimumPrefixIPv4, minimumIPv6PrefixLength: minimumPrefixIPv6)
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

        func validate() throws {
            guard node == RegistryCredentials.adminName || NodeRecord.isValidName(node) else {
                throw ValidationError("--node: \"\(node)\" is not a DNS-like node name (or \(RegistryCredentials.adminName))")
            }
        }

        func run() throws {
            let credentials = try RegistryCredentials(secretFile: secretFile, shared: insecureFilePermissions ? .warn : .refuse)
            if let warning = credentials.warning { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            print(credentials.credential(for: node))
        }
    }
}
