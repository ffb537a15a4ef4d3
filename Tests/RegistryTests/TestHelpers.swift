import Registry

extension AsyncStream<RegistryClient.Update>.Iterator {
    /// Consumes updates until one matches; returns every update consumed, the match last.
    mutating func collect(until predicate: (RegistryClient.Update) -> Bool) async -> [RegistryClient.Update] {
        var seen: [RegistryClient.Update] = []
        while let update = await next() {
            seen.append(update)
            if predicate(update) { return seen }
        }
        return seen
    }
}

extension RegistryClient.Update {
    var isConnected: Bool { self == .connection(.connected) }

    var isUnreachable: Bool {
        if case .connection(.unreachable) = self { return true }
        return false
    }

    var peerNames: [String]? {
        if case .peers(let peers) = self { return peers.keys.sorted() }
        return nil
    }
}

extension InMemoryNodeRegistry {
    /// Returns once a watch is open (watch registration is asynchronous).
    func waitUntilWatched() async {
        while openWatchCount < 1 { await Task.yield() }
    }
}
