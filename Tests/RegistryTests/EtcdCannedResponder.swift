import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A loopback HTTP server that answers every request with one canned response and closes the
/// connection: stands in for an etcd member in a bad state (no leader, rejecting requests).
/// Runs on its own thread with blocking sockets, off the cooperative pool. Call `stop()`.
final class EtcdCannedResponder: Sendable {
    let url: String
    private let listener: Int32

    init(status: String, body: String) throws {
        let (fd, url) = try EtcdTestServer.listeningSocket()
        listener = fd
        self.url = url
        let response = Array(
            "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
                .utf8)
        let thread = Thread {
            while true {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { return }  // stop() shut the listener down
                Self.readRequest(connection)
                _ = response.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                close(connection)
            }
        }
        thread.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// Reads the head and a `Content-Length` body, so the client has sent everything before the answer.
    private static func readRequest(_ fd: Int32) {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let text = String(decoding: received, as: UTF8.self)
            if let headEnd = text.range(of: "\r\n\r\n") {
                let head = text[..<headEnd.lowerBound].lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if text.utf8.distance(from: headEnd.upperBound.samePosition(in: text.utf8)!, to: text.utf8.endIndex) >= length {
                    return
                }
            }
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return }
            received += chunk[..<count]
        }
    }
}
