import IPsecPrimitives
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An `EncryptMap` in memory, for other modules' tests: it behaves like `BPFDatapath`'s maps
/// (idempotent delete, a capacity per family that fails like a full LPM trie with ENOSPC) and
/// answers, with `mark(forDestination:)`, what the BPF program would do to a packet.
public final class InMemoryEncryptMap: EncryptMap {
    private struct State {
        var localSPI: KeyID?
        var peers: [IPPrefix: PeerEncryptEntry] = [:]
        var counts: [IPAddress.Family: Int] = [:]

        func count(_ family: IPAddress.Family) -> Int { counts[family, default: 0] }
    }

    /// Entries allowed per address family (the real tries hold `BPFDatapath.maxPeerPrefixes`).
    public let capacityPerFamily: Int
    private let state = Mutex(State())

    public init(capacityPerFamily: Int = BPFDatapath.maxPeerPrefixes) {
        self.capacityPerFamily = capacityPerFamily
    }

    public func setLocalSPI(_ spi: KeyID?) throws {
        state.withLock { $0.localSPI = spi }
    }

    public func localSPI() throws -> KeyID? {
        state.withLock { $0.localSPI }
    }

    public func upsertPeer(_ prefix: IPPrefix, _ entry: PeerEncryptEntry) throws {
        try state.withLock { state in
            if state.peers[prefix] == nil, state.count(prefix.family) >= capacityPerFamily {
                throw DatapathError.mapOperation(
                    map: BPFDatapath.peerMapName(prefix.family), operation: "update", key: prefix.description,
                    errno: ENOSPC)
            }
            if state.peers.updateValue(entry, forKey: prefix) == nil {
                state.counts[prefix.family, default: 0] += 1
            }
        }
    }

    public func deletePeer(_ prefix: IPPrefix) throws {
        state.withLock { state in
            if state.peers.removeValue(forKey: prefix) != nil {
                state.counts[prefix.family, default: 0] -= 1
            }
        }
    }

    public func peers() throws -> [IPPrefix: PeerEncryptEntry] {
        state.withLock { $0.peers }
    }

    /// The mark the BPF program would set on a packet to `destination`: the longest matching peer
    /// prefix decides; nil when no peer prefix contains it (the packet stays unmarked).
    public func mark(forDestination destination: IPAddress) -> UInt32? {
        state.withLock { state in
            let match = state.peers
                .filter { $0.key.contains(destination) }
                .max { $0.key.length < $1.key.length }
            return match.map { EncryptMark.value(local: state.localSPI, peer: $0.value) }
        }
    }
}
