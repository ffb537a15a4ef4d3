import IPsecPrimitives
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

/// An underlay address and pod CIDR of a test node's own, derived from its name: no two test nodes collide
/// (the registry refuses a record that claims another live node's addresses).
func ownClaims(of name: String) -> (underlay: IPAddress, pods: IPPrefix) {
    let n = name.utf8.reduce(UInt32(0)) { ($0 &* 31 &+ UInt32($1)) % 65_521 }
    return (.v4(0xC000_0000 | n), IPPrefix(address: .v4(0x0A00_0000 | n << 8), length: 24)!)
}
