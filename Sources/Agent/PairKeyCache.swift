import IPsecPrimitives
import Keys
import Synchronization

/// Memoizes per-pair key derivation. The desired state is recomputed on every reconcile pass and rotation
/// step; without the cache each pass would run HKDF four times per peer. An entry is reused only when the
/// source key is byte-for-byte the one it was derived from.
final class PairKeyCache: Sendable {
    private struct Slot: Hashable {
        var key: KeyID
        var source: IPAddress
        var destination: IPAddress
        var sourceBootID: String
        var destinationBootID: String
    }

    private let entries = Mutex<[Slot: (from: IPsecKey, pair: PairKey)]>([:])
    private let derive: PairKeyDerivation

    init(derive: @escaping PairKeyDerivation) { self.derive = derive }

    /// A derivation function backed by the cache.
    var derivation: PairKeyDerivation {
        { [self] key, source, destination, sourceBoot, destinationBoot in
            let slot = Slot(key: key.id, source: source, destination: destination, sourceBootID: sourceBoot,
                            destinationBootID: destinationBoot)
            if let hit = entries.withLock({ $0[slot] }), hit.from == key { return hit.pair }
            let pair = derive(key, source, destination, sourceBoot, destinationBoot)
            entries.withLock { $0[slot] = (key, pair) }
            return pair
        }
    }

    /// Drops entries of key IDs no longer held.
    func retain(keys: Set<KeyID>) {
        entries.withLock { $0 = $0.filter { keys.contains($0.key.key) } }
    }

    var count: Int { entries.withLock { $0.count } }
}
