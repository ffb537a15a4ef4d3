import Foundation
import IPsecPrimitives
import Registry
import RegistryServer
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Idle and half-open connections do not pile up: the server closes them after its idle timeout, and serves a
/// legitimate client while they are held. A watch stream, a request in progress, is not cut.
@Suite(.timeLimit(.minutes(2))) struct RegistryConnectionHygieneTests {
    /// A TCP connection to 127.0.0.1:port, optionally sending `bytes` (e.g. half a request head).
    static func connect(_ port: Int, sending bytes: String = "") -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { close(fd); return nil }
        if !bytes.isEmpty { _ = bytes.withCString { send(fd, $0, strlen($0), 0) } }
        return fd
    }

    /// True when the server closed `fd` (a read returns 0 or an error) within `timeout`.
    static func closedByServer(_ fd: Int32, within timeout: Duration) -> Bool {
        var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(truncatingIfNeeded: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard Glibc.poll(&poll, 1, ms) == 1 else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) <= 0
    }

    @Test func idleAndHalfOpenSocketsAreClosedWhileAClientIsServed() async throws {
        try await TestRegistryServer.with(idleTimeout: .seconds(1)) { server in
            let idle = (0..<300).compactMap { _ in Self.connect(server.port) }
            let halfOpen = (0..<200).compactMap { _ in Self.connect(server.port, sending: "GET /v1/nodes HTTP/1.1\r\nHost: x\r\n") }
            defer { (idle + halfOpen).forEach { close($0) } }
            #expect(idle.count == 300 && halfOpen.count == 200)
            // A legitimate client is served while they are held.
            let a = server.client("node-a")
            let started = ContinuousClock.now
            _ = try await a.list()
            print("list with 500 idle sockets held: \(ContinuousClock.now - started)")
            // A watch stream outlives the idle timeout: it is a request in progress.
            let watch = a.watch(after: 0)
            var events = watch.makeAsyncIterator()
            try await Task.sleep(for: .seconds(2))
            _ = try await a.publish(NodeRecord(name: "node-a", ipv4: ownClaims(of: "node-a").underlay, bootID: "b", spi: KeyID(1)))
            let event = try await events.next()
            if case .put(let record, _)? = event { #expect(record.name == "node-a") } else { Issue.record("watch cut: \(String(describing: event))") }
            // Every idle and half-open socket was closed by the server.
            let closed = (idle + halfOpen).filter { Self.closedByServer($0, within: .seconds(3)) }.count
            #expect(closed == idle.count + halfOpen.count)
        }
    }
}
