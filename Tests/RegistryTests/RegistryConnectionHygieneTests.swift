import Foundation
import IPsecPrimitives
import Registry
import RegistryServer
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Idle and half-open connections do not pile up: one host gets at most `maxConnectionsPerClient` (the rest are
/// closed at once and counted), those are closed after the idle timeout, and a legitimate client is served while
/// they are held. A watch stream, a request in progress, is not cut.
@Suite(.timeLimit(.minutes(2))) struct RegistryConnectionHygieneTests {
    /// A TCP connection to 127.0.0.1:port, optionally sending `bytes` (e.g. half a request head).
    static func connect(_ port: Int, from source: String = "127.0.0.2", sending bytes: String = "") -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { close(fd); return nil }
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

    /// Room for 4,000 descriptors in this process (the test's sockets and the server's).
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = max(limit.rlim_cur, min(limit.rlim_max, 8192))
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    @Test func idleAndHalfOpenSocketsAreClosedWhileAClientIsServed() async throws {
        Self.raiseOpenFileLimit()
        try await TestRegistryServer.with(idleTimeout: .seconds(4)) { server in
            // 2,000 sockets from one host (127.0.0.2): idle, and half a request head.
            // Blocking connects (a full accept queue makes connect wait for SYN retries): on a thread of their own.
            let port = server.port
            let idle = try await offThePool { (0..<1000).compactMap { _ in Self.connect(port) } }
            let halfOpen = try await offThePool {
                (0..<1000).compactMap { _ in Self.connect(port, sending: "GET /v1/nodes HTTP/1.1\r\nHost: x\r\n") }
            }
            defer { (idle + halfOpen).forEach { close($0) } }
            #expect(idle.count == 1000 && halfOpen.count == 1000)
            // A legitimate client (another address) is served while they are held.
            let a = server.client("node-a")
            let started = ContinuousClock.now
            _ = try await a.list()
            print("list with 2,000 idle and half-open sockets held: \(ContinuousClock.now - started)")
            // Beyond the per-client cap (64) they were refused at once, and counted. (Not exactly 2,000 - 64: the
            // server may still be accepting when the first 64 reach the idle timeout, freeing their slots.)
            for _ in 0..<40 where server.statistics.connectionsRefused < 2000 - 64 { try await Task.sleep(for: .milliseconds(50)) }
            print("refused at once: \(server.statistics.connectionsRefused) of 2,000")
            #expect(server.statistics.connectionsRefused >= 1500, "\(server.statistics.connectionsRefused)")
            // A watch stream outlives the idle timeout: it is a request in progress.
            let watch = a.watch(after: 0)
            var events = watch.makeAsyncIterator()
            try await Task.sleep(for: .seconds(5))
            _ = try await a.publish(NodeRecord(name: "node-a", ipv4: ownClaims(of: "node-a").underlay, bootID: "b", spi: KeyID(1)))
            let event = try await events.next()
            if case .put(let record, _)? = event { #expect(record.name == "node-a") } else { Issue.record("watch cut: \(String(describing: event))") }
            // Every idle and half-open socket was closed by the server (refused, or after the idle timeout).
            let closed = try await offThePool { (idle + halfOpen).filter { Self.closedByServer($0, within: .seconds(6)) }.count }
            #expect(closed == idle.count + halfOpen.count)
        }
    }
}
