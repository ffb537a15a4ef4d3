import AsyncHTTPClient
import Foundation
import IPsecPrimitives
import NIOCore
import NIOHTTP1
import Registry
@testable import RegistryServer
import ServiceLifecycle
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The streaming watch (`GET /v1/watch?after=R&stream=1`) over loopback: the raw wire format, the typed
/// client on it, and `RegistryClient` over it through a server restart.
@Suite(.timeLimit(.minutes(2))) struct RegistryStreamWatchTests {
    private func record(_ name: String, spi: UInt8 = 1) -> NodeRecord {
        NodeRecord(name: name, ipv4: ownClaims(of: name).underlay, bootID: "boot-\(name)", spi: KeyID(spi), keyFingerprint: "fp\(spi)")
    }


    private func summary(_ events: [RegistryEvent]) -> [String] {
        events.map { event in
            switch event {
            case .put(let r, let rev): "\(rev) put \(r.name) \(r.spi.map { "\($0)" } ?? "-")"
            case .deleted(let name, let rev): "\(rev) delete \(name)"
            case .resyncRequired: "resync"
            }
        }
    }

    // MARK: Typed client over the stream

    @Test func streamDeliversEveryChangeInOrderIncludingDeletesAndLeaseExpiry() async throws {
        try await TestRegistryServer.with(leaseTTL: .seconds(2)) { server in
            let a = server.client("node-a")
            let b = server.client("node-b")
            let start = try await a.list().revision
            let watch = Task { try await take(6, from: server.client("node-c").watch(after: start)) }
            // Wait until the stream is open, so the changes below reach it live (not as backlog).
            while server.statistics.openStreams < 1 { try await Task.sleep(for: .milliseconds(10)) }
            _ = try await a.publish(record("node-a", spi: 1))
            _ = try await b.publish(record("node-b", spi: 1))
            _ = try await a.publish(record("node-a", spi: 2))
            #expect(try await server.admin.delete(name: "node-b"))
            let last = try await a.publish(record("node-a", spi: 3))
            // node-a stops heartbeating: after the 2 s TTL the sweeper deletes it (the sixth event).
            let events = try await watch.value
            #expect(summary(events) == [
                "\(start + 1) put node-a 1", "\(start + 2) put node-b 1", "\(start + 3) put node-a 2",
                "\(start + 4) delete node-b", "\(start + 5) put node-a 3", "\(start + 6) delete node-a",
            ])
            #expect(events[4] == .put(last, revision: start + 5))
            #expect(server.statistics.streamsOpened == 1)
            #expect(server.statistics.longPolls == 0)
        }
    }

    @Test func streamResumesFromARevisionWithTheBacklogThenLiveChanges() async throws {
        try await TestRegistryServer.with { server in
            let a = server.client("node-a")
            let start = try await a.list().revision
            for spi in 1...5 { _ = try await a.publish(record("node-a", spi: UInt8(spi))) }
            // From start + 2: revisions 3…5 from the history, then 6 live.
            let watch = Task { try await take(4, from: a.watch(after: start + 2)) }
            while server.statistics.openStreams < 1 { try await Task.sleep(for: .milliseconds(10)) }
            _ = try await a.publish(record("node-a", spi: 6))
            #expect(summary(try await watch.value) == [
                "\(start + 3) put node-a 3", "\(start + 4) put node-a 4", "\(start + 5) put node-a 5", "\(start + 6) put node-a 6",
            ])
        }
    }

    @Test func compactedRevisionAnswers410BeforeStreamingAndTheClientResyncs() async throws {
        try await TestRegistryServer.with(historyLimit: 3) { server in
            let a = server.client("node-a")
            for spi in 1...8 { _ = try await a.publish(record("node-a", spi: UInt8(spi))) }
            let raw = try await server.raw(.GET, "/v1/watch?after=0&stream=1", as: "node-a")
            #expect(raw.status == 410)
            let body = try JSONDecoder().decode(RegistryWire.ErrorBody.self, from: Data(raw.body.utf8))
            #expect((body.compactedRevision ?? 0) > 0)
            #expect(body.error.contains("list and watch again"))
            #expect(try await take(1, from: a.watch(after: 0)) == [.resyncRequired])
            #expect(try await take(1, from: a.watch(after: 1000)) == [.resyncRequired])
            #expect(server.statistics.streamsOpened == 0)
        }
    }

    @Test func streamRequiresACredentialAndValidParameters() async throws {
        try await TestRegistryServer.with { server in
            let missing = try await server.raw(.GET, "/v1/watch?after=0&stream=1")
            #expect(missing.status == 401)
            #expect(missing.body.contains("X-Registry-Node"))
            let wrong = String(repeating: "0", count: 64)
            let forged = try await server.raw(.GET, "/v1/watch?after=0&stream=1", as: "node-a", token: wrong)
            #expect(forged.status == 401)
            #expect(!forged.body.contains(wrong))
            let badStream = try await server.raw(.GET, "/v1/watch?after=0&stream=yes", as: "node-a")
            #expect(badStream.status == 400)
            #expect(badStream.body.contains("stream"))
            let withTimeout = try await server.raw(.GET, "/v1/watch?after=0&stream=1&timeout=5", as: "node-a")
            #expect(withTimeout.status == 400)
            #expect(withTimeout.body.contains("timeout"))
            #expect(server.statistics.streamsOpened == 0)
            // A client with a wrong credential gets the 401 as an error, not an empty stream.
            let impostor = EmbeddedRegistryClient(baseURL: server.baseURL, nodeName: "node-x", credential: wrong)
            await #expect(throws: RegistryError.self) { try await take(1, from: impostor.watch(after: 0)) }
        }
    }

    // MARK: Raw wire format

    /// Reads a streaming answer line by line.
    private struct RawStream {
        let response: HTTPClientResponse
        var iterator: HTTPClientResponse.Body.AsyncIterator
        var pending: [UInt8] = []

        init(_ response: HTTPClientResponse) {
            self.response = response
            iterator = response.body.makeAsyncIterator()
        }

        mutating func nextLine() async throws -> String? {
            while true {
                if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    return line
                }
                guard let chunk = try await iterator.next() else { return nil }
                pending += chunk.readableBytesView
            }
        }
    }

    private func openRaw(_ server: TestRegistryServer, after: Int64, as name: String) async throws -> RawStream {
        var request = HTTPClientRequest(url: server.baseURL + "/v1/watch?after=\(after)&stream=1")
        request.headers.add(name: "X-Registry-Node", value: name)
        request.headers.add(name: "Authorization", value: "Bearer \(TestRegistryServer.credentials.credential(for: name))")
        return RawStream(try await HTTPClient.shared.execute(request, timeout: .seconds(10)))
    }

    @Test func rawStreamIsNDJSONWithTheSameEventsAsTheLongPollAndKeepalives() async throws {
        try await TestRegistryServer.with(watchKeepalive: .milliseconds(200)) { server in
            let a = server.client("node-a")
            let start = try await a.list().revision
            var stream = try await openRaw(server, after: start, as: "node-b")
            #expect(stream.response.status == .ok)
            #expect(stream.response.headers.first(name: "content-type") == "application/x-ndjson")
            #expect(stream.response.headers.first(name: "x-registry-keepalive-ms") == "200")
            #expect(stream.response.headers.first(name: "transfer-encoding") == "chunked")
            // First line: the (empty) backlog at the current revision.
            #expect(try decodeLine(try await stream.nextLine()) == Line(revision: start, events: []))
            let stored = try await a.publish(record("node-a", spi: 4))
            // The change, as one line carrying the long poll's answer (JSON key order is not fixed).
            var line = try decodeLine(try await stream.nextLine())
            while line == Line(revision: start, events: []) { line = try decodeLine(try await stream.nextLine()) }  // keepalives before it
            let longPoll = try await server.raw(.GET, "/v1/watch?after=\(start)", as: "node-b")
            #expect(longPoll.status == 200)
            #expect(line == (try decodeLine(longPoll.body)))
            #expect(line == Line(revision: start + 1, events: [.put(stored, revision: start + 1)]))
            // With nothing changing, keepalive lines keep coming: no events, the current revision.
            for _ in 0..<3 {
                #expect(try decodeLine(try await stream.nextLine()) == Line(revision: start + 1, events: []))
            }
        }
    }

    private struct Line: Equatable {
        var revision: Int64
        var events: [RegistryEvent?]
    }

    private func decodeLine(_ text: String?) throws -> Line {
        let line = try #require(text)
        #expect(!line.contains("\n"))
        let decoded = try JSONDecoder().decode(RegistryWire.WatchResponse.self, from: Data(line.utf8))
        return Line(revision: decoded.revision, events: decoded.events.map(\.registryEvent))
    }

    @Test func gracefulShutdownEndsOpenStreamsPromptly() async throws {
        let directory = TestRegistryServer.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = RegistryServer(
            configuration: .init(host: "127.0.0.1", port: 0, dataDirectory: directory, watchKeepalive: .seconds(60)),
            credentials: TestRegistryServer.credentials, logger: TestRegistryServer.quietLogger,
            onListening: { portContinuation.yield($0) })
        let group = ServiceGroup(configuration: .init(services: [server], logger: TestRegistryServer.quietLogger))
        let run = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        let client = TestRegistryServer.client("node-a", baseURL: "http://127.0.0.1:\(port)")
        let watch = Task { try await take(1, from: client.watch(after: 0)) }
        while server.statistics.openStreams < 1 { try await Task.sleep(for: .milliseconds(10)) }
        let stopping = ContinuousClock.now
        await group.triggerGracefulShutdown()
        // The stream ends with an error (so RegistryClient reconnects) and the shutdown does not wait for it
        // to idle out (keepalive 60 s, test limit 2 min).
        await #expect(throws: RegistryError.self) { try await watch.value }
        try await run.value
        #expect(ContinuousClock.now - stopping < .seconds(30))
        #expect(server.statistics.openStreams == 0)
    }

    @Test func registryClientOverAStreamReconnectsAndResyncsAfterAServerRestart() async throws {
        let directory = TestRegistryServer.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fastBackoff = ReconnectStateMachine.Configuration(minBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))
        let (port, baseURL) = try await TestRegistryServer.with(directory: directory) { ($0.port, $0.baseURL) }
        let clientA = RegistryClient(
            registry: TestRegistryServer.client("node-a", baseURL: baseURL), nodeName: "node-a", backoff: fastBackoff)
        let b = TestRegistryServer.client("node-b", baseURL: baseURL)
        var updatesA = clientA.updates.makeAsyncIterator()
        let runA = Task { await clientA.run() }
        defer { runA.cancel() }

        try await TestRegistryServer.with(directory: directory, port: port) { server in
            _ = try await clientA.publish(record("node-a"))
            while server.statistics.openStreams < 1 { try await Task.sleep(for: .milliseconds(10)) }
            _ = try await b.publish(record("node-b", spi: 1))
            _ = await updatesA.collect { if case .peers(let p) = $0 { p["node-b"]?.spi == KeyID(1) } else { false } }
            #expect(server.statistics.streamsOpened >= 1)
            #expect(server.statistics.longPolls == 0)
        }
        // The stream breaks with the server: node-a notices at once (not after a keepalive period).
        _ = await updatesA.collect { $0.isUnreachable }

        try await TestRegistryServer.with(directory: directory, port: port) { server in
            _ = await updatesA.collect { $0.isConnected }
            // A change made after the restart arrives over the new stream.
            _ = try await b.publish(record("node-b", spi: 2))
            _ = await updatesA.collect { if case .peers(let p) = $0 { p["node-b"]?.spi == KeyID(2) } else { false } }
            #expect(await clientA.reconnectCount >= 1)
            #expect(server.statistics.streamsOpened >= 1)
            #expect(server.statistics.longPolls == 0)
        }
    }

    // MARK: Client behaviour against other servers

    @Test func clientFallsBackToLongPollsWhenTheServerDoesNotStream() async throws {
        // A server without streaming ignores `stream=1` and answers a long poll.
        let body = #"{"revision":7,"events":[{"type":"delete","revision":7,"name":"node-z"}]}"#
        let old = try RawHTTPResponder(
            head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n", body: body,
            keepOpen: false)
        defer { old.stop() }
        let client = TestRegistryServer.client("node-a", baseURL: old.url)
        #expect(try await take(1, from: client.watch(after: 6)) == [.deleted(name: "node-z", revision: 7)])
        #expect(old.requests.contains { $0.contains("stream=1") })
    }

    @Test func clientDropsAStreamThatFallsSilent() async throws {
        // A stream head and one line, then nothing (no keepalives) on an open connection.
        let line = #"{"revision":3,"events":[]}"# + "\n"
        let chunk = String(line.utf8.count, radix: 16) + "\r\n" + line + "\r\n"
        let silent = try RawHTTPResponder(
            head: "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nX-Registry-Keepalive-Ms: 100\r\nTransfer-Encoding: chunked\r\n",
            body: chunk, keepOpen: true)
        defer { silent.stop() }
        let client = TestRegistryServer.client("node-a", baseURL: silent.url)
        let started = ContinuousClock.now
        await #expect {
            try await take(1, from: client.watch(after: 3))
        } throws: { error in
            "\(error)".contains("silent")
        }
        // Three missed keepalives (floored at 1 s), checked once per interval: well under the test's limit.
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    // MARK: Store and hub

    @Test func aLongBacklogIsSentInLinesOfBoundedSizeThenLiveChangesFollow() async throws {
        let directory = TestRegistryServer.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try RegistryStore(directory: directory, leaseTTL: .seconds(30), logger: TestRegistryServer.quietLogger)
        for spi in 1...5 {
            var r = record("node-a", spi: UInt8(spi))
            r.sequence = Int64(spi)
            _ = try await store.publish(r)
        }
        guard case .subscribed(let subscriber, let backlog) = try await store.subscribe(after: 0, maxEventsPerLine: 2) else {
            Issue.record("expected a subscription")
            return
        }
        func decode(_ buffer: ByteBuffer) throws -> (Int64, [Int64]) {
            let text = String(buffer: buffer)
            #expect(text.hasSuffix("\n"))
            let line = try JSONDecoder().decode(RegistryWire.WatchResponse.self, from: Data(text.utf8))
            return (line.revision, line.events.map(\.revision))
        }
        // Each line's revision is its last event's, the last line's the current revision.
        let lines = try backlog.map(decode)
        #expect(lines.map(\.0) == [2, 4, 5])
        #expect(lines.map(\.1) == [[1, 2], [3, 4], [5]])
        // A store with no backlog after `after` still sends one (empty) line first.
        guard case .subscribed(let other, let empty) = try await store.subscribe(after: 5) else {
            Issue.record("expected a subscription")
            return
        }
        #expect(try empty.map(decode).map(\.1) == [[]])
        // A deletion reaches both subscribers as the same bytes.
        _ = try await store.delete(name: "node-a")
        let first = try #require(await subscriber.next())
        let second = try #require(await other.next())
        #expect(first == second)
        #expect(try first.map(decode).map(\.1) == [[6]])
        // Keepalives carry no events and the current revision.
        await store.sendKeepalive()
        #expect(try #require(await subscriber.next()).map(decode).map(\.0) == [6])
        await store.close()
        #expect(await subscriber.next() == nil)
    }

    @Test func aStreamThatFallsBehindGetsOneResyncLineAndEnds() async throws {
        let hub = WatchStreamHub(maxPendingLines: 2)
        let slow = try #require(hub.subscribe())
        let fast = try #require(hub.subscribe())
        let resync = ByteBuffer(string: "resync\n")
        var delivered: [String] = []
        for n in 1...3 {
            hub.broadcast(ByteBuffer(string: "line \(n)\n"), resyncLine: { resync })
            // `fast` reads after every line; `slow` never does.
            delivered += (await fast.next() ?? []).map { String(buffer: $0) }
        }
        #expect(delivered == ["line 1\n", "line 2\n", "line 3\n"])
        #expect(hub.count == 1)
        #expect(await slow.next()?.map { String(buffer: $0) } == ["resync\n"])
        #expect(await slow.next() == nil)
        hub.finishAll()
        #expect(await fast.next() == nil)
        #expect(hub.subscribe() === nil)
    }
}

/// A loopback HTTP server answering every request with a fixed head and body, then closing the connection
/// or (`keepOpen`) holding it open silently until `stop()`. Blocking sockets on its own thread.
final class RawHTTPResponder: @unchecked Sendable {
    let url: String
    private let listener: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var open: [Int32] = []

    /// The request heads received so far.
    var requests: [String] { lock.withLock { received } }

    init(head: String, body: String, keepOpen: Bool) throws {
        let (fd, url) = try EtcdTestServer.listeningSocket()
        listener = fd
        self.url = url
        let response = Array((head + "\r\n" + body).utf8)
        let thread = Thread { [self] in
            while true {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 8192)
                let count = buffer.withUnsafeMutableBytes { read(connection, $0.baseAddress, $0.count) }
                lock.withLock { received.append(String(decoding: buffer[..<max(0, count)], as: UTF8.self)) }
                _ = response.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                if keepOpen {
                    lock.withLock { open.append(connection) }
                } else {
                    close(connection)
                }
            }
        }
        thread.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in lock.withLock({ open }) { close(fd) }
    }
}
