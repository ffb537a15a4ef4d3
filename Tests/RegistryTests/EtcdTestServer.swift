import Foundation
import Testing
import IPsecPrimitives
import Logging
import AsyncHTTPClient
import NIOSSL
import RegistryServer
import Registry
@testable import RegistryEtcd

#if canImport(Glibc)
import Glibc
#endif

/// A throw-away single-member etcd 3.4 for one test: free loopback client and peer ports, a
/// temporary data directory, stopped and removed by `stop()` (use `EtcdTestServer.with`).
final class EtcdTestServer {
    static let binary = "/usr/bin/etcd"
    static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: binary) }
    static let skipReason: Comment = "needs /usr/bin/etcd (Debian package etcd-server)"

    let clientURL: String
    let directory: URL
    /// With `tls`: the client configuration that etcd accepts (its CA, a client certificate it trusts).
    let clientTLS: TLSConfiguration?
    private let httpClient: HTTPClient
    private let process = Process()
    private var stopped = false

    struct StartFailure: Error, CustomStringConvertible {
        let description: String
    }

    private init(tls: Bool) throws {
        let ports = try Self.freeLoopbackPorts(count: 2)
        clientURL = "\(tls ? "https" : "http")://127.0.0.1:\(ports[0])"
        let peerURL = "http://127.0.0.1:\(ports[1])"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var tlsArguments: [String] = []
        if tls {
            // etcd's own TLS, as an operator sets it up: server certificate, client certificates required.
            let ca = try RegistryCertificateAuthority()
            let server = try ca.issue(commonName: "etcd", dnsNames: ["localhost"], ipAddresses: [IPAddress("127.0.0.1")!])
            let client = try ca.issue(commonName: "node-a", dnsNames: ["node-a"], ipAddresses: [])
            for (name, text) in [("ca.pem", try ca.certificatePEM), ("server.pem", server.certificatePEM), ("server-key.pem", server.keyPEM),
                                 ("client.pem", client.certificatePEM), ("client-key.pem", client.keyPEM)] {
                let path = directory.appendingPathComponent(name).path
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                chmod(path, 0o600)
            }
            let base = directory
            let file = { (name: String) in base.appendingPathComponent(name).path }
            tlsArguments = ["--cert-file", file("server.pem"), "--key-file", file("server-key.pem"),
                            "--client-cert-auth", "--trusted-ca-file", file("ca.pem")]
            clientTLS = try RegistryTLS.client(ca: file("ca.pem"), certificate: file("client.pem"), key: file("client-key.pem"))
            httpClient = EtcdGatewayClient.processLifetimeHTTPClient(tls: clientTLS!)
        } else {
            clientTLS = nil
            httpClient = EtcdGatewayClient.sharedHTTPClient
        }
        let log = directory.appendingPathComponent("etcd.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = [
            "--name", "test",
            "--data-dir", directory.appendingPathComponent("data").path,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "test=\(peerURL)",
        ] + tlsArguments
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// Starts etcd, waits until it answers, runs `body`, and always stops it.
    static func with<R>(tls: Bool = false, _ body: (EtcdTestServer) async throws -> R) async throws -> R {
        let server = try EtcdTestServer(tls: tls)
        defer { server.stop() }
        try await server.waitUntilReady()
        return try await body(server)
    }

    /// A registry on this server with its own key prefix.
    func registry(
        endpoints: [String]? = nil, leaseTTL: Duration = .seconds(30), requestTimeout: Duration = .seconds(5),
        nodeIDs: ClosedRange<UInt16> = 1...UInt16.max
    ) throws -> EtcdRegistry {
        var configuration = EtcdConfiguration(
            endpoints: endpoints ?? [clientURL], prefix: "/ipsec-agent-test/", leaseTTL: leaseTTL,
            requestTimeout: requestTimeout, nodeIDs: nodeIDs)
        configuration.tls = clientTLS
        return try EtcdRegistry(configuration: configuration)
    }

    /// A raw gateway client, for what the registry does not do (compaction, foreign writes).
    var gateway: EtcdGatewayClient {
        var logger = Logger(label: "etcd-test")
        logger.logLevel = .error  // readiness polling fails until etcd listens; not worth a line each
        return EtcdGatewayClient(
            endpoints: [clientURL], http: httpClient, requestTimeout: .seconds(5),
            maxResponseBytes: 1 << 20, logger: logger)
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    private func waitUntilReady() async throws {
        let probe = EtcdWire.RangeRequest(key: EtcdWire.base64("/"))
        var lastError: (any Error)?
        for _ in 0..<200 {
            guard process.isRunning else { break }
            do {
                _ = try await gateway.call("/v3/kv/range", probe, as: EtcdWire.RangeResponse.self)
                return
            } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let log = (try? String(contentsOf: directory.appendingPathComponent("etcd.log"), encoding: .utf8)) ?? ""
        throw StartFailure(
            description: "etcd did not come up on \(clientURL): \(lastError.map { "\($0)" } ?? "exited"); log tail: \(log.suffix(800))")
    }

    /// A loopback socket that listens but never accepts: connections complete (the kernel's
    /// backlog), requests are never answered — a hung member. Close the returned descriptor.
    static func silentListener() throws -> (fd: Int32, url: String) {
        try listeningSocket()
    }

    /// A listening TCP socket on a free loopback port and its `http://` URL.
    static func listeningSocket() throws -> (fd: Int32, url: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StartFailure(description: "socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard listening else {
            close(fd)
            throw StartFailure(description: "listen() on a free port failed: errno \(errno)")
        }
        return (fd, "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))")
    }

    /// Ports free on 127.0.0.1 right now: all sockets are bound before any is closed, so the
    /// ports differ from each other.
    static func freeLoopbackPorts(count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw StartFailure(description: "socket() failed: errno \(errno)") }
            sockets.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw StartFailure(description: "bind() to a free port failed: errno \(errno)") }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}
