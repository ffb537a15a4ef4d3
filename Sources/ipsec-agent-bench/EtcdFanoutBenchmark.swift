import Registry
import RegistryEtcd

/// Thrown when a watcher's stream ends before it saw the measured update.
struct EtcdFanoutWatchEnded: Error, CustomStringConvertible {
    let watcher: Int
    var description: String { "etcd fan-out: watcher \(watcher) ended before the measured update arrived" }
}

/// One registry update fanned out to `watchers` etcd watches (one HTTP stream each), against the
/// etcd gateway at `endpoint`. Returns, per watcher in watcher order, the time from the start of
/// the `publish` call (one range + one transaction) to that watcher receiving the `.put`.
///
/// Every watcher first receives a warm-up update, so all watches are established and the
/// measurement excludes connection and watch setup. Keys live under a fresh prefix and are
/// removed (lease revoked) at the end.
func etcdFanout(watchers: Int, endpoint: String) async throws -> [Duration] {
    precondition(watchers > 0, "watchers must be positive")
    let registry = try EtcdRegistry(
        configuration: EtcdConfiguration(
            endpoints: [endpoint], prefix: "/ipsec-agent-bench/fanout-\(UInt32.random(in: 0...UInt32.max))/"))
    let name = "fanout-node"
    let start = try await registry.list().revision
    let clock = ContinuousClock()
    let (ready, readySignal) = AsyncStream.makeStream(of: Int.self)

    let arrivals = try await withThrowingTaskGroup(of: (Int, ContinuousClock.Instant).self) { group in
        for watcher in 0..<watchers {
            let stream = registry.watch(after: start)
            group.addTask {
                var warmedUp = false
                do {
                    for try await event in stream {
                        guard case .put(let record, _) = event, record.name == name else { continue }
                        if !warmedUp {
                            warmedUp = true
                            readySignal.yield(watcher)
                        } else {
                            return (watcher, clock.now)
                        }
                    }
                    throw EtcdFanoutWatchEnded(watcher: watcher)
                } catch {
                    readySignal.finish()  // unblocks the readiness wait below
                    throw error
                }
            }
        }
        _ = try await registry.publish(NodeRecord(name: name, keyFingerprint: "warm-up"))
        var readyCount = 0
        for await _ in ready {
            readyCount += 1
            if readyCount == watchers { break }
        }
        guard readyCount == watchers else {
            // A watcher failed during warm-up: surface its error.
            group.cancelAll()
            while try await group.next() != nil {}
            throw EtcdFanoutWatchEnded(watcher: -1)
        }
        let published = clock.now
        _ = try await registry.publish(NodeRecord(name: name, keyFingerprint: "measured"))
        var arrivals = [Duration](repeating: .zero, count: watchers)
        for try await (watcher, instant) in group {
            arrivals[watcher] = instant - published
        }
        return arrivals
    }
    readySignal.finish()
    try await registry.withdraw(name: name)
    return arrivals
}
