import IPsecPrimitives

/// The rules a new active key must satisfy against the current one before the agent rotates to it.
///
/// - The key ID (SPI) must change: the kernel tells generations apart by SPI and mark.
/// - The algorithm (including the ICV length) must not change, and neither may the key lengths:
///   both generations are live side by side during a rotation and must have the same ESP overhead.
/// - The new ID must be 1–7 steps after the current one on the ring (15 → 1 wraps): only then do
///   peers, which pick the older of two IDs with `KeyID.older`, read it as the newer generation. 3 → 12
///   (9 steps) or 5 → 4 (14 steps) would be read as older and are refused. The successor is the
///   normal case; a skip within 7 steps is allowed but reported (`KeyRotation.isSuccessor == false`) so
///   the caller can warn: it shortens the window in which generations order correctly.
public enum KeyRotationRule {
    /// Checks `new` against `current`; throws the first rule broken.
    public static func check(new: IPsecKey, current: IPsecKey) throws(KeyRotationError) -> KeyRotation {
        guard new.id != current.id else {
            throw .sameKeyID(new.id)
        }
        guard current.id.isOlder(than: new.id) else {
            throw .keyIDOrder(current: current.id, new: new.id)
        }
        switch (current.algorithm, new.algorithm) {
        case (.aesGCM(let oldBits, let oldICV), .aesGCM(let newBits, let newICV)):
            guard oldICV == newICV else { throw .algorithmChanged(from: current.algorithm, to: new.algorithm) }
            guard oldBits == newBits else { throw .keyLengthChanged(from: current.algorithm, to: new.algorithm) }
        case (.cbcHMAC(let oldHash, let oldAuth, let oldBits), .cbcHMAC(let newHash, let newAuth, let newBits)):
            guard oldHash == newHash else { throw .algorithmChanged(from: current.algorithm, to: new.algorithm) }
            guard oldAuth == newAuth, oldBits == newBits else {
                throw .keyLengthChanged(from: current.algorithm, to: new.algorithm)
            }
        default:
            throw .algorithmChanged(from: current.algorithm, to: new.algorithm)
        }
        return KeyRotation(from: current.id, to: new.id)
    }
}
