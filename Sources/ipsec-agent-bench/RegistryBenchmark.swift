import ArgumentParser
import IPsecPrimitives
import NIOSSL
import Registry
import RegistryEtcd
import RegistryServer

#if canImport(Glibc)
    import Glibc
#endif

/// `ipsec-agent-bench registry`: one record update fanned out to many watchers of the embedded registry
/// (in-process server on loopback, each watcher its own connection: a streaming watch, and for comparison
/// chained long polls). Prints delivery latency from the start of the publish call to each watcher
/// receiving the event. `stream-tls` is the streaming watch over TLS (a throw-away CA, server certificate for
/// 127.0.0.1, no client certificates): the cost of encryption on the fan-out. With `--etcd URL`, the same
/// against etcd.
struct RegistryBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Registry watch fan-out: p50/p99 delivery latency of one update to N watchers.")

    @Option(help: "Number of concurrent watchers.")
    var watchers: Int = 1000

    @Option(help: "Updates to publish (one at a time, each awaited by every watcher).")
    var rounds: Int = 20

    func validate() throws {
        guard (1...20_000).contains(watchers) else { throw ValidationError("--watchers: expected 1…20000") }
        guard (1...10_000).contains(rounds) else { throw ValidationError("--rounds: expected 1…10000") }
    }

    @Option(help: "Also measure an etcd 3.4 JSON gateway at this URL (e.g. http://127.0.0.1:23790).")
    var etcd: String?

    @Option(
        help:
            "Embedded registry watch transports to measure, in order: stream, stream-tls, long-poll (comma-separated).")
    var embedded: String = "stream,stream-tls,long-poll"

    func run() async throws {
        raiseFileLimit(to: rlim_t(watchers) * 2 + 256)
        for transport in embedded.split(separator: ",") {
            switch transport {
            case "stream": try await runEmbedded(.stream)
            case "stream-tls": try await runEmbedded(.stream, tls: true)
            case "long-poll": try await runEmbedded(.longPoll)
            case "none": break
            default:
                throw ValidationError(
                    "--embedded: unknown transport \(transport) (stream, stream-tls, long-poll, none)")
            }
        }
        if let etcd { try await runEtcd(endpoint: etcd) }
    }

    private func runEmbedded(_ transport: EmbeddedRegistryClient.WatchTransport, tls: Bool = false) async throws {
        let directory = "/tmp/ipsec-agent-bench-registry-\(getpid())"
        defer { _ = try? removeDirectory(directory) }
        let credentials = RegistryCredentials(secret: SecretBytes((0..<32).map { _ in UInt8.random(in: 0...255) }))
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let statistics = RegistryServerStatistics()
        var configuration = RegistryServer.Configuration(
            host: "127.0.0.1", port: 0, dataDirectory: directory, maxWatchWait: .seconds(30))
        // Every watcher connects from 127.0.0.1: lift the per-client cap (64) that protects a real registry.
        configuration.maxConnectionsPerClient = watchers + 16
        let clientTLS = tls ? try Self.makeTLS(in: directory, server: &configuration) : nil
        let server = RegistryServer(
            configuration: configuration,
            credentials: credentials, statistics: statistics, onListening: { portContinuation.yield($0) })
        let serverTask = Task { try await server.run() }
        defer { serverTask.cancel() }
        var portIterator = ports.makeAsyncIterator()
        guard let port = await portIterator.next() else { throw RegistryError.unavailable("server did not start") }
        let baseURL = "\(tls ? "https" : "http")://127.0.0.1:\(port)"
        let connections = RegistryHTTPConnections(maxConnectionsPerHost: watchers + 8, tls: clientTLS)
        let publisher = EmbeddedRegistryClient(
            baseURL: baseURL, nodeName: "bench-publisher", credential: credentials.credential(for: "bench-publisher"),
            connections: connections)
        let watcher = EmbeddedRegistryClient(
            baseURL: baseURL, nodeName: "bench-watcher", credential: credentials.credential(for: "bench-watcher"),
            connections: connections, watchWait: .seconds(30), watchTransport: transport)
        let watchers = self.watchers
        let allStreamsOpen: @Sendable () -> Bool = { statistics.openStreams >= watchers }
        try await fanOut(
            label: transport == .stream
                ? (tls ? "embedded, stream over TLS" : "embedded, stream") : "embedded, long poll",
            publisher: publisher,
            watcher: watcher,
            ready: transport == .stream ? allStreamsOpen : nil)
        try? await connections.shutdown()
        // Stop the server before the next measurement starts.
        serverTask.cancel()
        _ = await serverTask.result
    }

    /// A throw-away CA and a server certificate for 127.0.0.1 in `directory`: sets the server's TLS in
    /// `server` and returns the clients' (trusting only that CA).
    private static func makeTLS(
        in directory: String, server: inout RegistryServer.Configuration
    ) throws -> TLSConfiguration {
        mkdir(directory, 0o700)
        let ca = try RegistryCertificateAuthority()
        let issued = try ca.issue(commonName: "127.0.0.1", dnsNames: [], ipAddresses: [IPAddress("127.0.0.1")!])
        let files = [
            ("ca.pem", try ca.certificatePEM), ("registry.pem", issued.certificatePEM),
            ("registry-key.pem", issued.keyPEM),
        ]
        for (name, text) in files {
            let fd = open("\(directory)/\(name)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw RegistryError.unavailable("cannot write \(directory)/\(name)") }
            _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        server.tls = try RegistryTLS.server(
            certificate: "\(directory)/registry.pem", key: "\(directory)/registry-key.pem", clientCA: nil)
        return try RegistryTLS.client(ca: "\(directory)/ca.pem", certificate: nil, key: nil)
    }

    private func runEtcd(endpoint: String) async throws {
        let configuration = EtcdConfiguration(endpoints: [endpoint], prefix: "/ipsec-agent-bench-\(getpid())/")
        let publisher = try EtcdRegistry(configuration: configuration)
        let watcher = try EtcdRegistry(configuration: configuration)
        try await fanOut(label: "etcd \(endpoint)", publisher: publisher, watcher: watcher)
    }

    /// Opens `watchers` watches through `watcher`, publishes `rounds` updates through `publisher`, and
    /// prints the delivery latency distribution.
    private func fanOut(
        label: String, publisher: any NodeRegistry, watcher: any NodeRegistry, ready: (@Sendable () -> Bool)? = nil
    ) async throws {
        let start = try await publisher.list().revision
        let clock = ContinuousClock()
        // Each watcher reports (revision, arrival) for every put of the publisher's record.
        let (arrivals, arrivalContinuation) = AsyncStream.makeStream(of: (Int64, ContinuousClock.Instant).self)
        var watchTasks: [Task<Void, Never>] = []
        for _ in 0..<watchers {
            watchTasks.append(
                Task {
                    do {
                        for try await event in watcher.watch(after: start) {
                            if case .put(let record, let revision) = event, record.name == "bench-publisher" {
                                arrivalContinuation.yield((revision, clock.now))
                            }
                        }
                    } catch {}
                })
        }
        defer { for task in watchTasks { task.cancel() } }
        // Let every watch reach the server before measuring.
        if let ready {
            let deadline = ContinuousClock.now + .seconds(60)
            while !ready(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            guard ready() else { throw RegistryError.unavailable("\(label): not every watch opened within 60 s") }
            try await Task.sleep(for: .seconds(1))
        } else {
            try await Task.sleep(for: .seconds(max(2, watchers / 250)))
        }

        var latencies: [Duration] = []
        var fanOutTimes: [Duration] = []
        var publishTimes: [Duration] = []
        var iterator = arrivals.makeAsyncIterator()
        for round in 1...rounds {
            let record = NodeRecord(name: "bench-publisher", bootID: "bench", spi: KeyID(round % 15 + 1))
            let sent = clock.now
            let stored = try await publisher.publish(record)
            publishTimes.append(sent.duration(to: clock.now))
            var received = 0
            var last = Duration.zero
            while received < watchers, let (eventRevision, at) = await iterator.next() {
                guard eventRevision == stored.revision else { continue }
                received += 1
                let latency = sent.duration(to: at)
                latencies.append(latency)
                last = max(last, latency)
            }
            fanOutTimes.append(last)
        }
        latencies.sort()
        fanOutTimes.sort()
        publishTimes.sort()
        func percentile(_ values: [Duration], _ p: Double) -> String {
            let index = min(values.count - 1, Int((Double(values.count) * p).rounded(.up)) - 1)
            return format(values[max(0, index)])
        }
        print("registry fan-out (\(label), \(watchers) watchers, \(rounds) updates, \(latencies.count) deliveries)")
        print(
            "  delivery latency   p50 \(percentile(latencies, 0.50))  p99 \(percentile(latencies, 0.99))  max \(format(latencies.last!))"
        )
        print("  all-watchers time  p50 \(percentile(fanOutTimes, 0.50))  p99 \(percentile(fanOutTimes, 0.99))")
        print("  publish call       p50 \(percentile(publishTimes, 0.50))  max \(format(publishTimes.last!))")
    }

    private func format(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return ms < 10 ? String(format3(ms)) + " ms" : String(Int(ms.rounded())) + " ms"
    }

    private func format3(_ value: Double) -> String {
        let scaled = Int((value * 1000).rounded())
        let fraction = String(scaled % 1000)
        return "\(scaled / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }

    private func raiseFileLimit(to wanted: rlim_t) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < wanted else { return }
        limit.rlim_cur = min(wanted, limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    private func removeDirectory(_ path: String) throws {
        for file in [
            "registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm", "ca.pem", "registry.pem",
            "registry-key.pem",
        ] {
            unlink(path + "/" + file)
        }
        rmdir(path)
    }
}
